"""cdk-nag packs and acknowledgments, for the library and for its users.

cdk-nag v3 runs as a CDK validation plugin: findings stop synthesis and are
written to ``<outdir>/validation-report.json``. A finding is acknowledged at
the construct that causes it, with a reason a reviewer can check; a rule
with granular findings (``AwsSolutions-IAM5[Resource::*]``) needs each
finding acknowledged, the base id does not cover them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import (
    Acknowledgment,
    App,
    CfnElement,
    CfnResource,
    Stack,
    Stage,
    Token,
    Validations,
)
from aws_cdk.region_info import RegionInfo
from cdk_nag import AwsSolutionsChecks, PCIDSS321Checks
from constructs import IConstruct

from .tokens import stack_of

MIN_REASON_LENGTH = 20


def apply_compliance_checks(app: App, *, verbose: bool = False) -> None:
    """Register the AwsSolutions and PCI DSS 3.2.1 packs on ``app``.

    Synthesis then fails on any finding that is not acknowledged.
    """
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=verbose),
        PCIDSS321Checks(app, verbose=verbose),
    )


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``scope`` and everything below it.

    Args:
        rule: the rule id as cdk-nag prints it, e.g. ``AwsSolutions-IAM5`` or
            ``AwsSolutions-IAM5[Action::s3:*]`` or ``PCI.DSS.321-LambdaDLQ``.
        reason: why the finding is acceptable here; at least 20 characters,
            so an acknowledgment always says something a reviewer can check.
    """
    acknowledge_all(scope, {rule: reason})


def acknowledge_all(scope: IConstruct, reasons: Mapping[str, str]) -> None:
    """Acknowledge several findings on ``scope``: ``{rule: reason}`` (see :func:`acknowledge`).

    One ``Validations.acknowledge`` call takes every rule and its variants: each
    jsii call is a round trip to node, and a model stack makes hundreds of
    acknowledgments (issue #12).
    """
    for rule, reason in reasons.items():
        if len(reason.strip()) < MIN_REASON_LENGTH:
            raise ValueError(
                f"the reason for acknowledging {rule} must explain it "
                f"(at least {MIN_REASON_LENGTH} characters), got {reason!r}"
            )
    stack: list[Stack] = []  # Stack.of(scope), looked up once and only if a rule needs it
    acknowledgments = [
        Acknowledgment(id=variant, reason=reason)
        for rule, reason in reasons.items()
        for variant in _variants(scope, rule, stack)
    ]
    if not acknowledgments:
        return
    if _BATCHES:
        _BATCHES[-1].setdefault(id(scope), (scope, []))[1].extend(acknowledgments)
    else:
        Validations.of(scope).acknowledge(*acknowledgments)


#: Open batches (innermost last): id(scope) -> (scope, its acknowledgments).
_BATCHES: list[dict[int, tuple[IConstruct, list[Acknowledgment]]]] = []


@contextmanager
def batched_acknowledgments() -> Iterator[None]:
    """Record the acknowledgments made inside the block with one
    ``Validations.acknowledge`` call per scope when it ends.

    A model stack acknowledges about 140 times on about 25 scopes, and each
    acknowledgment is two jsii round trips; the stacks' constructors run
    inside this. cdk-nag reads the acknowledgments at synthesis, after it.
    """
    _BATCHES.append({})
    try:
        yield
    finally:
        batch = _BATCHES.pop()
        for scope, acknowledgments in batch.values():
            if _BATCHES:  # nested: the outer batch records them
                _BATCHES[-1].setdefault(id(scope), (scope, []))[1].extend(acknowledgments)
            else:
                Validations.of(scope).acknowledge(*acknowledgments)


# -- how cdk-nag prints references ------------------------------------------------
#
# Acknowledgments are written once, in the form cdk-nag prints for an
# environment-agnostic stack that owns its resources: ``<AWS::Region>``,
# ``<LogicalId.Arn>``. The same construct can land in a stack with an explicit
# account and region (cdk-nag then prints the values) or use a resource of
# another stack (cdk-nag then prints the CloudFormation export's name for a
# strong reference, the ``Fn::GetStackOutput`` of a published output for a weak
# one; ``@aws-cdk/core:defaultCrossStackReferences``), so ``acknowledge`` also
# records the finding in those forms.

_REFERENCE = re.compile(r"<([A-Za-z0-9]+)(?:\.([A-Za-z0-9.]+))?>")
#: Logical id -> the stacks owning an element resource_token() named, by stage.
#: Kept as plain Python objects so matching costs no jsii round trip per
#: acknowledgment, and weakly, so a finished app (a test's) is not kept alive.
#: A stack references only stacks of its own stage (its app, or one pipeline
#: stage's copy of the platform): the stage tells Staging's platform from
#: Production's, which share every logical id.
_NAMED: dict[str, weakref.WeakKeyDictionary[Stack, object]] = {}


