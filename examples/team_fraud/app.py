#!/usr/bin/env python3
"""The fraud team's app: the library's app builder with the team's model stack.

    cdk synth --app "python examples/team_fraud/app.py"

With context ``mdlc:pipeline`` it builds the team's CI/CD pipeline instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script: make `team_fraud` importable

from mdlc_constructs.compliance import apply_compliance_checks  # noqa: E402
from mdlc_constructs.pipeline import build  # noqa: E402
from team_fraud.stack import team_model_stack  # noqa: E402


def main() -> None:
    app = cdk.App()
    shared = str(app.node.try_get_context("mdlc:sharedPlatform")).lower() != "false"
    build(app, HERE / "models", shared_platform=shared, model_stack=team_model_stack)
    apply_compliance_checks(app)
    app.synth()


if __name__ == "__main__":
    main()
