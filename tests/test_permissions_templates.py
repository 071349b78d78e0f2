"""Permissions as AWS evaluates them, read from the synthesized templates (issue #11).

A statement that exists is not a statement that applies: a KMS condition on
the wrong ARN, or a condition key that the action never carries, grants
nothing. These tests read every role's policies of the example stack (the
session's synthesis) and of a shared platform with two models (one of them
with every optional path on: Processing runners, the state machine
integration), and check what each statement really allows.

References resolve to placeholders: ``AWS::Partition`` is ``aws``, the region
and account are ``REGION`` and ``ACCOUNT``, other references stay
``<LogicalId>`` or ``<LogicalId.Attribute>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "REGION", "AWS::AccountId": "ACCOUNT",
          "AWS::URLSuffix": "amazonaws.com"}
#: The model with every optional path on, next to the example on a shared platform.
VARIANT = "fraudx"


# -- fixtures: the session's example stack, and one shared platform app ------------------------


def _variant_spec_text() -> str:
    data = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    data["name"] = VARIANT
    for section in ("quality", "features", "monitoring"):
        data.setdefault(section, {})["runner"] = "processing"
    data["integration"]["mode"] = "state_machine"
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture(scope="module")
def shared_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """``Mdlc-Platform``, ``Mdlc-fraud`` and ``Mdlc-fraudx`` on one platform, both
    cdk-nag packs, synthesized once for this module."""
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.testing import make_app

    models = tmp_path_factory.mktemp("models")
    (models / "fraud.yaml").write_text((ROOT / "models" / "fraud.yaml").read_text())
    (models / f"{VARIANT}.yaml").write_text(_variant_spec_text())
    outdir = tmp_path_factory.mktemp("shared-permissions.out")
    app = make_app(outdir=str(outdir))
    build_app(app, models, shared_platform=True)
    try:
        app.synth()
    except Exception as error:  # jsii raises with the report's path
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis failed: {error}\n{findings}")
    return {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in outdir.glob("*.template.json")
    }


@pytest.fixture(scope="module")
def model_templates(fraud_template, shared_templates) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every model stack to check: ``label -> (model name, template)``."""
    return {
        "per-model fraud": ("fraud", fraud_template.to_json()),
        "shared fraud": ("fraud", shared_templates["Mdlc-fraud"]),
        f"shared {VARIANT}": (VARIANT, shared_templates[f"Mdlc-{VARIANT}"]),
    }


# -- reading templates -------------------------------------------------------------------------


def resolve(value: Any) -> Any:
    """A CloudFormation value as a string where it is one (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if isinstance(value, dict):
        if "Ref" in value:
            return PSEUDO.get(value["Ref"], f"<{value['Ref']}>")
        if "Fn::GetAtt" in value:
            logical, attribute = value["Fn::GetAtt"]
            return f"<{logical}.{attribute}>"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(resolve(p)) for p in parts)
        if "Fn::ImportValue" in value:
            return f"<import {json.dumps(value['Fn::ImportValue'], sort_keys=True)}>"
        return json.dumps(value, sort_keys=True)
    return value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Role logical id -> every identity-policy statement attached to it."""
    resources = template["Resources"]
    found: dict[str, list[dict[str, Any]]] = {
        logical: [s for p in r["Properties"].get("Policies", [])
                  for s in p["PolicyDocument"]["Statement"]]
        for logical, r in resources.items() if r["Type"] == "AWS::IAM::Role"
    }
    for resource in resources.values():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        for role in resource["Properties"].get("Roles", []):
            if isinstance(role, dict) and role.get("Ref") in found:
                found[role["Ref"]].extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return found


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, statement)`` for every identity-policy and key-policy statement."""
    for role, found in role_statements(template).items():
        for statement in found:
            yield role, statement
    for logical, resource in template["Resources"].items():
        if resource["Type"] == "AWS::KMS::Key":
            for statement in resource["Properties"]["KeyPolicy"]["Statement"]:
                yield f"{logical} (key policy)", statement


def actions(statement: dict[str, Any]) -> list[str]:
    return [a.lower() for a in as_list(statement.get("Action", []))]


def allows(statement: dict[str, Any], action: str) -> bool:
    """Whether the statement's actions name ``action`` (wildcards as IAM reads them)."""
    from fnmatch import fnmatchcase

    return statement.get("Effect") == "Allow" and any(
        fnmatchcase(action.lower(), pattern) for pattern in actions(statement))


