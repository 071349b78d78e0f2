"""aws-cdk-lib's own CloudFormation rules, as errors, where a test claims a
family of templates is clean.

aws-cdk-lib runs its CloudFormation validation plugin (a WebAssembly engine
and its default rules) in every synthesis. Under the library's flags its
findings are only warnings, which no in-process test reads, so conftest turns
the automatic plugin off for the suite's own syntheses (``CDK_VALIDATION=false``;
what it cost is in docs/testing.md). The apps made here register the plugin
explicitly (the variable turns off only the automatic one) with
``validateAgainstDefaultRules`` and ``strictCfnValidateErrors``, so an error
or a warning of those rules fails synthesis: the example model stack (the
session's synthesis), every shape in one app, and the pipeline with its
stages. A ``cdk synth`` run as a subprocess keeps the automatic plugin, as a
user's does: tests/test_feature_flags.py drops the variable from its
environment, and the team's app in tests/test_packaging.py drops every
``CDK_*`` variable.
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