def _variants(scope: IConstruct, rule: str, stack_of_scope: list[Stack]) -> list[str]:
    if "<" not in rule:
        return [rule]
    if not stack_of_scope:
        stack_of_scope.append(stack_of(scope))
    own = stack_of_scope[0]
    stack = _facts(own)
    variants = [rule]
    literal = rule
    for pseudo, value in (("<AWS::Region>", stack.region), ("<AWS::AccountId>", stack.account)):
        if pseudo in literal and value is not None:
            literal = literal.replace(pseudo, value)
    if literal != rule:
        variants.append(literal)
    # The partition is literal only under enablePartitionLiterals: both forms.
    if "<AWS::Partition>" in literal and stack.partition is not None:
        variants.append(literal.replace("<AWS::Partition>", stack.partition))
    if not _REFERENCE.search(rule):
        return variants
    for current in list(variants):
        exported = weak = current
        for match in _REFERENCE.finditer(current):
            logical_id, attribute = match.group(1), match.group(2)
            producer = next(
                (
                    owner
                    for owner, owner_stage in list(_NAMED.get(logical_id, {}).items())
                    if owner is not own and owner_stage is stack.stage
                ),
                None,
            )
            if producer is not None:
                exported = exported.replace(
                    match.group(0), export_name(producer, logical_id, attribute)
                )
                weak = weak.replace(
                    match.group(0), stack_output_reference(producer, logical_id, attribute)
                )
        variants.extend(v for v in (exported, weak) if v != current)
    return variants


@dataclass(frozen=True)
class _StackFacts:
    """What acknowledgments read of a stack, read once: each read is a jsii call."""

    stage: object
    name: str
    region: str | None  # None while a token (an environment-agnostic stack)
    account: str | None
    #: The region's partition (``aws``) when the region is known: what a stack
    #: writes instead of ``${AWS::Partition}`` under
    #: ``@aws-cdk/core:enablePartitionLiterals`` (``cdk init``'s default).
    partition: str | None


#: Each stack's facts, for as long as the stack lives.
_STACK_FACTS: weakref.WeakKeyDictionary[Stack, _StackFacts] = weakref.WeakKeyDictionary()


def _facts(stack: Stack) -> _StackFacts:
    facts = _STACK_FACTS.get(stack)
    if facts is None:
        region, account = stack.region, stack.account
        known = not Token.is_unresolved(region)
        info = RegionInfo.get(region) if known else None
        facts = _StackFacts(
            stage=Stage.of(stack), name=stack.stack_name,
            region=region if known else None,
            account=None if Token.is_unresolved(account) else account,
            partition=info.partition if info is not None and info.partition else None,
        )
        _STACK_FACTS[stack] = facts
    return facts


def _output_id(logical_id: str, attribute: str | None) -> str:
    reference = {"Fn::GetAtt": [logical_id, attribute]} if attribute else {"Ref": logical_id}
    return "Output" + json.dumps(reference, separators=(",", ":"))


def _unique_id(*components: str) -> str:
    """aws-cdk-lib's ``makeUniqueId`` of a construct path (no ``Default``/``Resource``)."""
    digest = hashlib.md5("/".join(components).encode()).hexdigest()[:8].upper()
    human = "".join(re.sub(r"[^A-Za-z0-9]", "", c) for c in components)[:240]
    return f"{human}{digest}"


def export_name(producer: Stack, logical_id: str, attribute: str | None) -> str:
    """The name CDK gives the export of a ``producer`` resource's attribute (or
    Ref) when another stack uses it by a strong reference (``Fn::ImportValue``).

    Asked of aws-cdk-lib through its public API rather than copied from its
    internal naming (``generateExportName``): :func:`_exported_name`.
    """
    return _exported_name(_facts(producer).name, logical_id, attribute)


@functools.cache
def _exported_name(stack_name: str, logical_id: str, attribute: str | None) -> str:
    """``Stack.export_value`` names an export exactly as an automatic strong
    reference does (its documented purpose: keep that export when the
    reference goes), but it adds the export to its stack. So it is called on
    a scratch stack of the same name holding a stand-in with the same logical
    id, never synthesized: the name depends only on those two and the
    attribute. About 15 ms, once per reference (cached).
    """
    stack = Stack(App(), "Scratch", stack_name=stack_name)
    stand_in = CfnResource(stack, "StandIn", type="Custom::ExportName")
    stand_in.override_logical_id(logical_id)
    value = stand_in.get_att(attribute).to_string() if attribute else stand_in.ref
    resolved = stack.resolve(stack.export_value(value))
    return str(resolved["Fn::ImportValue"])


def stack_output_reference(producer: Stack, logical_id: str, attribute: str | None) -> str:
    """How cdk-nag prints a weak reference to a ``producer`` resource's attribute
    (or Ref) from another stack in the same account and region: the
    ``Fn::GetStackOutput`` of the output CDK publishes under ``<producer>/Publish``
    (``@aws-cdk/core:defaultCrossStackReferences`` ``"weak"`` or ``"both"``)."""
    facts = _facts(producer)
    region: object = facts.region if facts.region is not None else {"Ref": "AWS::Region"}
    reference = {
        "Fn::GetStackOutput": {
            "StackName": facts.name,
            "Region": region,
            "OutputName": _unique_id("Publish", _output_id(logical_id, attribute)),
        }
    }
    return json.dumps(reference, separators=(",", ":"))


