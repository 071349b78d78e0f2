"""aws-cdk-lib's own CloudFormation rules, as errors, where a test claims a
family of templates is clean.

aws-cdk-lib runs its CloudFormation validation plugin (a WebAssembly engine
and its default rules) in every synthesis. Under the library's flags its
findings are warnings, which no in-process test reads, and across the suite
it cost about 22 s of CPU (858 s with it, 836 s without, the whole suite
measured by /usr/bin/time), so conftest turns it off for the suite's own
syntheses (``CDK_VALIDATION=false``). The apps made here register the plugin
explicitly (the variable turns off only the automatic one) with
``validateAgainstDefaultRules`` and ``strictCfnValidateErrors``, so an error
or a warning of those rules fails synthesis: the example model stack (the
session's synthesis), every shape in one app, and the pipeline with its
stages. A ``cdk synth`` run as a subprocess (tests/test_feature_flags.py,
tests/test_cli_output.py, the team's app in tests/test_packaging.py) keeps the
automatic plugin, as a user's does.
"""

from __future__ import annotations

import functools
from typing import Any

import aws_cdk as cdk

#: The rules' errors stay errors, and their warnings fail synthesis too.
STRICT_CONTEXT = {
    "@aws-cdk/core:validateAgainstDefaultRules": True,
    "@aws-cdk/core:strictCfnValidateErrors": True,
}


@functools.cache
def _plugin() -> cdk.CloudFormationValidatePlugin:
    # Its engine compiles the rules when it is made (about 2 s): one per worker.
    # Its engine is freed only when aws-cdk-lib replaces its own automatic one.
    return cdk.CloudFormationValidatePlugin()


def rules_app(*, context: dict[str, Any] | None = None, **make_app: Any) -> cdk.App:
    """``mdlc_constructs.testing.make_app(**make_app)`` whose synthesis fails on
    any finding of aws-cdk-lib's default CloudFormation rules."""
    from mdlc_constructs.testing import make_app as make

    app = make(context={**STRICT_CONTEXT, **(context or {})}, **make_app)
    cdk.Validations.of(app).add_plugins(_plugin())
    return app
