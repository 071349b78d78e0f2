#!/usr/bin/env python3
"""The example app: one MdlcModelStack per spec in models/ (or the pipeline
that deploys them, when cdk.json configures ``mdlc:pipeline``).

`make synth` runs it; `cdk deploy` deploys it. The account and region come
from the environment (CDK_DEFAULT_ACCOUNT/REGION) when deploying and are left
unresolved for synthesis without credentials.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import aws_cdk as cdk

from mdlc_constructs.compliance import apply_compliance_checks
from mdlc_constructs.pipeline import build
from mdlc_constructs.spec import SpecError

STRENGTH_FLAG = "@aws-cdk/core:defaultCrossStackReferences"
BOTH_TRANSITIONAL = "@aws-cdk/core:crossStackReferencesBothTransitional"


def main() -> None:
    app = cdk.App()
    models = Path(app.node.try_get_context("mdlc:models") or Path(__file__).parent / "models")
    shared = str(app.node.try_get_context("mdlc:sharedPlatform")).lower() == "true"
    env = None
    if os.environ.get("CDK_DEFAULT_ACCOUNT"):
        env = cdk.Environment(
            account=os.environ["CDK_DEFAULT_ACCOUNT"], region=os.environ.get("CDK_DEFAULT_REGION")
        )
    try:
        # The pipeline when cdk.json's context configures one (mdlc:pipeline),
        # else the model stacks themselves, self-contained or on a shared
        # platform stack (-c mdlc:sharedPlatform=true).
        build(app, models, shared_platform=shared, env=env)
    except SpecError as error:
        # Exit 2 as `mdlc validate` does for the same specs: unusable input,
        # reported as the lines that name each file and field, no traceback.
        print(f"cannot synthesize: invalid model specs\n{error}", file=sys.stderr)
        sys.exit(2)
    if app.node.try_get_context(STRENGTH_FLAG) == "both":
        # cdk.json chooses "both" (weak references, exports kept) on purpose, so
        # stacks once deployed with strong references update in place; without
        # this, aws-cdk-lib reminds on every synth that "both" is transitional.
        for scope in app.node.find_all():
            if cdk.Stack.is_stack(scope):
                cdk.Annotations.of(scope).acknowledge_warning(
                    BOTH_TRANSITIONAL, "the example keeps exports for stacks deployed strong")
    apply_compliance_checks(app)
    app.synth()


if __name__ == "__main__":
    main()
