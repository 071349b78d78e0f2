"""checkov on the templates of a model in a network, with a reasoned allow-list.

The PCI review's question for a stack with a ``network`` (docs/network.md) is
checkov's CKV_AWS_117, "Lambda function inside a VPC": it must hold for every
function the library creates. The tests in tests/test_network.py run checkov
(every check of its CloudFormation framework) on the templates their fixtures
synthesize and assert that, and that every other failed check is one that
:data:`ALLOWED` explains, each by a rule on the resource and not by its name,
so the same check on another resource still fails.

checkov lives in a virtual environment of its own, ``build/venv-checkov/``
(``constraints-checkov.txt``): it pins boto3 and botocore far below the
project's. ``make test`` and ``make checkov`` build it; this module runs its
command line (``MDLC_CHECKOV`` names another one).

    .venv/bin/python -m tests.checkov [--out DIR]     # what `make checkov` runs
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_CHECKOV = ROOT / "build" / "venv-checkov" / "bin" / "checkov"

#: Actions that the flagged statements may grant on ``*`` (CKV_AWS_111): none of
#: them has a resource-level permission, or the resource does not exist yet.
WILDCARD_ONLY_ACTIONS = frozenset({
    # Step Functions' log delivery to CloudWatch Logs (what the service documents)
    "logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
    "logs:PutResourcePolicy", "logs:UpdateLogDelivery",
    # X-Ray tracing (tracing=ACTIVE, tracing_enabled=True)
    "xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
    # an endpoint variant's scalable target, registered before it exists (realtime.py)
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:RegisterScalableTarget",
})


@dataclass(frozen=True)
class Finding:
    """One checkov result on one resource of one template."""

    check_id: str
    template: Path
    resource_type: str
    logical_id: str
    evaluated_keys: tuple[str, ...] = ()
    comment: str = ""

    def __str__(self) -> str:
        return f"{self.check_id} {self.template.name} {self.resource_type}.{self.logical_id}"


@dataclass
class Report:
    """checkov's results on a set of templates."""

    failed: list[Finding] = field(default_factory=list)
    passed: list[Finding] = field(default_factory=list)
    skipped: list[Finding] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


Templates = dict[Path, dict[str, Any]]


@dataclass(frozen=True)
class Allowance:
    """A failed check accepted where ``applies`` holds, and why."""

    check_id: str
    reason: str
    applies: Callable[[Finding, Templates], bool]


def _refers_to(value: Any, logical_id: str) -> bool:
    """Whether a template value is a Ref or a GetAtt of ``logical_id``."""
    if isinstance(value, dict):
        if value.get("Ref") == logical_id:
            return True
        att = value.get("Fn::GetAtt")
        if isinstance(att, list) and att and att[0] == logical_id:
            return True
        return any(_refers_to(v, logical_id) for v in value.values())
    if isinstance(value, list):
        return any(_refers_to(v, logical_id) for v in value)
    return False


def _resources(finding: Finding, templates: Templates) -> dict[str, dict[str, Any]]:
    return templates[finding.template]["Resources"]


def _is_function(finding: Finding, templates: Templates) -> bool:
    resource = _resources(finding, templates).get(finding.logical_id, {})
    return resource.get("Type") == "AWS::Lambda::Function"


def _invoked_only_synchronously(finding: Finding, templates: Templates) -> bool:
    """No asynchronous invoker in the template: no resource policy letting a
    service (EventBridge, SNS, S3, ...) invoke the function, no asynchronous
    invocation config. Step Functions and event source mappings invoke
    synchronously through roles and need neither; each event source mapping
    of the function must have its on-failure destination instead."""
    if not _is_function(finding, templates) or _custom_resource_provider(finding, templates):
        return False
    for resource in _resources(finding, templates).values():
        kind, properties = resource.get("Type"), resource.get("Properties", {})
        if not _refers_to(properties.get("FunctionName"), finding.logical_id):
            continue
        if kind in ("AWS::Lambda::Permission", "AWS::Lambda::EventInvokeConfig"):
            return False
        if kind == "AWS::Lambda::EventSourceMapping" and not properties.get(
                "DestinationConfig", {}).get("OnFailure", {}).get("Destination"):
            return False
    return True


def _custom_resource_provider(finding: Finding, templates: Templates) -> bool:
    """The function is the ServiceToken of a CloudFormation custom resource
    (aws-cdk-lib's deploy-time providers)."""
    return _is_function(finding, templates) and any(
        r.get("Type", "").startswith("Custom::")
        and _refers_to(r.get("Properties", {}).get("ServiceToken"), finding.logical_id)
        for r in _resources(finding, templates).values())