def conditions(statement: dict[str, Any]) -> dict[str, tuple[str, list[Any]]]:
    """Condition key -> (operator, resolved values)."""
    return {
        key: (operator, [resolve(v) for v in as_list(values)])
        for operator, block in statement.get("Condition", {}).items()
        for key, values in block.items()
    }


def machines(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in template["Resources"].items()
            if r["Type"] == "AWS::StepFunctions::StateMachine"}


def machine_arn(name: str) -> str:
    return f"arn:aws:states:REGION:ACCOUNT:stateMachine:{name}"


# -- 1. encrypted state machines can start ----------------------------------------------------

#: What a KMS request carries, per action family: only these condition keys can match.
ENCRYPTION_CONTEXT_ACTIONS = {
    "kms:encrypt", "kms:decrypt", "kms:reencryptfrom", "kms:reencryptto", "kms:generatedatakey",
    "kms:generatedatakeywithoutplaintext", "kms:generatedatakeypair",
    "kms:generatedatakeypairwithoutplaintext", "kms:creategrant",
}
#: kms:GrantIsForAWSResource is set on these requests only (AWS KMS condition keys).
GRANT_ACTIONS = {"kms:creategrant", "kms:listgrants", "kms:revokegrant"}


def _kms_actions(statement: dict[str, Any]) -> set[str]:
    """The KMS actions a statement's action patterns name."""
    from fnmatch import fnmatchcase

    known = ENCRYPTION_CONTEXT_ACTIONS | GRANT_ACTIONS | {
        "kms:describekey", "kms:reencrypt*", "kms:retiregrant", "kms:listaliases"}
    named = set()
    for pattern in actions(statement):
        if not pattern.startswith("kms:") or pattern == "kms:*":
            continue
        named |= {a for a in known if fnmatchcase(a, pattern)} or {pattern}
    return named


def test_every_state_machine_is_named_and_its_role_may_use_the_key_for_it(model_templates):
    """Step Functions encrypts with the machine's ARN as encryption context
    (``aws:states:stateMachineArn``); the role's condition must name exactly it."""
    for label, (_model, template) in model_templates.items():
        roles = role_statements(template)
        for logical, props in machines(template).items():
            name = props.get("StateMachineName")
            assert isinstance(name, str) and 0 < len(name) <= 80, (label, logical, name)
            assert props["EncryptionConfiguration"]["Type"] == "CUSTOMER_MANAGED_KMS_KEY"
            key = resolve(props["EncryptionConfiguration"]["KmsKeyId"])
            role = props["RoleArn"]["Fn::GetAtt"][0]
            usable = [
                s for s in roles[role]
                if allows(s, "kms:GenerateDataKey") and allows(s, "kms:Decrypt")
                and key in as_list(resolve(s["Resource"]))
                and conditions(s).get("kms:EncryptionContext:aws:states:stateMachineArn")
                == ("StringEquals", [machine_arn(name)])
            ]
            assert usable, f"{label}: {logical}'s role cannot use {key} for {machine_arn(name)}"
            # ...and no statement names the nameless ARN aws-cdk-lib builds for an unnamed one.
            values = [v for s in roles[role] for _, vs in conditions(s).values() for v in vs]
            assert not [v for v in values if str(v).endswith(":stateMachine:")], (label, role)


def test_state_machine_names_follow_the_stack_and_are_unique(model_templates, shared_templates):
    names = [props["StateMachineName"] for template in shared_templates.values()
             for props in machines(template).values()]
    assert len(names) == len(set(names)), names
    for stack, template in shared_templates.items():
        for props in machines(template).values():
            assert props["StateMachineName"].startswith(f"{stack}-"), props["StateMachineName"]
    example = model_templates["per-model fraud"][1]
    fraud = {p["StateMachineName"] for p in machines(example).values()}
    assert fraud == {"Mdlc-fraud-Data-Workflow", "Mdlc-fraud-Training-StateMachine",
                     "Mdlc-fraud-Realtime-DeploymentWorkflow",
                     "Mdlc-fraud-BatchInference-StateMachine"}


def test_a_long_path_gets_a_hashed_name_within_the_limit():
    from aws_cdk import App, Stack
    from constructs import Construct

    from mdlc_constructs.workflow import state_machine_name

    app = App()
    stack = Stack(app, "Mdlc-" + "m" * 60)
    scope = Construct(Construct(stack, "Stage"), "Nested.Part")
    name = state_machine_name(scope, "Workflow")
    again = state_machine_name(scope, "Workflow")
    other = state_machine_name(scope, "Other")
    assert len(name) == 80 and name == again and name != other
    assert name.startswith("Mdlc-mmmm")


