"""Local execution of synthesized model stacks: no AWS account, no Docker.

``LocalCloud`` deploys a cloud assembly on moto and runs it in process;
``simulate`` drives a model's whole lifecycle over simulated days. See
docs/local.md.
"""