def _is_access_log_bucket(finding: Finding, templates: Templates) -> bool:
    """Other buckets of the template deliver their server access logs to it."""
    return any(
        r.get("Type") == "AWS::S3::Bucket" and _refers_to(
            r.get("Properties", {}).get("LoggingConfiguration", {}).get(
                "DestinationBucketName"), finding.logical_id)
        for r in _resources(finding, templates).values())


def _flagged_actions(finding: Finding, templates: Templates) -> list[str]:
    """The actions checkov names in its evaluated keys
    (``Properties/PolicyDocument/Statement/[6]/Action/[0]/``)."""
    resource: Any = _resources(finding, templates)[finding.logical_id]
    actions = []
    for key in finding.evaluated_keys:
        value = resource
        for part in (p for p in key.split("/") if p):
            value = value[int(part[1:-1])] if part.startswith("[") else value[part]
        actions.extend(value if isinstance(value, list) else [value])
    return actions


def _only_wildcard_only_actions(finding: Finding, templates: Templates) -> bool:
    actions = _flagged_actions(finding, templates)
    return bool(actions) and set(actions) <= WILDCARD_ONLY_ACTIONS


#: Every failed check that is not a finding, with the rule that limits it and
#: the reason (the same reasons as the cdk-nag acknowledgments of those resources).
#: The first allowance of a check whose rule holds explains a finding.
ALLOWED: tuple[Allowance, ...] = (
    Allowance(
        "CKV_AWS_116",
        "aws-cdk-lib's deploy-time custom resource provider: CloudFormation waits for its "
        "answer and fails the deployment when it fails, so no event is lost unseen",
        _custom_resource_provider,
    ),
    Allowance(
        "CKV_AWS_115",
        "aws-cdk-lib's deploy-time custom resource provider runs once per deployment",
        _custom_resource_provider,
    ),
    Allowance(
        "CKV_AWS_115",
        "No reserved concurrency by default (cdk-nag PCI.DSS.321-LambdaConcurrency "
        "acknowledged): each function's concurrency is bounded by its caller (a workflow, "
        "a schedule, a stream's shards), and reserving it for every function of hundreds of "
        "models would take the account's unreserved pool; python_function's "
        "reserved_concurrent_executions caps it where a downstream needs it",
        _is_function,
    ),
    Allowance(
        "CKV_AWS_116",
        "A dead-letter queue receives only failed asynchronous invocations; this function "
        "is invoked synchronously (a Step Functions task, an event source mapping with its "
        "own on-failure destination), whose caller retries and reports failure",
        _invoked_only_synchronously,
    ),
    Allowance(
        "CKV_AWS_18",
        "The server access log bucket itself (cdk-nag AwsSolutions-S1 acknowledged): "
        "logging it to a bucket would need another log bucket, or loop into itself",
        _is_access_log_bucket,
    ),
    Allowance(
        "CKV_AWS_111",
        "Write actions on '*' only where the API has no resource-level permission or the "
        f"resource does not exist yet: {', '.join(sorted(WILDCARD_ONLY_ACTIONS))}",
        _only_wildcard_only_actions,
    ),
)


def checkov_command() -> Path:
    """The checkov command line to run; a clear error when it is not installed."""
    command = Path(os.environ.get("MDLC_CHECKOV", VENV_CHECKOV))
    if not command.is_file():
        raise FileNotFoundError(
            f"checkov is not installed at {command}: `make checkov` (and `make test`) "
            "builds build/venv-checkov/ from constraints-checkov.txt")
    return command


def run(templates: Iterable[Path], checks: Sequence[str] = ()) -> Report:
    """checkov's CloudFormation checks (all, or ``checks``) on ``templates``."""
    paths = [Path(p).resolve() for p in templates]
    if not paths:
        raise ValueError("no templates to check")
    # --skip-download: no calls to the vendor's platform (guidelines, severities);
    # the suite runs without network access beyond package registries.
    command = [str(checkov_command()), "--framework", "cloudformation", "--skip-download",
               "--output", "json", "--compact", "--file", *map(str, paths)]
    if checks:
        command += ["--check", ",".join(checks)]
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            env={**os.environ, "LOG_LEVEL": "WARNING"})
    try:
        document = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise RuntimeError(f"checkov failed ({result.returncode}): {result.stderr[-2000:]}"
                           ) from error
    reports = document if isinstance(document, list) else [document]
    (report,) = [r for r in reports if r.get("check_type") == "cloudformation"]
    summary = report["summary"]
    if summary["parsing_errors"] or summary["resource_count"] == 0:
        raise RuntimeError(f"checkov read no resources or failed to parse: {summary}, "
                           f"{report['results'].get('parsing_errors')}")
    by_path = {str(p): p for p in paths}

    def findings(kind: str) -> list[Finding]:
        out = []
        for item in report["results"].get(kind, []):
            resource_type, logical_id = item["resource"].split(".", 1)
            out.append(Finding(
                item["check_id"], by_path[str(Path(item["file_abs_path"]).resolve())],
                resource_type, logical_id,
                tuple(item["check_result"].get("evaluated_keys") or ()),
                item["check_result"].get("suppress_comment") or ""))
        return out

    return Report(failed=findings("failed_checks"), passed=findings("passed_checks"),
                  skipped=findings("skipped_checks"), summary=summary)


