"""Helpers to synthesize stacks deterministically and test them, for this
library's suite and for a team's own (``pip install 'mdlc-constructs[testing]'``).

    app = make_app(cdk_json="cdk.json")      # the team's own flags, as `cdk synth` reads them
    stack = MdlcModelStack(app, "Fraud", spec=load_spec("models/fraud.yaml"))
    assert normalized_template(stack) == snapshot   # syrupy

``normalized_template`` removes what changes without the infrastructure
changing: asset hashes (they follow handler source bytes), CDK metadata,
the bootstrap-version parameter and rule, and the asset bucket names.
``load_handler`` imports one of the shipped Lambda handlers for a test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

from .compliance import apply_compliance_checks
from .functions import handlers_root

#: The package data file that holds the feature flags this library is tested
#: with. The repository's cdk.json carries the same flags as its context, and
#: the suite fails when the two differ.
FEATURE_FLAGS_FILE = "feature_flags.json"
_ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
_ASSET_PLACEHOLDER = "<asset-hash>"


class CdkJsonError(ValueError):
    """A cdk.json (or its cdk.context.json) that ``make_app`` cannot read."""


def feature_flags() -> dict[str, Any]:
    """The feature flags this library is tested with.

    Every flag ``cdk init`` writes, at the value it writes, except the few
    the library sets otherwise (cross-stack references ``"both"``, no
    additional metadata, ...; docs/testing.md lists each and says why). Read
    from the installed package, so a wheel gives the same flags as a checkout.
    """
    text = resources.files(__package__).joinpath(FEATURE_FLAGS_FILE).read_text(encoding="utf-8")
    return dict(json.loads(text))


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CdkJsonError(f"{path}: cannot read {what}: {error.strerror or error}") from error
    except json.JSONDecodeError as error:
        raise CdkJsonError(
            f"{path}: {what} is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}"
        ) from error
    if not isinstance(data, dict):
        raise CdkJsonError(f"{path}: {what} must be a JSON object, got {type(data).__name__}")
    return data


def read_cdk_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The context ``cdk synth`` gives an app from the cdk.json at ``path``.

    That is cdk.json's ``context`` object, updated by the ``cdk.context.json``
    beside it when there is one (the CLI's cached lookups), as the CLI merges
    them. A missing file, invalid JSON or a ``context`` that is not an object
    raises :class:`CdkJsonError` naming the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "cdk.json"
    if not path.is_file():
        raise CdkJsonError(f"{path}: no such cdk.json")
    context = _read_json_object(path, "cdk.json").get("context", {})
    if not isinstance(context, dict):
        raise CdkJsonError(
            f"{path}: \"context\" must be a JSON object of context keys, "
            f"got {type(context).__name__}"
        )
    cached = path.with_name("cdk.context.json")
    if cached.is_file():
        context = {**context, **_read_json_object(cached, "cdk.context.json")}
    return dict(context)


def make_app(
    *,
    compliance: bool = True,
    context: dict[str, Any] | None = None,
    outdir: str | None = None,
    cdk_json: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> cdk.App:
    """An App as a test wants it: known feature flags, no analytics metadata,
    and (by default) the cdk-nag packs registered, so synthesis fails on any
    finding that is not acknowledged.

    Args:
        compliance: register the AwsSolutions and PCI DSS 3.2.1 packs.
        context: context keys set on top of the flags (e.g. one flag to try).
        outdir: where the cloud assembly goes. Default: a temporary folder.
        cdk_json: the team's own flags instead of this library's: a path to
            its cdk.json (or the folder holding it), read as ``cdk synth``
            reads it (:func:`read_cdk_json`), or that context as a mapping.
            A snapshot taken with the team's flags is the template its own
            ``cdk synth`` writes. Default: :func:`feature_flags`.
    """
    if cdk_json is None:
        flags = feature_flags()
    elif isinstance(cdk_json, Mapping):
        flags = dict(cdk_json)
    else:
        flags = read_cdk_json(cdk_json)
    app = cdk.App(
        context={**flags, **(context or {})},
        analytics_reporting=False,
        outdir=outdir,
    )
    if compliance:
        apply_compliance_checks(app)
    return app


def load_handler(name: str) -> ModuleType:
    """Import the Lambda handler ``name`` (its ``index.py``) as a fresh module.

    Every handler file is called index.py, as deployed, so a test cannot
    import handlers as plain modules. Each call executes the file anew under
    the module name ``mdlc_handler_<name>``, so a test sets the environment
    variables and starts moto first: handlers read both at import time. The
    handlers come from the installed package (``mdlc_handlers``), the same
    files the constructs deploy.

    Raises:
        LookupError: there is no handler ``name``; the message lists those there are.
    """
    root = handlers_root()
    path = root / name / "index.py"
    if not path.is_file():
        known = sorted(p.parent.name for p in root.glob("*/index.py"))
        raise LookupError(
            f"no Lambda handler {name!r}: {path} does not exist; the handlers are "
            + ", ".join(known)
        )
    module_name = f"mdlc_handler_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise LookupError(f"cannot load the Lambda handler {name!r} from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


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