def test_log_delivery_to_the_encrypted_log_group_is_allowed(model_templates, shared_templates):
    """AWS's documented needs of a logging machine with a customer key: the role's
    kms:GenerateDataKey for log delivery, and delivery.logs.amazonaws.com's
    kms:Decrypt in the key policy."""
    for label, (_model, template) in model_templates.items():
        roles = role_statements(template)
        for logical, props in machines(template).items():
            role = props["RoleArn"]["Fn::GetAtt"][0]
            assert any(
                allows(s, "kms:GenerateDataKey")
                and conditions(s).get("kms:EncryptionContext:SourceArn")
                == ("StringEquals", ["arn:aws:logs:REGION:ACCOUNT:*"])
                for s in roles[role]
            ), (label, logical)
    for owner in (model_templates["per-model fraud"][1], shared_templates["Mdlc-Platform"]):
        (key,) = [r for r in owner["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
        assert any(
            s.get("Principal") == {"Service": "delivery.logs.amazonaws.com"}
            and allows(s, "kms:Decrypt") and "Condition" not in s
            for s in key["Properties"]["KeyPolicy"]["Statement"]
        )


def test_starting_an_execution_needs_no_key_permission(model_templates):
    """StartExecution's caller needs nothing on the key (Step Functions' table of
    the KMS permissions of API callers): each EventBridge rule that starts a
    machine has a role that may do exactly that."""
    for label, (_model, template) in model_templates.items():
        roles = role_statements(template)
        names = machines(template)
        targets = [t for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"
                   for t in r["Properties"].get("Targets", [])
                   if isinstance(t["Arn"], dict) and t["Arn"].get("Ref") in names]
        assert targets, label
        for target in targets:
            role = target["RoleArn"]["Fn::GetAtt"][0]
            assert [(actions(s), resolve(s["Resource"])) for s in roles[role]] == [
                (["states:startexecution"], f"<{target['Arn']['Ref']}>")], (label, role)


# -- 2. every KMS grant can apply ----------------------------------------------------------


def test_every_kms_condition_can_match_the_actions_it_allows(model_templates, shared_templates):
    """A condition key the request never carries fails the statement: an
    encryption-context key on DescribeKey, GrantIsForAWSResource on anything but
    the grant operations."""
    templates = [t for _, t in model_templates.values()] + [shared_templates["Mdlc-Platform"]]
    for template in templates:
        for where, statement in statements(template):
            kms = _kms_actions(statement)
            if not kms:
                continue
            for key in conditions(statement):
                if key.startswith("kms:EncryptionContext:"):
                    dead = {a for a in kms if a not in ENCRYPTION_CONTEXT_ACTIONS
                            and a != "kms:reencrypt*"}
                    assert not dead, f"{where}: {key} is never set on {sorted(dead)}"
                if key == "kms:GrantIsForAWSResource":
                    dead = kms - GRANT_ACTIONS
                    assert not dead, f"{where}: {key} is never set on {sorted(dead)}"


def test_roles_that_pass_the_key_to_sagemaker_may_describe_it_and_grant_for_it(model_templates):
    """CreateTrainingJob, CreateProcessingJob and CreateEndpointConfig with a
    KmsKeyId: SageMaker creates grants for the job (CreateGrant, only when it
    asks for an AWS resource) and describes the key as the caller."""
    callers = ("TrainingStateMachineRole", "RealtimeDeploymentWorkflowRole")
    processing = {VARIANT: ("DataWorkflowRole", "MonitoringWorkflowRole")}
    for label, (model, template) in model_templates.items():
        for role, found in role_statements(template).items():
            if not role.startswith(callers + processing.get(model, ())):
                continue
            describe = [s for s in found if allows(s, "kms:DescribeKey") and "Condition" not in s]
            grant = [s for s in found if allows(s, "kms:CreateGrant")]
            assert describe, (label, role)
            assert grant and all(conditions(s) == {"kms:GrantIsForAWSResource": ("Bool", ["true"])}
                                 for s in grant), (label, role)


# -- 3. SageMaker roles: `*` only where the API has no resource-level permission ----------------

#: What a SageMaker execution role may be granted on `*`: the actions without
#: resource-level permissions (metrics under a namespace condition).
SAGEMAKER_WILDCARD_ACTIONS = {"cloudwatch:putmetricdata", "ecr:getauthorizationtoken"}


def sagemaker_roles(template: dict[str, Any]) -> list[str]:
    return [
        logical for logical, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role"
        and any(s.get("Principal", {}).get("Service") == "sagemaker.amazonaws.com"
                for s in r["Properties"]["AssumeRolePolicyDocument"]["Statement"])
    ]


def test_sagemaker_roles_name_star_only_for_actions_without_resource_permissions(
    model_templates,
):
    for label, (_model, template) in model_templates.items():
        roles = role_statements(template)
        found = sagemaker_roles(template)
        assert any(r.startswith("BatchInferenceModelRole") for r in found), label
        for role in found:
            for statement in roles[role]:
                if "*" not in as_list(statement["Resource"]):
                    continue
                extra = set(actions(statement)) - SAGEMAKER_WILDCARD_ACTIONS
                assert not extra, f"{label}: {role} has {sorted(extra)} on *"
                if "cloudwatch:putmetricdata" in actions(statement):
                    assert "cloudwatch:namespace" in conditions(statement), (label, role)


def test_the_batch_model_role_writes_only_its_transform_jobs_logs(model_templates):
    for label, (model, template) in model_templates.items():
        roles = role_statements(template)
        (role,) = [r for r in sagemaker_roles(template)
                   if r.startswith("BatchInferenceModelRole")]
        group = "arn:aws:logs:REGION:ACCOUNT:log-group:/aws/sagemaker/TransformJobs"
        logs = [s for s in roles[role] if any(a.startswith("logs:") for a in actions(s))]
        assert logs, label
        for statement in logs:
            assert sorted(as_list(resolve(statement["Resource"]))) == sorted(
                [group, f"{group}:log-stream:mdlc-{model}-b-*"]), (label, statement)
        assert not [s for s in roles[role] if any(a.startswith("ecr:") for a in actions(s))], (
            "a built-in algorithm's image needs no ECR permission", label)


# -- 4. listing: a model's own prefixes only ---------------------------------------------------

#: Data lake buckets by the logical id their ARN names (own or imported from the platform).
BUCKETS = ("Raw", "Datasets", "Features", "Artifacts", "Predictions", "Capture")
ASSETS = "cdk-hnb659fds-assets"
DAY = "2026-11-27"


def string_like(value: str, pattern: str) -> bool:
    """IAM's StringLike: ``*`` any run of characters, ``?`` any one, case-sensitive."""
    import re

    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def bucket_of(resource: str) -> str | None:
    """``Datasets``, ``assets``, ... for a bucket ARN; None for object ARNs
    (``<bucket ARN>/<key>``: references and bucket names hold no ``/``)."""
    if "/" in resource:
        return None
    for kind in BUCKETS:
        if f"DataLake{kind}" in resource:
            return kind
    if ASSETS in resource:
        return "assets"
    return "*" if resource == "*" else resource


def listings(template: dict[str, Any]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Role -> [(bucket, statement)] for every statement allowing s3:ListBucket on a bucket."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for role, role_found in role_statements(template).items():
        for statement in role_found:
            if not allows(statement, "s3:ListBucket"):
                continue
            for resource in as_list(resolve(statement["Resource"])):
                kind = bucket_of(str(resource))
                if kind is not None:
                    found.setdefault(role, []).append((kind, statement))
    return found


def may_list(template: dict[str, Any], role_prefix: str, bucket: str, prefix: str) -> bool:
    (role,) = [r for r in role_statements(template) if r.startswith(role_prefix)]
    return any(
        kind == bucket and any(string_like(prefix, v) for v in
                               conditions(statement).get("s3:prefix", ("", []))[1])
        for kind, statement in listings(template).get(role, [])
    )


def test_every_listing_is_limited_to_the_models_prefixes(model_templates):
    """No role may list a whole bucket: with a shared platform that would show one
    model every other model's object names. Each s3:ListBucket has a StringLike
    s3:prefix condition inside the model's prefixes (or its declared source
    prefix in the raw bucket, or its Processing code object); in the raw bucket
    the model's own dead letters too (``dead-letters/<model>/<function>/``)."""
    for label, (model, template) in model_templates.items():
        found = listings(template)
        assert found, label
        for role, entries in found.items():
            for bucket, statement in entries:
                assert bucket != "*", f"{label}: {role} may list every bucket"
                operator, values = conditions(statement).get("s3:prefix", (None, []))
                assert operator == "StringLike" and values, (
                    f"{label}: {role} may list all of {bucket}: {statement}")
                for value in values:
                    if bucket == "Raw":
                        # The source prefix, or the model's own dead letters' payloads.
                        assert value in ("orders/*", "orders/") or value.split("/")[:2] == [
                            "dead-letters", model], (label, role, value)
                    elif bucket == "assets":
                        assert "/" not in value and value.endswith(".zip"), (label, role, value)
                    else:
                        assert value.split("/")[1] == model and "*" not in value.split("/")[0], (
                            label, role, bucket, value)


def test_every_listing_the_workflows_make_is_inside_a_grant(model_templates):
    """The prefixes the handlers, the Distributed Map and SageMaker list (from the
    handlers' own helpers where they have one, else as the code builds them)
    are inside the role's s3:prefix condition."""
    from datetime import date

    from mdlc_core.predictions import day_prefix, scored_prefix
    from mdlc_core.sourcing import snapshot_prefix

    job = f"mdlc-x-{DAY}-abc"
    for label, (model, template) in model_templates.items():
        expected = [
            # mdlc_core.sourcing.S3PrefixSource: the day's partition, else the prefix.
            ("DataSourcingFunctionServiceRole", "Raw", f"orders/dt={DAY}/"),
            ("DataSourcingFunctionServiceRole", "Raw", "orders/"),
            # mdlc_core.quality_job.download: the snapshot (and a later version).
            ("DataQualityFunctionServiceRole", "Datasets",
             snapshot_prefix(model, date.fromisoformat(DAY))),
            ("DataQualityFunctionServiceRole", "Datasets",
             snapshot_prefix(model, date.fromisoformat(DAY), 2)),
            # batch_decisions: input_key_prefix and ids_key_prefix (rerun clean-up).
            ("BatchInferenceDecisionsServiceRole", "Predictions",
             f"batch-input/{model}/dt={DAY}/transform/"),
            ("BatchInferenceDecisionsServiceRole", "Predictions",
             f"batch-input/{model}/dt={DAY}/ids/"),
            # The transform job's S3Prefix input, as the model role.
            ("BatchInferenceModelRole", "Predictions", f"batch-input/{model}/dt={DAY}/transform/"),
            # The Distributed Map's ItemReader: batch_decisions.output_key_prefix.
            ("BatchInferenceStateMachineRole", "Predictions",
             f"{day_prefix(model, DAY)}transform/"),
            # training_input's channels (S3Prefix) and the job's checkpoints.
            ("TrainingTrainingRole", "Artifacts", f"training-input/{model}/{job}/train/"),
            ("TrainingTrainingRole", "Artifacts", f"training-checkpoints/{model}/{job}/"),
        ]
        monitor = "MonitoringProcessingRole" if model == VARIANT else "MonitoringJobServiceRole"
        expected += [
            # mdlc_core.monitor_job: the day's scored predictions, labels, a baseline folder.
            (monitor, "Predictions", scored_prefix(model, DAY)),
            (monitor, "Predictions", f"labels/{model}/dt={DAY}/"),
            (monitor, "Artifacts", f"baselines/{model}/"),
        ]
        for role, bucket, prefix in expected:
            assert may_list(template, role, bucket, prefix), (label, role, bucket, prefix)
            other = prefix.replace(f"/{model}/", "/another-model/")
            assert other == prefix or not may_list(template, role, bucket, other), (
                label, role, other)


def test_processing_jobs_list_only_their_code_object(model_templates):
    """A Processing job's code input is an S3Prefix on the asset's key: its role
    may list (and read) that one object of the account's CDK assets bucket."""
    import re

    _model, template = model_templates[f"shared {VARIANT}"]
    definitions = json.dumps([p["DefinitionString"] for p in machines(template).values()])
    keys = set(re.findall(r"[0-9a-f]{64}\.zip", definitions))
    assert keys
    roles = [r for r in role_statements(template) if "ProcessingRole" in r]
    assert len(roles) == 3, roles
    for role in roles:
        listed = [v for kind, s in listings(template)[role] if kind == "assets"
                  for v in conditions(s)["s3:prefix"][1]]
        assert len(listed) == 1 and listed[0] in keys, (role, listed)
        reads = [r for s in role_statements(template)[role] if allows(s, "s3:GetObject")
                 for r in as_list(resolve(s["Resource"])) if ASSETS in str(r)]
        assert reads and all(str(r).endswith(listed[0]) for r in reads), (role, reads)
