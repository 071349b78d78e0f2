"""A day whose first snapshot failed is recovered by re-running the data
preparation workflow, with no S3 clean-up by hand (issue #14 item 3).

The synthesized fraud stack runs on the local runtime: the daily workflow
(sourcing, then quality, then features: the real handlers from their code
assets, each as its role) is started as the schedule or a backfill starts
it. Each scenario begins as production would leave it: an attempt that
copied the day's objects and died before committing its manifest (a
Lambda timeout, injected here into the real sourcing code), then an
upstream re-delivery with an empty ``part-1.csv``, so the scheduled run
fails. Each of the issue's three recovery paths must then work, and every
reader must see exactly what the committed manifest lists.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mdlc_core import sourcing

HEADER = "order_id,customer_id,order_ts,order_amount,account_tenure,fraud_status"


def orders(day: date, first: int, count: int) -> bytes:
    """``count`` clean orders of ``day`` (every rule of the fraud spec holds)."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    lines = [HEADER]
    for i in range(first, first + count):
        ts = (start + timedelta(minutes=(i * 7) % 1440)).isoformat()
        lines.append(f"o{day:%m%d}-{i},c{i % 9},{ts},{10 + i % 50}.5,{200 + i % 9},{i % 2}")
    return ("\n".join(lines) + "\n").encode()


class CrashBeforeCommit:
    """An S3 client whose manifest put never happens: the run dies (a Lambda
    timeout) after copying the day's objects, before its commit point."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **params: Any) -> Any:
        if params["Key"].endswith(sourcing.MANIFEST_NAME):
            raise TimeoutError("Task timed out after 600.00 seconds")
        return self._s3.put_object(**params)


@pytest.fixture(scope="module")
def deployed(synthesized):
    from mdlc_constructs.local.runtime import LocalCloud

    stack, assembly = synthesized
    with LocalCloud(Path(assembly.directory), start=datetime(2026, 11, 2, tzinfo=UTC),
                    stacks=[stack.stack_name]) as cloud:
        yield cloud, stack.stack_name, stack.spec.as_config()


def _resource(cloud: Any, stack: str, kind: str, fragment: str) -> Any:
    for logical_id, resource in cloud.deployed[stack].stack.of_type(kind).items():
        if fragment in resource.get("Metadata", {}).get("aws:cdk:path", ""):
            return cloud.physical(stack, logical_id)
    raise AssertionError(f"no {kind} at {fragment}")


class Day:
    """One scenario's day on the deployed stack."""

    def __init__(self, deployed: Any, day: date) -> None:
        self.cloud, self.stack, self.config = deployed
        self.day = day
        self.s3 = self.cloud.client("s3")
        self.raw = _resource(self.cloud, self.stack, "AWS::S3::Bucket", "/DataLake/Raw/")
        self.datasets = _resource(self.cloud, self.stack, "AWS::S3::Bucket", "/DataLake/Datasets/")
        self.source = f"orders/dt={day.isoformat()}/"
        self.prefix = sourcing.snapshot_prefix("fraud", day)

    def drop(self, name: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.raw, Key=self.source + name, Body=body)

    def first_attempt_crashes_then_part_1_arrives_empty(self) -> None:
        self.drop("part-0.csv.gz", gzip.compress(orders(self.day, 0, 70)))
        self.drop("part-1.csv", orders(self.day, 500, 50))  # the first delivery of part 1
        crashing = CrashBeforeCommit(self.s3)
        sources = [sourcing.build_source(s, s3=crashing, default_bucket=self.raw)
                   for s in self.config["data"]["sources"]]
        with pytest.raises(TimeoutError):
            sourcing.create_snapshot(crashing, sources=sources, bucket=self.datasets,
                                     model="fraud", spec_name="fraud", day=self.day)
        assert sorted(self.snapshot_keys()) == [self.prefix + "orders/part-0.csv.gz",
                                       self.prefix + "orders/part-1.csv"]
        self.drop("part-1.csv", b"")  # upstream re-delivers part 1, broken

    def snapshot_keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.datasets, Prefix=self.prefix)
        return [item["Key"] for item in listed.get("Contents", [])]

    def prepare(self, **extra: Any) -> Any:
        workflow = _resource(self.cloud, self.stack, "AWS::StepFunctions::StateMachine",
                             "/Data/Workflow/")
        logical_id = self.cloud.machine_logical_id(workflow)[1]
        arn = self.cloud.start_execution(self.stack, logical_id,
                                         {"date": self.day.isoformat(), **extra})
        return self.cloud.wait(arn)

    def manifest(self) -> dict[str, Any]:
        return sourcing.committed_manifest(self.s3, self.datasets, self.prefix)