@dataclass(frozen=True)
class Finding:
    """One unacknowledged finding from a validation report."""

    pack: str
    rule: str
    construct_path: str
    description: str

    def __str__(self) -> str:
        return f"{self.rule} at {self.construct_path}: {self.description}"


def read_findings(outdir: str | Path) -> list[Finding]:
    """The findings in ``outdir``'s validation report (none when there is no report)."""
    report = Path(outdir) / "validation-report.json"
    if not report.exists():
        return []
    data = json.loads(report.read_text())
    return [
        Finding(
            plugin["pluginName"],
            violation["ruleName"],
            construct["constructPath"],
            violation["description"],
        )
        for plugin in data.get("pluginReports", [])
        for violation in plugin.get("violations", [])
        for construct in violation.get("violatingConstructs", [])
    ]


#: The action families aws-cdk-lib's grant methods use (``bucket.grant_read``,
#: ``key.grant_encrypt_decrypt``, ...). cdk-nag reports each as a wildcard.
GRANT_ACTION_WILDCARDS = (
    "s3:Abort*",
    "s3:DeleteObject*",
    "s3:GetBucket*",
    "s3:GetObject*",
    "s3:List*",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
)


def iam5_action(action: str) -> str:
    """The rule id of an action wildcard finding: ``AwsSolutions-IAM5[Action::<action>]``."""
    return f"AwsSolutions-IAM5[Action::{action}]"


def iam5_resource(resource: str) -> str:
    """The rule id of a resource wildcard finding, ``resource`` as cdk-nag prints
    it (see :func:`printed_arn`, :func:`resource_token`)."""
    return f"AwsSolutions-IAM5[Resource::{resource}]"


def printed_arn(service: str, resource: str, region: bool = True) -> str:
    """How cdk-nag prints ``Stack.format_arn(service=service, ...)`` in the
    stack's own partition, Region and account, ``resource`` being the part
    after the account (``log-group:/aws/...``, ``training-job/mdlc-fraud-*``):
    ``arn:<AWS::Partition>:<service>:<AWS::Region>:<AWS::AccountId>:<resource>``.
    ``region=False`` for a global service (IAM). :func:`acknowledge` adds the
    literal forms cdk-nag prints in a stack with an explicit environment."""
    where = "<AWS::Region>" if region else ""
    return f"arn:<AWS::Partition>:{service}:{where}:<AWS::AccountId>:{resource}"


def acknowledge_grant_actions(scope: IConstruct) -> None:
    """Acknowledge the action wildcards of aws-cdk-lib grant methods on ``scope``.

    They name action families (every ``s3:GetObject*`` variant, every
    ``kms:GenerateDataKey*`` variant) on resources the grant already scopes.
    """
    for action in GRANT_ACTION_WILDCARDS:
        acknowledge(
            scope,
            iam5_action(action),
            f"{action} is an aws-cdk-lib grant method's action family, applied only to "
            "the resources the grant names",
        )


def resource_token(resource: IConstruct, attribute: str = "Arn") -> str:
    """How cdk-nag prints a ``Fn::GetAtt`` of ``resource`` in a granular finding:
    ``<LogicalId.Arn>``. ``resource`` is an L2 construct or its Cfn resource.

    ``acknowledge`` turns it into the export's name when the finding is in
    another stack than ``resource``.
    """
    cached = _TOKENS.get(resource)
    if cached is not None:
        return f"<{cached}.{attribute}>"
    element = resource if isinstance(resource, CfnElement) else resource.node.default_child
    if not isinstance(element, CfnElement):
        raise ValueError(f"{resource.node.path} has no CloudFormation resource of its own")
    owner = Stack.of(element)
    logical_id = owner.get_logical_id(element)
    named = _NAMED.setdefault(logical_id, weakref.WeakKeyDictionary())
    if owner not in named:
        named[owner] = _facts(owner).stage
    _TOKENS[resource] = logical_id
    return f"<{logical_id}.{attribute}>"


#: The logical id of every resource resource_token() named, while it lives. A
#: logical id is fixed once the element exists.
_TOKENS: weakref.WeakKeyDictionary[IConstruct, str] = weakref.WeakKeyDictionary()


def acknowledge_objects(scope: IConstruct, bucket: IConstruct, pattern: str, reason: str) -> None:
    """Acknowledge ``AwsSolutions-IAM5`` for object access under ``pattern`` of
    ``bucket`` (an S3 object ARN cannot be named without a wildcard).

    An imported bucket (``Bucket.from_bucket_name``) has no resource of its own:
    cdk-nag prints its ARN with ``<AWS::Partition>`` and its name. One whose name
    is a token cannot be matched; its finding is left for the caller to see.
    """
    if isinstance(bucket, CfnElement) or bucket.node.default_child is not None:
        resource = resource_token(bucket)
    else:
        name = getattr(bucket, "bucket_name", None)
        if not isinstance(name, str) or Token.is_unresolved(name):
            return
        resource = f"arn:<AWS::Partition>:s3:::{name}"
    acknowledge(scope, iam5_resource(f"{resource}/{pattern}"), reason)
