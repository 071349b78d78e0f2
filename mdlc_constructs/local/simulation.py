"""A model's whole lifecycle over simulated days, on the local cloud (``mdlc simulate``).

Timeline, for each day ``D`` of the orders file:

* during ``D``, once a version serves on the endpoint, each row goes on the
  model's stream as its producer would send it (in time order, in blocks of
  ``STREAM_BLOCK_HOURS`` hours, each sent when the clock reaches its newest
  event, never ahead of it), and the stream consumers (online features,
  client integration) run as their event source mappings deliver;
* at ``D+1 00:00`` the day's rows land in the raw bucket
  (``<source prefix>dt=D/part-00000.csv``), and the labels of the day
  ``label_delay_days`` earlier land under the labels prefix;
* the clock runs through ``D+1``: every schedule of the stacks fires at its
  time (data preparation, weekly re-training, batch inference, monitoring),
  alarms are evaluated after each run, and what they trigger runs;
* a training run that registers a version is approved at once with
  ``approve="auto"`` (as a reviewer would), which starts the deployment.

With ``initial_training`` (the default), the first day's data is followed
by one training run started by hand, as a team does after its first deploy,
so the endpoint serves from the second day instead of the first schedule.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from .runtime import Execution, LocalCloud

#: Construct path fragments -> the report's workflow names.
_WORKFLOWS = (("/Data/", "data_preparation"), ("/Training/", "training"),
              ("/Realtime/", "deployment"), ("/BatchInference/", "batch_inference"),
              ("/Integration/", "integration"), ("/Monitoring/", "monitoring"))


#: Events go on the stream in blocks of this many hours (each block at its
#: start, in time order): fewer, fuller batches than hour by hour, as a busy
#: stream delivers them, with the day's schedules still between the blocks.
STREAM_BLOCK_HOURS = 4


class SimulationInputError(ValueError):
    """The orders file or the arguments cannot be simulated; the message says why."""


@dataclass
class Orders:
    """The rows of an orders file, by day of the spec's timestamp column."""

    header: list[str]
    by_day: dict[date, list[dict[str, str]]]

    @classmethod
    def read(cls, path: Path, spec: Any) -> Orders:
        if not path.is_file():
            raise SimulationInputError(f"{path}: no such file")
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            expected = [c.name for c in spec.data.columns]
            missing = [c for c in expected if c not in header]
            if missing:
                raise SimulationInputError(
                    f"{path}: missing column(s) {missing} of spec {spec.name!r}; the file has "
                    f"{header} (make one with `mdlc sample`)")
            by_day: dict[date, list[dict[str, str]]] = defaultdict(list)
            timestamp = spec.data.timestamp
            for line, row in enumerate(reader, start=2):
                try:
                    moment = datetime.fromisoformat(row[timestamp].replace("Z", "+00:00"))
                except (ValueError, AttributeError) as error:
                    raise SimulationInputError(
                        f"{path}:{line}: {timestamp} {row.get(timestamp)!r} is not an ISO 8601 "
                        "timestamp") from error
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                by_day[moment.astimezone(UTC).date()].append(row)
        if not by_day:
            raise SimulationInputError(f"{path}: no rows")
        for rows in by_day.values():
            rows.sort(key=lambda r: r[timestamp])
        return cls(header=header, by_day=dict(by_day))


