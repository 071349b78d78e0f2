"""What a set of synthesized stacks uses of AWS's quotas and hard limits.

Many models on one account and region meet AWS's limits long before they
meet anything in the library. This module counts, from synthesized
CloudFormation templates alone (no AWS call), what the stacks will use:

* **Quotas** (per account, per Region, or per event bus) are summed over
  every stack: EventBridge rules on the default bus, IAM roles, state
  machines, tables, buckets, stacks, ... Most are adjustable in Service
  Quotas; the defaults below are AWS's documented defaults (checked 2026-12).
* **Hard limits** bind one resource or one template (a key policy's size,
  resources per stack, actions per pipeline stage): the largest use is
  compared with the limit, and :func:`headroom` says how much is left.

``mdlc quotas models/`` synthesizes the specs and prints both tables; the
benchmark ``benchmarks/bench_synth.py`` checks the limits at 200 models.

Written by hand: no library lists AWS's defaults in machine-readable form
(Service Quotas' API needs an account and knows only adjustable quotas).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Template = Mapping[str, Any]


def _resources(template: Template, kind: str) -> list[Mapping[str, Any]]:
    return [r for r in template.get("Resources", {}).values() if r.get("Type") == kind]


def _count(kind: str) -> Callable[[Template], int]:
    return lambda template: len(_resources(template, kind))


def _default_bus_rules(template: Template) -> int:
    # A rule without EventBusName is on the account's default bus, where every
    # AWS service event (Step Functions, SageMaker, CloudWatch alarms) arrives.
    return sum(1 for r in _resources(template, "AWS::Events::Rule")
               if "EventBusName" not in r.get("Properties", {}))


def _shards(template: Template) -> int:
    total = 0
    for stream in _resources(template, "AWS::Kinesis::Stream"):
        properties = stream.get("Properties", {})
        mode = (properties.get("StreamModeDetails") or {}).get("StreamMode")
        # An on-demand stream starts with 4 shards (Kinesis' documented default)
        # and counts them against the shard quota.
        total += 4 if mode == "ON_DEMAND" else int(properties.get("ShardCount", 1))
    return total


def _reserved_concurrency(template: Template) -> int:
    return sum(int(r.get("Properties", {}).get("ReservedConcurrentExecutions", 0))
               for r in _resources(template, "AWS::Lambda::Function"))


@dataclass(frozen=True)
class Quota:
    """One account- or Region-wide quota and how a template uses it."""

    name: str
    scope: str  # "account", "Region" or "default event bus"
    default: int
    adjustable: bool
    count: Callable[[Template], int]
    note: str = ""


#: AWS's documented defaults (per account and Region unless ``scope`` says).
QUOTAS: tuple[Quota, ...] = (
    Quota("EventBridge rules per event bus", "default event bus", 300, True,
          _default_bus_rules, "100 in af-south-1 and eu-south-1"),
    Quota("IAM roles", "account", 1000, True, _count("AWS::IAM::Role"),
          "adjustable up to 5,000"),
    Quota("CloudFormation stacks", "Region", 2000, True, lambda _template: 1),
    Quota("Step Functions state machines", "Region", 10000, True,
          _count("AWS::StepFunctions::StateMachine")),
    Quota("DynamoDB tables", "Region", 2500, True, _count("AWS::DynamoDB::Table")),
    Quota("S3 general purpose buckets", "account", 10000, True, _count("AWS::S3::Bucket")),
    Quota("Kinesis Data Streams shards", "Region", 200, True, _shards,
          "500 in us-east-1, us-west-2 and eu-west-1; an on-demand stream starts at 4"),
    Quota("EventBridge Pipes", "Region", 1000, True, _count("AWS::Pipes::Pipe")),
    Quota("Lambda reserved concurrency", "Region", 900, True, _reserved_concurrency,
          "1,000 concurrent executions, of which 100 always stay unreserved"),
    Quota("KMS customer managed keys", "Region", 100000, True, _count("AWS::KMS::Key")),
    Quota("SNS standard topics", "account", 100000, True, _count("AWS::SNS::Topic")),
    Quota("CodeBuild projects", "Region", 5000, True, _count("AWS::CodeBuild::Project")),
)


def _json_size(value: Any) -> int:
    """Characters of ``value`` as CloudFormation sends it, without whitespace (how
    IAM and KMS count; unresolved intrinsics count as written, a close bound)."""
    return len(json.dumps(value, separators=(",", ":")))


def _per_resource(kind: str, prop: str) -> Callable[[Template], list[tuple[str, int]]]:
    def sizes(template: Template) -> list[tuple[str, int]]:
        return [(logical_id, _json_size(r["Properties"][prop]))
                for logical_id, r in template.get("Resources", {}).items()
                if r.get("Type") == kind and prop in r.get("Properties", {})]
    return sizes


def _role_inline_policies(template: Template) -> list[tuple[str, int]]:
    """Per role, the inline policies attached to it (AWS::IAM::Policy and the
    role's own Policies), summed: IAM limits their aggregate per role."""
    totals: dict[str, int] = {}
    resources = template.get("Resources", {})
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::IAM::Role":
            totals[logical_id] = totals.get(logical_id, 0) + sum(
                _json_size(p.get("PolicyDocument")) for p in properties.get("Policies", []))
        elif resource.get("Type") == "AWS::IAM::Policy":
            for role in properties.get("Roles", []):
                name = role.get("Ref") if isinstance(role, Mapping) else str(role)
                totals[name] = totals.get(name, 0) + _json_size(properties.get("PolicyDocument"))
    return sorted(totals.items())


def _actions_per_stage(template: Template) -> list[tuple[str, int]]:
    return [(f"{logical_id}/{stage.get('Name')}", len(stage.get("Actions", [])))
            for logical_id, r in template.get("Resources", {}).items()
            if r.get("Type") == "AWS::CodePipeline::Pipeline"
            for stage in r.get("Properties", {}).get("Stages", [])]


def _action_configuration_values(template: Template) -> list[tuple[str, int]]:
    """Each value of each action's ``Configuration`` (a variable reference
    counts as written, as CodePipeline counts it before resolving it)."""
    return [(f"{logical_id}/{stage.get('Name')}/{action.get('Name')}/{key}",
             len(value) if isinstance(value, str) else _json_size(value))
            for logical_id, r in template.get("Resources", {}).items()
            if r.get("Type") == "AWS::CodePipeline::Pipeline"
            for stage in r.get("Properties", {}).get("Stages", [])
            for action in stage.get("Actions", [])
            for key, value in (action.get("Configuration") or {}).items()]


def _stages_per_pipeline(template: Template) -> list[tuple[str, int]]:
    return [(logical_id, len(r.get("Properties", {}).get("Stages", [])))
            for logical_id, r in template.get("Resources", {}).items()
            if r.get("Type") == "AWS::CodePipeline::Pipeline"]


def _whole(measure: Callable[[Template], int]) -> Callable[[Template], list[tuple[str, int]]]:
    return lambda template: [("template", measure(template))]


@dataclass(frozen=True)
class HardLimit:
    """A fixed limit on one template or resource."""

    name: str
    limit: int
    measure: Callable[[Template], list[tuple[str, int]]]


#: Limits no quota request raises (AWS documentation, checked 2026-12).
HARD_LIMITS: tuple[HardLimit, ...] = (
    HardLimit("CloudFormation resources per stack", 500,
              _whole(lambda t: len(t.get("Resources", {})))),
    HardLimit("CloudFormation outputs per stack", 200,
              _whole(lambda t: len(t.get("Outputs", {})))),
    HardLimit("CloudFormation parameters per stack", 200,
              _whole(lambda t: len(t.get("Parameters", {})))),
    HardLimit("CloudFormation template body (bytes, from S3)", 1_000_000,
              _whole(lambda t: len(json.dumps(t, indent=1)))),
    HardLimit("IAM inline policies per role (characters)", 10_240, _role_inline_policies),
    HardLimit("IAM managed policy (characters)", 6_144,
              _per_resource("AWS::IAM::ManagedPolicy", "PolicyDocument")),
    HardLimit("KMS key policy (bytes)", 32_768, _per_resource("AWS::KMS::Key", "KeyPolicy")),
    HardLimit("S3 bucket policy (bytes)", 20_480,
              _per_resource("AWS::S3::BucketPolicy", "PolicyDocument")),
    HardLimit("SNS topic policy (bytes)", 30_720,
              _per_resource("AWS::SNS::TopicPolicy", "PolicyDocument")),
    HardLimit("SQS queue policy (bytes)", 8_192,
              _per_resource("AWS::SQS::QueuePolicy", "PolicyDocument")),
    HardLimit("Step Functions definition (characters)", 1_048_576,
              _per_resource("AWS::StepFunctions::StateMachine", "DefinitionString")),
    HardLimit("Lambda environment variables (bytes)", 4_096,
              lambda t: [(k, _json_size((r["Properties"].get("Environment") or {})
                                        .get("Variables", {})))
                         for k, r in t.get("Resources", {}).items()
                         if r.get("Type") == "AWS::Lambda::Function"]),
    HardLimit("CodePipeline actions per stage", 50, _actions_per_stage),
    HardLimit("CodePipeline stages per pipeline", 50, _stages_per_pipeline),
    HardLimit("CodePipeline action configuration value (characters)", 1000,
              _action_configuration_values),
)


@dataclass(frozen=True)
class QuotaUse:
    quota: Quota
    used: int
    per_stack: dict[str, int]

    @property
    def share(self) -> float:
        return self.used / self.quota.default


@dataclass(frozen=True)
class LimitUse:
    limit: HardLimit
    used: int  # the largest use
    where: str  # stack/resource of the largest use

    @property
    def headroom(self) -> float:
        """The share of the limit left at the largest use (0.2 = 20%)."""
        # (limit - used) / limit, not 1 - used / limit: 40 of 50 leaves exactly
        # 0.2, which the latter rounds to 0.19999999999999996, below 20%.
        return (self.limit.limit - self.used) / self.limit.limit


def usage(templates: Mapping[str, Template]) -> list[QuotaUse]:
    """Each quota's use by ``templates`` ({stack name: template}), summed."""
    uses = []
    for quota in QUOTAS:
        per_stack = {name: quota.count(t) for name, t in templates.items()}
        uses.append(QuotaUse(quota, sum(per_stack.values()),
                             {k: v for k, v in per_stack.items() if v}))
    return uses


def limits(templates: Mapping[str, Template]) -> list[LimitUse]:
    """Each hard limit's largest use in ``templates`` (limits with no use are left out)."""
    uses = []
    for limit in HARD_LIMITS:
        measured = [(f"{stack}/{where}", value) for stack, template in templates.items()
                    for where, value in limit.measure(template)]
        if measured:
            where, value = max(measured, key=lambda item: item[1])
            uses.append(LimitUse(limit, value, where))
    return uses


def headroom(templates: Mapping[str, Template]) -> float:
    """The smallest headroom of any hard limit (1.0 when nothing is measured)."""
    return min((use.headroom for use in limits(templates)), default=1.0)


def format_report(templates: Mapping[str, Template], *, model_stacks: Iterable[str] = ()) -> str:
    """The two tables ``mdlc quotas`` prints; ``model_stacks`` (the model stacks'
    names) adds each quota's use per model."""
    models = [name for name in model_stacks if name in templates]
    lines = [f"Quotas used by {len(templates)} stacks"
             + (f" ({len(models)} models)" if models else "")
             + ", against AWS's defaults (all adjustable in Service Quotas):",
             f"  {'quota':<34} {'scope':<17} {'used':>6} {'default':>7} {'share':>6}"
             + (f" {'per model':>9}" if models else "")]
    for use in usage(templates):
        per_model = (f" {sum(use.per_stack.get(m, 0) for m in models) / len(models):>9.1f}"
                     if models else "")
        note = f"  ({use.quota.note})" if use.quota.note else ""
        lines.append(f"  {use.quota.name:<34} {use.quota.scope:<17} {use.used:>6} "
                     f"{use.quota.default:>7} {use.share:>6.0%}{per_model}{note}")
    lines += ["", "Hard limits (fixed; the largest use of each):",
              f"  {'limit':<46} {'largest':>9} {'limit':>9} {'headroom':>8}  where"]
    for use in limits(templates):
        lines.append(f"  {use.limit.name:<46} {use.used:>9} {use.limit.limit:>9} "
                     f"{use.headroom:>8.0%}  {use.where}")
    return "\n".join(lines)


__all__ = ["HARD_LIMITS", "QUOTAS", "HardLimit", "LimitUse", "Quota", "QuotaUse",
           "format_report", "headroom", "limits", "usage"]
