"""Helpers to synthesize stacks deterministically and snapshot-test them.

    app = make_app()
    stack = MdlcModelStack(app, "Fraud", spec=load_spec("models/fraud.yaml"))
    assert normalized_template(stack) == snapshot   # syrupy

``normalized_template`` removes what changes without the infrastructure
changing: asset hashes (they follow handler source bytes), CDK metadata,
the bootstrap-version parameter and rule, and the asset bucket names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

from .compliance import apply_compliance_checks

_PROJECT_CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"
_ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
_ASSET_PLACEHOLDER = "<asset-hash>"


def feature_flags() -> dict[str, Any]:
    """The feature flags this library is tested with (cdk.json's context)."""
    if _PROJECT_CDK_JSON.exists():
        return dict(json.loads(_PROJECT_CDK_JSON.read_text()).get("context", {}))
    return {"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True}


def make_app(
    *, compliance: bool = True, context: dict[str, Any] | None = None, outdir: str | None = None
) -> cdk.App:
    """An App with the library's feature flags, no metadata, and (by default)
    the cdk-nag packs registered, so synthesis fails on any finding."""
    app = cdk.App(
        context={**feature_flags(), **(context or {})},
        analytics_reporting=False,
        outdir=outdir,
    )
    if compliance:
        apply_compliance_checks(app)
    return app


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normalize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalize(item) for item in value]
    if isinstance(value, str):
        return _ASSET_HASH.sub(_ASSET_PLACEHOLDER, value)
    return value


def normalize_template(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``template`` without asset hashes, CDK metadata and bootstrap noise."""
    template = json.loads(json.dumps(template))
    template.get("Parameters", {}).pop("BootstrapVersion", None)
    if not template.get("Parameters"):
        template.pop("Parameters", None)
    template.get("Rules", {}).pop("CheckBootstrapVersion", None)
    if not template.get("Rules"):
        template.pop("Rules", None)
    resources = template.get("Resources", {})
    for logical_id in [k for k, v in resources.items() if v.get("Type") == "AWS::CDK::Metadata"]:
        del resources[logical_id]
    for resource in resources.values():
        metadata = resource.get("Metadata", {})
        for key in [k for k in metadata if k.startswith("aws:")]:
            del metadata[key]
        if "Metadata" in resource and not metadata:
            del resource["Metadata"]
    template.get("Conditions", {}).pop("CDKMetadataAvailable", None)
    if "Conditions" in template and not template["Conditions"]:
        del template["Conditions"]
    return _normalize(template)


def normalized_template(stack: cdk.Stack) -> dict[str, Any]:
    """Synthesize ``stack`` and return its normalized template."""
    return normalize_template(Template.from_stack(stack).to_json())