@dataclass
class Simulation:
    """One simulated run; ``run()`` returns the report (see docs/local.md)."""

    cloud: LocalCloud
    spec: Any
    stack: str
    orders: Orders
    start: date
    days: int
    approve: str = "auto"
    initial_training: bool = True
    progress: Callable[[str], None] | None = None
    #: Called after each day (the cloud still up): tests inject events and faults.
    on_day: Callable[[Simulation, date], None] | None = None
    report: dict[str, Any] = field(default_factory=dict)
    _approved: set[str] = field(default_factory=set)
    _backfilled: int = 0

    # -- helpers --------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if self.progress:
            self.progress(text)

    def _resource(self, resource_type: str, path_fragment: str) -> str | None:
        for logical_id, resource in self.cloud.deployed[self.stack].stack.of_type(
                resource_type).items():
            path = resource.get("Metadata", {}).get("aws:cdk:path", "")
            if path_fragment in path:
                return logical_id
        return None

    def _workflow(self, execution: Execution) -> str:
        resource = self.cloud.deployed.get(execution.stack)
        path = "" if resource is None else resource.stack.resources.get(
            execution.machine, {}).get("Metadata", {}).get("aws:cdk:path", "")
        return next((name for fragment, name in _WORKFLOWS if fragment in path), execution.machine)

    def _function_env(self, handler_env: str) -> dict[str, str]:
        for function in self.cloud.lambdas.functions.values():
            if function.stack == self.stack and handler_env in function.environment:
                return function.environment
        return {}

    def _labels_location(self) -> dict[str, str]:
        """Where the monitoring job reads labels (``LABELS_BUCKET``,
        ``LABELS_PREFIX``), whichever runner runs it: the function's environment
        (embedded), the Processing job's (its state machine's
        ``CreateProcessingJob`` parameters), or the Spark job's arguments
        (``--labels-bucket``, ``--labels-prefix``), as deployed."""
        env = self._function_env("LABELS_PREFIX")
        if env:
            return env
        client = self.cloud.client("stepfunctions")
        for logical_id in self.cloud.deployed[self.stack].stack.of_type(
                "AWS::StepFunctions::StateMachine"):
            arn = self.cloud.physical(self.stack, logical_id)
            found = _labels_in(json.loads(
                client.describe_state_machine(stateMachineArn=arn)["definition"]))
            if found:
                return found
        return {}

    def _physical(self, resource_type: str, path_fragment: str) -> Any:
        logical_id = self._resource(resource_type, path_fragment)
        return None if logical_id is None else self.cloud.physical(self.stack, logical_id)

    # -- producers --------------------------------------------------------------------

    def _land_raw(self, day: date) -> None:
        rows = self.orders.by_day.get(day, [])
        if not rows:
            return
        bucket = self._physical("AWS::S3::Bucket", "/DataLake/Raw/")
        source = self.spec.data.sources[0]
        target_bucket = getattr(source, "bucket", None) or bucket
        prefix = source.prefix if source.prefix.endswith("/") else source.prefix + "/"
        body = io.StringIO()
        writer = csv.DictWriter(body, fieldnames=self.orders.header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        self.cloud.client("s3").put_object(
            Bucket=target_bucket, Key=f"{prefix}dt={day.isoformat()}/part-00000.csv",
            Body=body.getvalue().encode())

    def _land_labels(self, day: date) -> None:
        closed = self.spec.monitoring.closed_loop
        label_day = day - timedelta(days=closed.label_delay_days)
        rows = self.orders.by_day.get(label_day, [])
        env = self._labels_location()
        if not rows or not env:
            return
        data = self.spec.data
        body = io.StringIO()
        writer = csv.writer(body, lineterminator="\n")
        writer.writerow(["event_id", "label", "label_ts"])
        stamp = datetime.combine(day, datetime.min.time(), UTC).isoformat().replace("+00:00", "Z")
        for row in rows:
            if row.get(data.label, "") != "":
                writer.writerow([row[data.event_id], row[data.label], stamp])
        prefix = env["LABELS_PREFIX"].rstrip("/")
        self.cloud.client("s3").put_object(
            Bucket=env["LABELS_BUCKET"], Key=f"{prefix}/dt={label_day.isoformat()}/labels.csv",
            Body=body.getvalue().encode())

    def _serving(self) -> bool:
        endpoint = self._endpoint_name()
        return bool(endpoint) and self.cloud.sagemaker.serving_version(endpoint) is not None

    def _endpoint_name(self) -> str | None:
        return self._function_env("ENDPOINT_NAME").get("ENDPOINT_NAME") or next(
            iter(self.cloud.sagemaker.endpoints), None)

    # -- reactions ----------------------------------------------------------------------

    def _react(self) -> None:
        """Approve new versions (``approve="auto"``) and evaluate alarms, until quiet."""
        while True:
            acted = False
            self.cloud.alarms.evaluate()
            if self.approve == "auto":
                acted |= self._approve_pending()
            self.cloud.settle()
            if not acted:
                return

    def _approve_pending(self) -> bool:
        group = f"mdlc-{self.spec.name}"
        sagemaker = self.cloud.client("sagemaker")
        try:
            packages = sagemaker.list_model_packages(ModelPackageGroupName=group)[
                "ModelPackageSummaryList"]
        except Exception:
            return False
        acted = False
        for package in sorted(packages, key=lambda p: p.get("ModelPackageVersion", 0)):
            if package["ModelApprovalStatus"] == "PendingManualApproval" and \
                    package["ModelPackageArn"] not in self._approved:
                self._approved.add(package["ModelPackageArn"])
                sagemaker.update_model_package(ModelPackageArn=package["ModelPackageArn"],
                                               ModelApprovalStatus="Approved")
                acted = True
        return acted

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run every day; the clock starts as the first day's rows land."""
        resources = self.cloud.deployed[self.stack].stack.resources.values()
        if not any("aws:cdk:path" in r.get("Metadata", {}) for r in resources):
            raise SimulationInputError(
                f"{self.stack}: the template has no construct paths (aws:cdk:path metadata); "
                "synthesize with `cdk synth` (it records them by default) or with the context "
                "aws:cdk:enable-path-metadata=true")
        started = time.monotonic()
        training = self._resource("AWS::StepFunctions::StateMachine", "/Training/")
        for index in range(self.days):
            day = self.start + timedelta(days=index)
            before = set(self.cloud.executions)
            self._say(f"{day.isoformat()}: {len(self.orders.by_day.get(day, []))} rows")
            if index > 0:
                self._live_day(day)
            else:
                # The clock starts after the first day: its events happened already.
                self._backfill_online(self.orders.by_day.get(day, []))
            self.cloud.advance_to(_midnight(day + timedelta(days=1)))
            self._land_raw(day)
            self._land_labels(day + timedelta(days=1))
            if index == 0 and self.initial_training and training and not self._versions():
                self._say(f"{day.isoformat()}: first training run, started by hand")
                self.cloud.start_execution(self.stack, training, {"date": day.isoformat()},
                                           started_by="manual")
                self.cloud.settle()
                self._react()
            self._log_new(before)
            if self.on_day:
                self.on_day(self, day)
        # The last day's rows are prepared, scored and monitored the day after.
        before = set(self.cloud.executions)
        last = self.start + timedelta(days=self.days)
        for when, _rule in self.cloud.bus.fire_schedules(_midnight(last),
                                                         _midnight(last + timedelta(days=1))):
            self.cloud.advance_to(when + timedelta(seconds=1))
            self._react()
        self._react()
        self._log_new(before)
        self.cloud.settle()
        return self._report(time.monotonic() - started)

    def _log_new(self, before: set[str]) -> None:
        for arn in sorted(set(self.cloud.executions) - before,
                          key=lambda a: self.cloud.executions[a].started):
            execution = self.cloud.executions[arn]
            self._say(f"  {self._workflow(execution)}: {execution.status}"
                      + (f" ({execution.error})" if execution.error else ""))

    def _live_day(self, day: date) -> None:
        """Block by block (``STREAM_BLOCK_HOURS``): the schedules due, then the
        block's events on the stream, in time order."""
        stream = self._physical("AWS::Kinesis::Stream", "/Events/")
        data = self.spec.data
        by_hour: dict[int, list[dict[str, str]]] = defaultdict(list)
        for row in self.orders.by_day.get(day, []):
            hour = int(row[data.timestamp][11:13])
            by_hour[hour - hour % STREAM_BLOCK_HOURS].append(row)
        kinesis = self.cloud.client("kinesis")
        for hour in range(0, 24, STREAM_BLOCK_HOURS):
            self.cloud.advance_to(_midnight(day) + timedelta(hours=hour))
            self._react()
            if stream is None or not by_hour.get(hour):
                continue
            if not self._serving():
                self.cloud.advance_to(max(_moment(row[data.timestamp])
                                          for row in by_hour[hour]))
                self._backfill_online(by_hour[hour])
                continue
            # A producer sends an event once it happened: the clock first reaches
            # the block's newest event (later ones are dead-lettered as from the
            # future, features.max_clock_skew_seconds).
            # Alarms and approvals wait for the block's end (the _react below):
            # evaluating them here too cost 168 alarm evaluations a 28-day run.
            self.cloud.advance_to(max(_moment(row[data.timestamp]) for row in by_hour[hour]))
            entries = [{"Data": json.dumps(_typed({k: v for k, v in row.items()
                                                   if k != data.label}, self.spec)).encode(),
                        "PartitionKey": str(row[data.entity_key])} for row in by_hour[hour]]
            for start in range(0, len(entries), 500):
                kinesis.put_records(StreamName=stream, Records=entries[start:start + 500])
            self.cloud.settle()
            self._react()

    def _backfill_online(self, rows: list[dict[str, str]]) -> None:
        """Events from before a version serves, into the online feature store.

        Nothing scores them (no endpoint yet), but later events' windows hold
        them, as their training rows do: the feature-update function applies
        them, invoked with Kinesis records as its mapping would, and re-invoked
        with the records it reports failed (a backfill retries until done).
        """
        function = next((f for f in self.cloud.lambdas.functions.values()
                         if f.stack == self.stack and "FEATURES_TABLE" in f.environment
                         and "MODEL_NAME" in f.environment
                         and "ENDPOINT_NAME" not in f.environment), None)
        if function is None or not rows:
            return
        data = self.spec.data
        records = [{
            "eventID": f"backfill:{self._backfilled + i}",
            "eventSource": "aws:kinesis",
            "kinesis": {"sequenceNumber": str(self._backfilled + i),
                        "partitionKey": str(row[data.entity_key]),
                        "data": base64.b64encode(json.dumps(_typed(
                            {k: v for k, v in row.items() if k != data.label},
                            self.spec)).encode()).decode()},
        } for i, row in enumerate(rows)]
        self._backfilled += len(records)
        for start in range(0, len(records), 100):
            pending = records[start:start + 100]
            for _attempt in range(20):
                invocation = self.cloud.lambdas.invoke(
                    function.name, json.dumps({"Records": pending}).encode())
                answer = json.loads(invocation.payload or b"null") or {}
                failed = {f.get("itemIdentifier") for f in answer.get("batchItemFailures", [])}
                if invocation.error:
                    failed = {r["kinesis"]["sequenceNumber"] for r in pending}
                pending = [r for r in pending if r["kinesis"]["sequenceNumber"] in failed]
                if not pending:
                    break

    # -- report -------------------------------------------------------------------------

    def _versions(self) -> list[dict[str, Any]]:
        sagemaker = self.cloud.client("sagemaker")
        try:
            packages = sagemaker.list_model_packages(
                ModelPackageGroupName=f"mdlc-{self.spec.name}")["ModelPackageSummaryList"]
        except Exception:
            return []
        versions = []
        for summary in sorted(packages, key=lambda p: p.get("ModelPackageVersion", 0)):
            package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            metadata = package.get("CustomerMetadataProperties", {})
            job = metadata.get("mdlc:training-job")
            described = self.cloud.sagemaker.training_jobs.get(job or "", {})
            metrics = {m["MetricName"]: m["Value"]
                       for m in described.get("FinalMetricDataList", [])}
            versions.append({
                "version": package.get("ModelPackageVersion"),
                "arn": package["ModelPackageArn"],
                "approval": package.get("ModelApprovalStatus"),
                "metrics": metrics,
                "dataset_date": metadata.get("mdlc:dataset-date"),
                "training_job": job,
                "code_version": metadata.get("mdlc:code-version"),
            })
        return versions

    def _execution_date(self, execution: Execution) -> str | None:
        for candidate in (
            execution.input.get("date"),
            _snapshot_date(execution.output),
        ):
            if candidate:
                return str(candidate)
        if execution.started_by == "schedule":
            return (datetime.fromisoformat(execution.started).date()
                    - timedelta(days=1)).isoformat()
        return None

    def _decisions(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        stream: list[dict[str, Any]] = []
        table = self._function_env("DECISIONS_TABLE").get("DECISIONS_TABLE")
        if table:
            from boto3.dynamodb.types import TypeDeserializer

            deserialize = TypeDeserializer().deserialize
            # Read in process: a paginated Scan of tens of thousands of decisions
            # through moto costs seconds, and the report is not a deployed caller.
            for item in self.cloud.items.all_items(table):
                stream.append({k: _plain(deserialize(v)) for k, v in item.items()})
        batch: list[dict[str, Any]] = []
        bucket = self._physical("AWS::S3::Bucket", "/DataLake/Predictions/")
        if bucket:
            s3 = self.cloud.client("s3")
            prefix = f"predictions/{self.spec.name}/"
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
                for item in page.get("Contents", []):
                    if "/decisions/" in item["Key"] and item["Key"].endswith(".jsonl"):
                        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                        batch += [json.loads(line) for line in body.decode().splitlines()
                                  if line.strip()]
        return sorted(stream, key=lambda d: str(d.get("event_id"))), batch

    def _report(self, seconds: float) -> dict[str, Any]:
        executions = []
        for execution in sorted(self.cloud.executions.values(), key=lambda e: e.started):
            executions.append({
                "workflow": self._workflow(execution),
                "date": self._execution_date(execution),
                "status": execution.status,
                "error": execution.error,
                "cause": execution.cause,
                "started_by": execution.started_by,
                "started_at": execution.started,
                "execution": execution.arn,
            })
        for run in self.cloud.function_runs:
            resource = self.cloud.deployed[run["stack"]].stack.resources.get(run["function"], {})
            path = resource.get("Metadata", {}).get("aws:cdk:path", "")
            if "/Monitoring/" not in path:
                continue
            output = run["output"] if isinstance(run["output"], dict) else {}
            executions.append({
                "workflow": "monitoring", "date": output.get("date") or (
                    datetime.fromisoformat(run["started_at"]).date() - timedelta(days=1)
                ).isoformat(),
                "status": run["status"], "error": run["error"], "cause": run["cause"],
                "started_by": run["started_by"], "started_at": run["started_at"],
                "execution": run["function"],
            })
        executions.sort(key=lambda e: e["started_at"])
        stream, batch = self._decisions()
        parity = self.feature_parity(stream)
        endpoint = self._endpoint_name()
        versions = self._versions()
        deployments = []
        for deployment in self.cloud.sagemaker.deployments:
            model = self.cloud.sagemaker.model_of_config(deployment["config"])
            deployments.append({"version": self.cloud.sagemaker.version_of_model(model),
                                "outcome": deployment["outcome"],
                                "reason": deployment["reason"],
                                "at": deployment.get("at"), "config": deployment["config"]})
        dead_letters = sum(m.dead_lettered for m in self.cloud.streams.mappings)
        dead_letters += self._queued_dead_letters()
        self.report = {
            "model": self.spec.name,
            "start": self.start.isoformat(),
            "days": self.days,
            "seconds": round(seconds, 2),
            # The commit the stack was deployed from, as its training runs record it.
            "code_version": self._function_env("CODE_VERSION").get("CODE_VERSION"),
            "executions": executions,
            "model_versions": [{k: v for k, v in version.items() if k != "arn"}
                               for version in versions],
            "endpoint": {
                "name": endpoint,
                "serving_version": self.cloud.sagemaker.serving_version(endpoint)
                if endpoint else None,
                "deployments": deployments,
            },
            "decisions": {
                "stream": {"total": len(stream),
                           "by_action": dict(Counter(d.get("action") for d in stream))},
                "batch": {"total": len(batch),
                          "by_action": dict(Counter(d.get("action") for d in batch))},
            },
            "feature_parity": parity,
            "dead_letters": dead_letters,
            "alarms": [{"alarm": a.name, **change} for a in self.cloud.alarms.alarms.values()
                       for change in a.changes],
            "notifications": [{"subject": n["subject"], "message": n["message"]}
                              for n in self.cloud.notifications
                              if n["topic"] not in self._action_topics()],
            "denied_calls": self.cloud.authorizer.report(),
            "functions": self._function_totals(),
        }
        self.stream_decisions = stream
        self.batch_decisions = batch
        return self.report

    def training_rows(self) -> dict[str, dict[str, Any]]:
        """Every training row the run's feature job wrote, by event id: the
        ``features/<model>/dt=*/features.parquet`` objects of the features bucket
        (an event is a row of its first day's snapshot)."""
        import pyarrow.parquet as pq

        bucket = self._physical("AWS::S3::Bucket", "/DataLake/Features/")
        rows: dict[str, dict[str, Any]] = {}
        if not bucket:
            return rows
        s3 = self.cloud.client("s3")
        event_id = self.spec.data.event_id
        prefix = f"features/{self.spec.name}/"
        keys = sorted(item["Key"]
                      for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                               Prefix=prefix)
                      for item in page.get("Contents", [])
                      if item["Key"].endswith("/features.parquet"))
        for key in keys:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            for row in pq.read_table(io.BytesIO(body)).to_pylist():
                rows.setdefault(str(row[event_id]), row)
        return rows

    def feature_parity(self, stream: list[dict[str, Any]]) -> dict[str, Any]:
        """Does every stream decision's ``features`` equal its event's training row?

        Compares each model input (``spec.feature_columns``) of every stream
        decision with the row the feature job wrote for that event, up to the
        last bits of a float sum (the batch engine adds in another order).
        Returns ``checked`` (decisions compared), ``mismatches`` (decisions
        with a differing value), ``missing_rows`` (decisions whose event has
        no training row: its day was not prepared) and the first few
        ``examples`` of either.
        """
        import math

        rows = self.training_rows() if stream else {}
        columns = list(self.spec.feature_columns)
        checked, mismatches, missing = 0, 0, 0
        examples: list[dict[str, Any]] = []
        for decision in stream:
            row = rows.get(str(decision.get("event_id")))
            if row is None:
                missing += 1
                if len(examples) < 5:
                    examples.append({"event_id": decision.get("event_id"),
                                     "problem": "no training row"})
                continue
            checked += 1
            scored = decision.get("features") or {}
            differ = {}
            for column in columns:
                a, b = scored.get(column), row.get(column)
                if a is None or b is None:
                    if not (a is None and b is None):
                        differ[column] = [a, b]
                elif not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9):
                    differ[column] = [a, b]
            if differ:
                mismatches += 1
                if len(examples) < 5:
                    examples.append({"event_id": decision.get("event_id"),
                                     "scored_vs_training": differ})
        return {"checked": checked, "mismatches": mismatches, "missing_rows": missing,
                "examples": examples}

    def _function_totals(self) -> dict[str, dict[str, Any]]:
        """Invocations, errors and seconds per function (logical id), in this run."""
        totals: dict[str, dict[str, Any]] = {}
        for invocation in self.cloud.lambdas.history:
            function = self.cloud.lambdas.get(invocation.function)
            entry = totals.setdefault(function.logical_id, {"invocations": 0, "errors": 0,
                                                            "seconds": 0.0})
            entry["invocations"] += 1
            entry["errors"] += bool(invocation.error)
            entry["seconds"] = round(entry["seconds"] + invocation.seconds, 3)
        return totals

    def _action_topics(self) -> set[str]:
        """Topics that carry decisions (actions), not the model's notifications."""
        return {f.environment["ACTION_TOPIC_ARN"] for f in self.cloud.lambdas.functions.values()
                if "ACTION_TOPIC_ARN" in f.environment}

    def _queued_dead_letters(self) -> int:
        count = 0
        url = self._function_env("DEAD_LETTER_QUEUE_URL").get("DEAD_LETTER_QUEUE_URL")
        if url:
            attributes = self.cloud.client("sqs").get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
            count += int(attributes.get("ApproximateNumberOfMessages", 0))
        return count

    def failed(self) -> list[dict[str, Any]]:
        return [e for e in self.report.get("executions", []) if e["status"] != "SUCCEEDED"]

    def model_versions(self) -> dict[str, Any]:
        """What ``mdlc lineage`` reads of the registry and the endpoint, as the
        account answers it: every version's DescribeModelPackage, its training
        job's DescribeTrainingJob, and the endpoint's deployments with their
        times (a decision's version is the one deployed last before it)."""
        sagemaker = self.cloud.client("sagemaker")
        group = f"mdlc-{self.spec.name}"
        packages = []
        for version in self._versions():
            package = sagemaker.describe_model_package(ModelPackageName=version["arn"])
            package.pop("ResponseMetadata", None)
            job = self.cloud.sagemaker.training_jobs.get(version["training_job"] or "")
            packages.append({"model_package": package, "training_job": job})
        return {"model": self.spec.name, "model_package_group": group,
                "endpoint": self.report.get("endpoint"), "packages": packages}

    def write(self, out: Path) -> None:
        """``report.json``, ``decisions.jsonl``, ``model_versions.json`` (see
        :meth:`model_versions`) and the buckets' objects under ``s3/``."""
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(self.report, indent=2, default=str))
        (out / "model_versions.json").write_text(
            json.dumps(self.model_versions(), indent=2, default=str))
        with (out / "decisions.jsonl").open("w") as handle:
            for decision in self.stream_decisions:
                handle.write(json.dumps({
                    "event_id": decision.get("event_id"),
                    "model_version": decision.get("model_version"),
                    "score": decision.get("score"),
                    "rule": decision.get("rule_id"),
                    "action": decision.get("action"),
                    "features": decision.get("features"),
                    **{k: v for k, v in decision.items() if k not in (
                        "event_id", "model_version", "score", "rule_id", "action", "features")},
                }, default=str) + "\n")
        s3 = self.cloud.client("s3")
        for logical_id in self.cloud.deployed[self.stack].stack.of_type("AWS::S3::Bucket"):
            bucket = self.cloud.physical(self.stack, logical_id)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    target = out / "s3" / bucket / item["Key"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])[
                        "Body"].read())
        self.cloud.lambdas.write_logs(out / "logs")


