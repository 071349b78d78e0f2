"""``mdlc lineage``: why was an event decided so, and what does a model version stand on?

``mdlc lineage DIR --event ID`` explains one decision: its rule, action,
score and the exact features scored, the model version that scored it, and
that version's lineage (dataset snapshot and its manifest's content hash,
feature snapshot, code commit, training job, algorithm image,
hyperparameters, evaluation, approval). ``--version N`` prints the lineage
of version N and how many decisions it made. DIR is what ``mdlc simulate
--out`` writes; ``--account --model NAME`` reads the same facts from an AWS
account instead (read-only: the model package group, the training jobs, the
endpoint and the decision table). Exit 0 when answered, 2 when the event or
version does not exist (the message names what does).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mdlc_core.layout import package_group_name

from . import EXIT_OK, UsageError

#: A decision names the endpoint variant that scored it when the consumer is
#: not told the version (docs/integration.md, ``MODEL_PACKAGE_VERSION``).
_VARIANT = "variant:"


class LineageReader(Protocol):
    """Where the facts are: a simulation's output directory or an account.

    Both answer with what the AWS APIs return (DescribeModelPackage,
    DescribeTrainingJob, decision log items), so one piece of code explains
    either.
    """

    #: What the messages name as the source ("DIR" or "account, model fraud").
    where: str

    def packages(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Every version of the model's package group: (package, its training job)."""
        ...

    def decision(self, event_id: str) -> dict[str, Any] | None:
        """The decision log item of ``event_id``, or None."""
        ...

    def decisions(self) -> Iterator[dict[str, Any]] | None:
        """Every decision, when reading them all is cheap (None otherwise)."""
        ...

    def serving_version_at(self, moment: datetime) -> tuple[int | None, str]:
        """The version the endpoint served at ``moment``, and how that is known."""
        ...

    def check_manifest(self, key: str | None, content_hash: str | None) -> str:
        """Whether the snapshot manifest at ``key`` carries ``content_hash``, in words."""
        ...


# -- the lineage of a version ---------------------------------------------------------