def _data(execution: Any) -> dict[str, Any]:
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    branches = execution.output["prepared"]
    return (branches[0] if isinstance(branches, list) else branches)["data"]


def _failed_naming_part_1(deployed: Any, day: Day, before: int) -> None:
    execution = day.prepare()
    assert execution.status == "FAILED"
    cloud = deployed[0]
    causes = json.dumps(cloud.notifications[before:])
    # The error names the object it came from, and nothing of the day was committed.
    assert f"s3://{day.raw}/{day.source}part-1.csv: file is empty" in causes
    assert "part-0.csv.gz" not in causes.split("file is empty")[0].rsplit("s3://", 1)[-1]
    with pytest.raises(sourcing.SnapshotError, match="no committed snapshot"):
        day.manifest()


@pytest.mark.parametrize("path", ["fix_and_rerun", "fix_and_new_version",
                                  "delete_and_rerun"])
def test_a_failed_first_snapshot_is_recovered_by_a_rerun(deployed: Any, path: str) -> None:
    offset = {"fix_and_rerun": 0, "fix_and_new_version": 40, "delete_and_rerun": 80}[path]
    day = Day(deployed, date(2026, 6, 1) + timedelta(days=offset))
    day.first_attempt_crashes_then_part_1_arrives_empty()
    _failed_naming_part_1(deployed, day, len(deployed[0].notifications))

    if path == "delete_and_rerun":
        day.s3.delete_object(Bucket=day.raw, Key=day.source + "part-1.csv")
        data = _data(day.prepare())
        expected = 70
    else:
        fixed = orders(day.day, 1000, 60)
        day.drop("part-1.csv", fixed)
        extra = {"new_version": True} if path == "fix_and_new_version" else {}
        data = _data(day.prepare(**extra))
        expected = 130

    snapshot, manifest = data["snapshot"], day.manifest()
    # Version 1: the crashed attempt was never a snapshot, so it is not "taken".
    assert snapshot["created"] is True and snapshot["version"] == 1
    assert snapshot["snapshot_prefix"] == day.prefix and snapshot["rows"] == expected
    assert [o["key"].rsplit("/", 1)[1] for o in manifest["objects"]] == (
        ["part-0.csv.gz"] if path == "delete_and_rerun" else ["part-0.csv.gz", "part-1.csv"])
    assert [o["format"] for o in manifest["objects"]] == ["csv"] * len(manifest["objects"])
    # The data lake's datasets bucket is versioned: readers get the committed copies.
    assert all(o["version_id"] for o in manifest["objects"])
    # Quality and features read what the manifest lists: the gzip part, and
    # neither the crashed attempt's copy of part 1 (still under the prefix
    # after the delete) nor anything else there.
    assert data["quality"]["passed"] is True, data["quality"]
    assert data["quality"]["rows"] == expected
    assert data["features"]["rows"] == expected
    assert data["features"]["snapshots"][-1] == day.prefix + sourcing.MANIFEST_NAME
    if path == "delete_and_rerun":
        assert day.prefix + "orders/part-1.csv" in day.snapshot_keys()  # the leftover, ignored
    else:
        copy = day.s3.get_object(Bucket=day.datasets, Key=day.prefix + "orders/part-1.csv")
        assert copy["Body"].read() == fixed

    # Committed now: a re-run is a no-op, and a later source change does not leak in.
    day.drop("part-1.csv", orders(day.day, 2000, 5))
    again = _data(day.prepare())["snapshot"]
    assert again["created"] is False and again["content_hash"] == snapshot["content_hash"]
    assert day.manifest() == manifest