def _snapshot_date(value: Any) -> str | None:
    """``data.snapshot.date`` anywhere in a workflow's output (Parallel results nest it)."""
    if isinstance(value, dict):
        snapshot = (value.get("data") or {}).get("snapshot") if isinstance(
            value.get("data"), dict) else None
        if isinstance(snapshot, dict) and snapshot.get("date"):
            return str(snapshot["date"])
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = _snapshot_date(item)
            if found:
                return found
    return None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def _moment(text: str) -> datetime:
    """An ISO 8601 timestamp as UTC (naive ones are UTC, as the spec's column is)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _typed(event: dict[str, str], spec: Any) -> dict[str, Any]:
    """A CSV row as the producer's JSON event: numbers as numbers, empty as absent."""
    types = {c.name: c.type for c in spec.data.columns}
    typed: dict[str, Any] = {}
    for name, value in event.items():
        if value == "":
            continue
        kind = types.get(name)
        try:
            typed[name] = int(value) if kind == "int" else float(value) \
                if kind == "float" else value
        except ValueError:
            typed[name] = value
    return typed


def synthesize(spec: Any, outdir: Path, *, stack_class: type | None = None,
               compliance: bool = True, context: dict[str, Any] | None = None) -> str:
    """Synthesize the model's stack (``MdlcModelStack`` or a team's subclass) into ``outdir``.

    Returns the stack's name. Synthesis runs the cdk-nag packs by default, as
    ``cdk synth`` of the example app does. ``context``: more context values,
    e.g. ``{"mdlc:codeVersion": "<commit>"}``, what the pipeline passes.
    """
    from mdlc_constructs.model_stack import MdlcModelStack
    from mdlc_constructs.testing import make_app

    # Path metadata, as `cdk synth` writes it: the simulation finds each stage's
    # resources by construct path (docs/local.md).
    app = make_app(outdir=str(outdir), compliance=compliance,
                   context={**(context or {}), "aws:cdk:enable-path-metadata": True})
    name = f"Mdlc-{spec.name}"
    (stack_class or MdlcModelStack)(app, name, spec=spec)
    app.synth()
    return name