def load(templates: Iterable[Path]) -> Templates:
    return {Path(p).resolve(): json.loads(Path(p).read_text()) for p in templates}


def explain(findings: Iterable[Finding], templates: Templates
            ) -> tuple[dict[Finding, Allowance], list[Finding]]:
    """Each failed check with the allowance that accepts it, and those none does."""
    accepted: dict[Finding, Allowance] = {}
    unexplained = []
    for finding in findings:
        allowance = next((a for a in ALLOWED if a.check_id == finding.check_id
                          and a.applies(finding, templates)), None)
        if allowance is None:
            unexplained.append(finding)
        else:
            accepted[finding] = allowance
    return accepted, unexplained


def functions_outside_a_vpc(report: Report, templates: Templates) -> list[str]:
    """What the PCI review asks (issue #16): every Lambda function of the
    templates that checkov does not show inside a VPC (CKV_AWS_117 failed, or
    not evaluated), and every CKV_AWS_117 skip that is not aws-cdk-lib's
    custom resource provider with its reason."""
    inside = {(f.template, f.logical_id) for f in report.passed if f.check_id == "CKV_AWS_117"}
    skipped = {(f.template, f.logical_id) for f in report.skipped
               if f.check_id == "CKV_AWS_117" and len(f.comment) >= 40
               and _custom_resource_provider(f, templates)}
    problems = [f"CKV_AWS_117 {f.template.name} {f.logical_id}: skipped without a "
                "deploy-time provider's reason" for f in report.skipped
                if f.check_id == "CKV_AWS_117" and (f.template, f.logical_id) not in skipped]
    for path, template in templates.items():
        for logical_id, resource in template["Resources"].items():
            if (resource["Type"] == "AWS::Lambda::Function"
                    and (path, logical_id) not in inside | skipped):
                problems.append(f"CKV_AWS_117 {path.name} {logical_id}: not in a VPC")
    return problems


def synthesize_network_configurations(outdir: Path) -> list[Path]:
    """The example model in a created VPC (self-contained) and two models on a
    shared platform in an existing VPC, as tests/test_network.py synthesizes them."""
    from tests.test_network import EXISTING, _spec_file, _synth

    for name, network, shared, models in (("created", {"create": True}, False, ["fraud"]),
                                          ("existing", EXISTING, True, ["fraud", "fraud2"])):
        folder = outdir / name / "models"
        folder.mkdir(parents=True)
        for model in models:
            _spec_file(folder, network, name=model)
        _, nag = _synth(outdir / name, folder, shared=shared)
        if nag:
            raise RuntimeError(f"cdk-nag findings in {name}: {[str(f) for f in nag]}")
    return sorted(outdir.glob("*/cdk.out/*.template.json"))


def main() -> int:
    from tests.cfn_lint import output_folder

    outdir = output_folder(__doc__.splitlines()[0], "checkov-")
    paths = synthesize_network_configurations(outdir)
    report, templates = run(paths), load(paths)
    accepted, unexplained = explain(report.failed, templates)
    outside = functions_outside_a_vpc(report, templates)
    for line in [*map(str, unexplained), *outside]:
        print(line)
    counts: dict[str, int] = {}
    for finding in accepted:
        counts[finding.check_id] = counts.get(finding.check_id, 0) + 1
    s = report.summary
    print(f"checkov {s['checkov_version']}: {len(paths)} templates, {s['resource_count']} "
          f"resources; {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped; "
          f"failed and allowed by tests/checkov.py: "
          f"{', '.join(f'{k} x{v}' for k, v in sorted(counts.items()))}; "
          f"unexplained: {len(unexplained)}; functions outside a VPC: {len(outside)}")
    return 1 if unexplained or outside else 0


if __name__ == "__main__":
    sys.exit(main())
