"""Acknowledgments hold in any app shape (issue #12).

cdk-nag prints a finding's resource in the form its stack sees it: a
platform bucket as the export of *its own stage's* platform, an ARN with the
literal account and region of a stack with an explicit environment. One app
here holds the library in four shapes at once, next to each other, and must
synthesize with no unacknowledged finding in any of them, and nothing that
aws-cdk-lib's own template rules report (tests/template_rules.py).
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_shape_in_one_app_is_cdk_nag_clean(tmp_path):
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.pipeline import MdlcStage
    from mdlc_constructs.platform import build_app
    from tests.template_rules import rules_app

    app = rules_app(outdir=str(tmp_path))
    models = ROOT / "models"
    # At the app's root, environment-agnostic, on a shared platform.
    build_app(app, models, shared_platform=True)
    # Three stages: two shared platforms with the same construct ids (one
    # environment-agnostic, one with an explicit environment) and one
    # self-contained in another account and Region.
    MdlcStage(app, "Dev", models_dir=models, shared_platform=True)
    MdlcStage(app, "Eu", models_dir=models, shared_platform=True,
              env=cdk.Environment(account="222222222222", region="eu-west-1"))
    MdlcStage(app, "Us", models_dir=models, shared_platform=False,
              env=cdk.Environment(account="333333333333", region="us-east-1"))
    try:
        app.synth()
    except Exception:  # the findings say more than the error
        findings = read_findings(tmp_path)
        assert findings == [], "\n".join(map(str, findings[:20]))
        raise
    assert read_findings(tmp_path) == []
    templates = {p.name for p in tmp_path.rglob("*.template.json")}
    for stage in ("Dev", "Eu"):
        assert any(name.startswith(stage) and "Platform" in name for name in templates)
    assert not any(name.startswith("Us") and "Platform" in name for name in templates)