def version_lineage(package: dict[str, Any], job: dict[str, Any] | None) -> dict[str, Any]:
    """A version's lineage from its DescribeModelPackage and DescribeTrainingJob.

    The training workflow records the data and code in the package's
    ``CustomerMetadataProperties`` (``mdlc:*``, docs/training.md) and the
    commit in ``MetadataProperties.CommitId``; the algorithm image and the
    hyperparameters are the training job's.
    """
    meta = package.get("CustomerMetadataProperties") or {}
    props = package.get("MetadataProperties") or {}
    container = ((package.get("InferenceSpecification") or {}).get("Containers") or [{}])[0]
    job = job or {}
    algorithm = job.get("AlgorithmSpecification") or {}
    return {
        "version": package.get("ModelPackageVersion"),
        "model_package_arn": package.get("ModelPackageArn"),
        "created": _text(package.get("CreationTime")),
        "approval": {"status": package.get("ModelApprovalStatus"),
                     "description": package.get("ApprovalDescription")},
        "dataset": {"date": meta.get("mdlc:dataset-date"),
                    "snapshot_prefix": meta.get("mdlc:dataset-snapshot"),
                    "manifest_key": meta.get("mdlc:dataset-manifest"),
                    "content_hash": meta.get("mdlc:dataset-content-hash")},
        "feature_snapshot": meta.get("mdlc:feature-snapshot"),
        # What the open-loop monitor compares this version's predictions with.
        "drift_baseline": meta.get("mdlc:drift-baseline"),
        "code_version": meta.get("mdlc:code-version") or props.get("CommitId"),
        "training": {
            "job": meta.get("mdlc:training-job") or job.get("TrainingJobName"),
            "execution": meta.get("mdlc:execution") or props.get("GeneratedBy"),
            "algorithm_image": algorithm.get("TrainingImage") or algorithm.get("AlgorithmName"),
            "hyperparameters": job.get("HyperParameters") or {},
            "model_data": container.get("ModelDataUrl")
            or (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
            "serving_image": container.get("Image"),
        },
        "evaluation": {
            "metric": meta.get("mdlc:evaluation-metric"),
            "value": _number(meta.get("mdlc:evaluation-value")),
            "threshold": _number(meta.get("mdlc:evaluation-threshold")),
            "metrics": {m["MetricName"]: m["Value"]
                        for m in job.get("FinalMetricDataList") or []},
        },
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | str | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _moment(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def recorded_version(model_version: Any) -> int | None:
    """The version a decision names itself: ``3``, ``v3`` or a package ARN ``.../3``."""
    match = re.fullmatch(r"(?:v|.*model-package/[^/]+/)?(\d+)", str(model_version or ""))
    return int(match.group(1)) if match else None


# -- readers ----------------------------------------------------------------------------


@dataclass
class DirectoryReader:
    """A ``mdlc simulate --out DIR``: model_versions.json, decisions.jsonl."""

    root: Path

    def __post_init__(self) -> None:
        self.where = str(self.root)
        if not self.root.is_dir():
            raise UsageError(f"{self.root}: no such directory (the --out of `mdlc simulate`)")
        path = self.root / "model_versions.json"
        if not path.is_file():
            raise UsageError(f"{path}: missing; it is written by `mdlc simulate --out` "
                             "(re-run the simulation with this version of mdlc)")
        try:
            self._registry = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}: not JSON ({error})") from error
        self._deployments = sorted(
            ((_moment(d.get("at")), d) for d in
             (self._registry.get("endpoint") or {}).get("deployments") or []
             if d.get("outcome") == "deployed" and _moment(d.get("at"))),
            key=lambda pair: pair[0])

    def packages(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        return [(p["model_package"], p.get("training_job"))
                for p in self._registry.get("packages", [])]

    def decisions(self) -> Iterator[dict[str, Any]]:
        path = self.root / "decisions.jsonl"
        if not path.is_file():
            return
        with path.open() as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise UsageError(f"{path}:{number}: not JSON ({error})") from error

    def decision(self, event_id: str) -> dict[str, Any] | None:
        return next((d for d in self.decisions() if str(d.get("event_id")) == event_id), None)

    def serving_version_at(self, moment: datetime) -> tuple[int | None, str]:
        served = [(at, d) for at, d in self._deployments if at <= moment]
        if not served:
            return None, "no version was deployed on the endpoint before the decision"
        at, deployment = served[-1]
        return deployment.get("version"), (
            f"the endpoint's deployment of {at.isoformat()} (the last before the decision)")

    def check_manifest(self, key: str | None, content_hash: str | None) -> str:
        found = sorted((self.root / "s3").glob(f"*/{key}")) if key else []
        if not found:
            return f"not checked: no {key} under {self.root / 's3'}"
        try:
            recorded = json.loads(found[0].read_text()).get("content_hash")
        except (json.JSONDecodeError, AttributeError) as error:
            return f"unreadable: {found[0]}: {error}"
        where = found[0].relative_to(self.root)
        if recorded == content_hash:
            return f"matches {where}"
        return f"DIFFERS from {where} ({recorded})"


class AccountReader:
    """The model's resources in an account, read-only (boto3's default credentials)."""

    def __init__(self, model: str, *, decisions_table: str | None = None,
                 endpoint: str | None = None, session: Any = None) -> None:
        import boto3

        session = session or boto3.Session()
        self.model = model
        self.where = f"the account, model {model!r}"
        self.group = package_group_name(model)
        self.endpoint = endpoint or f"mdlc-{model}"
        self.table = decisions_table
        self._sagemaker = session.client("sagemaker")
        self._dynamodb = session.client("dynamodb")

    def packages(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        from botocore.exceptions import ClientError

        found = []
        paginator = self._sagemaker.get_paginator("list_model_packages")
        for page in paginator.paginate(ModelPackageGroupName=self.group):
            for summary in page["ModelPackageSummaryList"]:
                package = self._sagemaker.describe_model_package(
                    ModelPackageName=summary["ModelPackageArn"])
                job_name = (package.get("CustomerMetadataProperties") or {}).get(
                    "mdlc:training-job")
                job = None
                if job_name:
                    try:
                        job = self._sagemaker.describe_training_job(TrainingJobName=job_name)
                    except ClientError:
                        job = None  # jobs expire from the API; the package keeps the facts
                found.append((package, job))
        return found

    def decisions(self) -> None:
        return None  # a Scan of the decision log is not a read to make on a question

    def check_manifest(self, key: str | None, content_hash: str | None) -> str:
        return "not checked in --account mode (the package records the key, not the bucket)"

    def decision(self, event_id: str) -> dict[str, Any] | None:
        from boto3.dynamodb.types import TypeDeserializer

        if not self.table:
            raise UsageError("--event with --account needs --stack NAME (the model's stack) "
                             "or --decisions-table (its Integration decision table)")
        item = self._dynamodb.get_item(TableName=self.table, Key={"event_id": {"S": event_id}},
                                       ConsistentRead=True).get("Item")
        if item is None:
            return None
        deserialize = TypeDeserializer().deserialize
        return _plain({k: deserialize(v) for k, v in item.items()})

    def serving_version_at(self, moment: datetime) -> tuple[int | None, str]:
        """The version serving now, if the endpoint has not changed since ``moment``:
        an account keeps no history of which version served when."""
        endpoint = self._sagemaker.describe_endpoint(EndpointName=self.endpoint)
        modified = endpoint.get("LastModifiedTime")
        config = self._sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"])
        model = self._sagemaker.describe_model(
            ModelName=config["ProductionVariants"][0]["ModelName"])
        package = (model.get("PrimaryContainer") or {}).get("ModelPackageName")
        version = recorded_version(package)
        if modified is not None and modified > moment:
            return None, (f"endpoint {self.endpoint} changed at {modified.isoformat()}, after "
                          f"the decision: it serves v{version} now, and the account keeps no "
                          "history of what it served before")
        return version, (f"endpoint {self.endpoint} serves it and has not changed since "
                         f"{modified.isoformat() if modified else 'its creation'}")


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# -- the answers ------------------------------------------------------------------------


def _lineages(reader: LineageReader) -> dict[int, dict[str, Any]]:
    lineages = {}
    for package, job in reader.packages():
        lineage = version_lineage(package, job)
        if lineage["version"] is None:
            continue
        dataset = lineage["dataset"]
        dataset["manifest_check"] = reader.check_manifest(dataset["manifest_key"],
                                                          dataset["content_hash"])
        lineages[int(lineage["version"])] = lineage
    return lineages


def _known(lineages: dict[int, dict[str, Any]]) -> str:
    return ", ".join(f"v{v}" for v in sorted(lineages)) or "none (no version was registered)"


def resolve_version(reader: LineageReader, decision: dict[str, Any]) -> dict[str, Any]:
    """Which version scored ``decision``: the one it names, or, when it names only
    the variant, the one the endpoint served at ``decided_at`` (and how)."""
    named = decision.get("model_version")
    version = recorded_version(named)
    if version is not None:
        return {"version": version, "recorded": named, "how": "recorded in the decision"}
    moment = _moment(decision.get("decided_at"))
    if moment is None:
        return {"version": None, "recorded": named,
                "how": "the decision names no version and no decided_at time"}
    version, how = reader.serving_version_at(moment)
    return {"version": version, "recorded": named,
            "how": f"the decision names {named}; resolved from {how}"}


def explain_event(reader: LineageReader, event_id: str) -> dict[str, Any]:
    decision = reader.decision(event_id)
    if decision is None:
        decisions = reader.decisions()
        sample = [] if decisions is None else [
            str(d.get("event_id")) for _, d in zip(range(3), decisions, strict=False)]
        hint = f" (e.g. {', '.join(sample)})" if sample else ""
        raise UsageError(f"no decision for event {event_id!r} in {reader.where}{hint}")
    lineages = _lineages(reader)
    scored_by = resolve_version(reader, decision)
    version = scored_by["version"]
    if version is not None and version not in lineages:
        raise UsageError(f"event {event_id!r} was scored by v{version}, which is not in "
                         f"{reader.where}; known versions: {_known(lineages)}")
    return {
        "decision": {"event_id": decision.get("event_id"),
                     "entity_id": decision.get("entity_id"),
                     "rule": decision.get("rule") or decision.get("rule_id"),
                     "action": decision.get("action"), "score": decision.get("score"),
                     "decided_at": decision.get("decided_at"),
                     "features": decision.get("features") or {}},
        "scored_by": scored_by,
        "lineage": None if version is None else lineages[version],
    }


def explain_version(reader: LineageReader, version: int) -> dict[str, Any]:
    lineages = _lineages(reader)
    if version not in lineages:
        raise UsageError(f"no version {version} in {reader.where}; known versions: "
                         f"{_known(lineages)}")
    decisions = reader.decisions()
    counted: dict[str, Any] = {"stream": None, "how": "not counted (a Scan of the decision "
                               "log is not made for a question)"}
    if decisions is not None:
        made: Counter[int | None] = Counter(
            resolve_version(reader, d)["version"] for d in decisions)
        counted = {"stream": made.get(version, 0),
                   "how": "decisions.jsonl, each resolved as --event resolves it"}
    return {"lineage": lineages[version], "decisions": counted}


# -- output -----------------------------------------------------------------------------


def _lineage_lines(lineage: dict[str, Any]) -> list[str]:
    dataset, training, evaluation = (lineage["dataset"], lineage["training"],
                                     lineage["evaluation"])
    approval = lineage["approval"]
    hyper = ", ".join(f"{k}={v}" for k, v in sorted(training["hyperparameters"].items()))
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(evaluation["metrics"].items()))
    return [
        f"version {lineage['version']}: {lineage['model_package_arn']}",
        f"  registered:        {lineage['created']}",
        f"  approval:          {approval['status']}"
        + (f" ({approval['description']})" if approval["description"] else ""),
        f"  dataset snapshot:  {dataset['date']} {dataset['snapshot_prefix']}",
        f"    manifest:        {dataset['manifest_key']}",
        f"    content hash:    {dataset['content_hash']} ({dataset['manifest_check']})",
        f"  feature snapshot:  {lineage['feature_snapshot']}",
        f"  drift baseline:    {lineage['drift_baseline'] or 'none recorded'}",
        f"  code commit:       {lineage['code_version']}",
        f"  training job:      {training['job']} (execution {training['execution']})",
        f"  algorithm image:   {training['algorithm_image']}",
        f"  hyperparameters:   {hyper or 'none recorded'}",
        f"  model data:        {training['model_data']}",
        f"  evaluation:        {evaluation['metric']} {evaluation['value']} "
        f"(threshold {evaluation['threshold']})" + (f"; {metrics}" if metrics else ""),
    ]


def render_event(answer: dict[str, Any]) -> str:
    decision, scored_by = answer["decision"], answer["scored_by"]
    features = ", ".join(f"{k}={v}" for k, v in sorted(decision["features"].items()))
    lines = [
        f"event {decision['event_id']}: {decision['action']} by rule {decision['rule']}, "
        f"score {decision['score']}, decided {decision['decided_at']}",
        f"  entity:            {decision['entity_id']}",
        f"  features scored:   {features or 'none recorded'}",
        "  model version:     "
        + (f"v{scored_by['version']}" if scored_by["version"] is not None else "unknown")
        + f" ({scored_by['how']})",
    ]
    if answer["lineage"] is not None:
        lines += _lineage_lines(answer["lineage"])
    return "\n".join(lines)


def render_version(answer: dict[str, Any]) -> str:
    counted = answer["decisions"]
    made = "unknown" if counted["stream"] is None else str(counted["stream"])
    return "\n".join([*_lineage_lines(answer["lineage"]),
                      f"  decisions:         {made} stream decisions ({counted['how']})"])


# -- the command ------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lineage", help="explain a decision or a model version: data, code, training, metrics",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", metavar="DIR", nargs="?",
                        help="the output directory of `mdlc simulate --out`")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--event", metavar="ID", help="why was this event decided so?")
    what.add_argument("--version", type=int, metavar="N", help="what does version N stand on?")
    parser.add_argument("--account", action="store_true",
                        help="read the account (boto3's credentials, read-only) instead of DIR")
    parser.add_argument("--model", metavar="NAME", help="with --account: the spec's model name")
    parser.add_argument("--decisions-table", metavar="NAME",
                        help="with --account --event: the decision log table")
    parser.add_argument("--stack", metavar="NAME",
                        help="with --account: the model's stack, whose decision log table "
                        "is looked up (CloudFormation ListStackResources)")
    parser.add_argument("--endpoint", metavar="NAME",
                        help="with --account: the endpoint (default mdlc-<model>)")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.set_defaults(run=run)


def reader_for(args: argparse.Namespace) -> LineageReader:
    if args.account:
        if args.dir:
            raise UsageError("give DIR or --account, not both")
        if not args.model:
            raise UsageError("--account needs --model NAME")
        table = args.decisions_table
        if table is None and args.stack:
            table = decisions_table_of(args.stack)
        return AccountReader(args.model, decisions_table=table, endpoint=args.endpoint)
    if not args.dir:
        raise UsageError("give DIR (the --out of `mdlc simulate`) or --account --model NAME")
    return DirectoryReader(Path(args.dir))


#: The logical id of ClientIntegration's decision log in a model stack
#: (``Integration/Decisions``), without the hash CDK appends.
DECISIONS_TABLE_ID = "IntegrationDecisions"


def decisions_table_of(stack: str, *, session: Any = None) -> str:
    """The physical name of ``stack``'s decision log table, read-only."""
    import boto3

    client = (session or boto3.Session()).client("cloudformation")
    tables = []
    for page in client.get_paginator("list_stack_resources").paginate(StackName=stack):
        tables += [r for r in page["StackResourceSummaries"]
                   if r["ResourceType"] == "AWS::DynamoDB::Table"
                   and r["LogicalResourceId"].startswith(DECISIONS_TABLE_ID)]
    if len(tables) != 1:
        found = sorted(r["LogicalResourceId"] for r in tables)
        raise UsageError(f"stack {stack!r} has {len(tables)} decision log table(s) "
                         f"({DECISIONS_TABLE_ID}*: {found}); name it with --decisions-table")
    return tables[0]["PhysicalResourceId"]


def run(args: argparse.Namespace) -> int:
    reader = reader_for(args)
    if args.event is not None:
        answer = explain_event(reader, args.event)
        text = render_event(answer)
    else:
        answer = explain_version(reader, args.version)
        text = render_version(answer)
    print(json.dumps(answer, indent=2, default=str) if args.json else text)
    return EXIT_OK