def simulate(spec: Any, orders: Path, *, start: date | None = None, days: int | None = None,
             approve: str = "auto", assembly: Path | None = None, stack: str | None = None,
             stack_class: type | None = None, scratch: Path | None = None,
             initial_training: bool = True, configure: Callable[[LocalCloud], None] | None = None,
             progress: Callable[[str], None] | None = None, out: Path | None = None,
             on_day: Callable[[Simulation, date], None] | None = None) -> Simulation:
    """Synthesize (unless ``assembly`` is given), deploy locally and run; returns the run.

    ``configure`` is called with the deployed cloud before the first day, to
    inject faults (``cloud.sagemaker.fail_deployments_of(2)``) or register
    stand-ins.
    """
    import tempfile

    if approve not in ("auto", "never"):
        raise SimulationInputError(f"--approve: expected auto or never, got {approve!r}")
    data = Orders.read(Path(orders), spec)
    first = min(data.by_day)
    start = start or first
    if days is None:
        days = (max(data.by_day) - start).days + 1
    if days < 1:
        raise SimulationInputError(f"--days: expected at least 1, got {days} (the file's days "
                                   f"are {first} to {max(data.by_day)})")
    # A scratch folder of its own lives as long as the run: a command run day
    # after day must not fill the temporary folder (the report is in ``out``);
    # one the caller passes is kept.
    with (nullcontext(scratch) if scratch is not None
          else tempfile.TemporaryDirectory(prefix="mdlc-simulate-")) as folder:
        work = Path(folder)
        if assembly is None:
            if progress:
                progress(f"synthesizing Mdlc-{spec.name}")
            assembly = work / "cdk.out"
            stack = synthesize(spec, assembly, stack_class=stack_class)
        stack = stack or f"Mdlc-{spec.name}"
        # The clock starts as the first day's rows land (its schedules then have data).
        clock_start = datetime.combine(start + timedelta(days=1), datetime.min.time(), UTC)
        cloud = LocalCloud(assembly, start=clock_start, stacks=[stack], scratch=work / "local")
        (work / "local").mkdir(parents=True, exist_ok=True)
        with cloud:
            network = getattr(spec, "network", None)
            if network is not None and network.vpc_id:
                # A team's existing VPC is not in the template: it exists already.
                cloud.authorizer.add_network(network.vpc_id, [*network.private_subnet_ids,
                                                              *network.security_group_ids])
            if configure:
                configure(cloud)
            run = Simulation(cloud=cloud, spec=spec, stack=stack, orders=data, start=start,
                             days=days, approve=approve, initial_training=initial_training,
                             progress=progress, on_day=on_day)
            run.run()
            if out is not None:
                run.write(out)
    return run


_SPARK_LABELS = re.compile(r"'--labels-(bucket|prefix)', '([^']*)'")


def _labels_in(node: Any) -> dict[str, str]:
    """The labels location in a state machine definition: a Processing job's
    ``Environment`` (``LABELS_BUCKET``/``LABELS_PREFIX``), or a Spark job's
    ``EntryPointArguments`` (``States.Array(..., '--labels-bucket', 'b', ...)``)."""
    if isinstance(node, dict):
        if "LABELS_PREFIX" in node and "LABELS_BUCKET" in node:
            return {"LABELS_BUCKET": str(node["LABELS_BUCKET"]),
                    "LABELS_PREFIX": str(node["LABELS_PREFIX"])}
        for value in node.values():
            found = _labels_in(value)
            if found:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _labels_in(value)
            if found:
                return found
    elif isinstance(node, str) and "'--labels-prefix'" in node:
        pairs = dict(_SPARK_LABELS.findall(node))
        if {"bucket", "prefix"} <= set(pairs):
            return {"LABELS_BUCKET": pairs["bucket"], "LABELS_PREFIX": pairs["prefix"]}
    return {}
