"""Data sourcing handler against moto: immutable dated snapshots with a manifest."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
from mdlc_core import sourcing
from moto import mock_aws

from mdlc_constructs.spec import load_spec
from tests.lambda_loader import load_handler

RAW, DATASETS = "raw-bucket-test", "datasets-bucket-test"
CSV_1 = b"order_id,customer_id,order_ts,order_amount\no1,c1,2026-03-01T10:00:00Z,10.5\n"
CSV_2 = (b"order_id,customer_id,order_ts,order_amount\n"
         b"o2,c2,2026-03-01T11:00:00Z,3\no3,c1,2026-03-01T12:00:00Z,4\n")


@pytest.fixture
def env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    config = tmp_path / "mdlc_config.json"
    config.write_text(json.dumps(load_spec("models/fraud.yaml").as_config()))
    monkeypatch.setenv("MDLC_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("RAW_BUCKET", RAW)
    monkeypatch.setenv("DATASETS_BUCKET", DATASETS)
    monkeypatch.setenv("MODEL_NAME", "fraud")
    from mdlc_core.runtime_config import load_config

    load_config.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (RAW, DATASETS):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket,
                                     VersioningConfiguration={"Status": "Enabled"})
        yield s3, load_handler("data_sourcing")
    load_config.cache_clear()


def manifest(s3: Any, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=DATASETS, Key=key)["Body"].read())


def test_partition_folder_snapshot_has_a_complete_manifest(env: Any) -> None:
    s3, module = env
    v1 = s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/b.csv", Body=CSV_2)["VersionId"]
    v2 = s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/a.csv", Body=CSV_1)["VersionId"]
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-02/c.csv", Body=CSV_1)  # another day
    out = module.handler({"date": "2026-03-01"}, None)
    prefix = "datasets/fraud/dt=2026-03-01/"
    assert out == {
        "date": "2026-03-01", "version": 1, "snapshot_prefix": prefix,
        "manifest_key": prefix + "_manifest.json", "rows": 3,
        "content_hash": hashlib.sha256(CSV_1 + CSV_2).hexdigest(), "created": True,
    }
    m = manifest(s3, out["manifest_key"])
    assert [o["key"] for o in m["objects"]] == [prefix + "orders/a.csv", prefix + "orders/b.csv"]
    assert [o["source"]["version_id"] for o in m["objects"]] == [v2, v1]
    assert all(o["source"]["etag"] for o in m["objects"])
    assert [c["name"] for c in m["schema"]["orders"]] == [
        "order_id", "customer_id", "order_ts", "order_amount"]
    assert m["spec_name"] == "fraud" and m["created_at"]
    copied = s3.get_object(Bucket=DATASETS, Key=prefix + "orders/a.csv")
    assert copied["Body"].read() == CSV_1
    assert copied["Metadata"]["source-version-id"] == v2


def test_rerun_is_a_no_op_and_source_changes_do_not_leak_in(env: Any) -> None:
    s3, module = env
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/a.csv", Body=CSV_1)
    first = module.handler({"date": "2026-03-01"}, None)
    before = manifest(s3, first["manifest_key"])
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/a.csv", Body=CSV_2)  # upstream rewrite
    again = module.handler({"date": "2026-03-01"}, None)
    assert again == {**first, "created": False}
    assert manifest(s3, first["manifest_key"]) == before
    body = s3.get_object(Bucket=DATASETS, Key="datasets/fraud/dt=2026-03-01/orders/a.csv")
    assert body["Body"].read() == CSV_1

    newer = module.handler({"date": "2026-03-01", "new_version": True}, None)
    assert newer["created"] and newer["version"] == 2
    assert newer["snapshot_prefix"] == "datasets/fraud/dt=2026-03-01/v=2/"
    assert newer["content_hash"] == hashlib.sha256(CSV_2).hexdigest()
    assert manifest(s3, first["manifest_key"]) == before  # v1 untouched
    third = module.handler({"date": "2026-03-01", "new_version": True}, None)
    assert third["version"] == 3


def test_last_modified_rule_without_partitions(env: Any, monkeypatch: Any) -> None:
    s3, module = env
    s3.put_object(Bucket=RAW, Key="orders/today.csv", Body=CSV_1)
    s3.put_object(Bucket=RAW, Key="orders/dt=2020-01-01/old.csv", Body=CSV_2)
    today = datetime.now(UTC).date()
    out = module.handler({"date": today.isoformat()}, None)
    m = manifest(s3, out["manifest_key"])
    assert [o["source"]["key"] for o in m["objects"]] == ["orders/today.csv"]
    with pytest.raises(sourcing.SourcingError, match="no source objects"):
        module.handler({"date": "2001-01-01"}, None)


def test_concurrent_run_loses_to_the_committed_manifest(env: Any) -> None:
    s3, module = env
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/a.csv", Body=CSV_1)
    source = sourcing.build_source({"kind": "s3", "name": "orders", "prefix": "orders"},
                                   s3=s3, default_bucket=RAW)
    real_read = sourcing.read_manifest
    calls = {"n": 0}

    def racing_read(client: Any, bucket: str, key: str) -> Any:
        # The other run commits right after our existence check.
        calls["n"] += 1
        if calls["n"] == 1:
            winner = module.handler({"date": "2026-03-01"}, None)
            assert winner["created"]
            return None
        return real_read(client, bucket, key)

    sourcing.read_manifest = racing_read
    try:
        out = sourcing.create_snapshot(s3, sources=[source], bucket=DATASETS, model="fraud",
                                       spec_name="fraud", day=date(2026, 3, 1))
    finally:
        sourcing.read_manifest = real_read
    assert out["created"] is False and out["version"] == 1


def test_an_uncommitted_attempts_object_is_replaced_and_readers_get_the_copy(env: Any) -> None:
    """An object under a prefix without a manifest is the leftover of an attempt
    that never committed: replaced, not a conflict; the manifest names the
    version of the new copy, which is what readers get."""
    s3, module = env
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/a.csv", Body=CSV_1)
    left = "datasets/fraud/dt=2026-03-01/orders/a.csv"
    s3.put_object(Bucket=DATASETS, Key=left, Body=b"x")
    out = module.handler({"date": "2026-03-01"}, None)
    entry = manifest(s3, out["manifest_key"])["objects"][0]
    current = s3.head_object(Bucket=DATASETS, Key=left)
    assert out["created"] is True and entry["version_id"] == current["VersionId"]
    assert sourcing.read_snapshot_object(s3, DATASETS, entry) == CSV_1
    # The committed copy is what readers get, whatever happens to the key later.
    s3.put_object(Bucket=DATASETS, Key=left, Body=b"overwritten")
    assert sourcing.read_snapshot_object(s3, DATASETS, entry) == CSV_1
    # Without a version to pin, the SHA-256 catches a changed object.
    with pytest.raises(sourcing.SnapshotError, match=f"s3://{DATASETS}/{left}: content differs"):
        sourcing.read_snapshot_object(s3, DATASETS, {**entry, "version_id": None})


def test_an_unreadable_source_object_is_named_and_nothing_is_written(env: Any) -> None:
    s3, module = env
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/part-0.csv", Body=CSV_1)
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/part-1.csv", Body=b"")
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/part-2.csv.gz",
                  Body=gzip.compress(b""))
    with pytest.raises(sourcing.SourcingError) as raised:
        module.handler({"date": "2026-03-01"}, None)
    message = str(raised.value)
    assert "2 of 3 source object(s) cannot be read" in message
    assert f"s3://{RAW}/orders/dt=2026-03-01/part-1.csv: file is empty" in message
    assert (f"s3://{RAW}/orders/dt=2026-03-01/part-2.csv.gz: cannot be read as CSV: "
            "Empty CSV file") in message
    assert "part-0.csv" not in message
    assert s3.list_objects_v2(Bucket=DATASETS).get("KeyCount") == 0


def test_compressed_csv_is_sourced_as_quality_reads_it(env: Any) -> None:
    """gzip, bzip2 and zstd CSV, told by their bytes: the rows are counted, the
    object is copied as it is, and the shared reader reads it back."""
    import bz2

    import pyarrow as pa
    from mdlc_core import tabular

    s3, module = env
    zstd = pa.compress(CSV_2, codec="zstd", asbytes=True)
    bodies = {"a.csv.gz": gzip.compress(CSV_1), "b.csv.bz2": bz2.compress(CSV_2),
              "c.csv": zstd}
    for name, body in bodies.items():
        s3.put_object(Bucket=RAW, Key=f"orders/dt=2026-03-01/{name}", Body=body)
    out = module.handler({"date": "2026-03-01"}, None)
    assert out["rows"] == 5
    m = manifest(s3, out["manifest_key"])
    assert [o["rows"] for o in m["objects"]] == [1, 2, 2]
    assert [c["name"] for c in m["schema"]["orders"]][:2] == ["order_id", "customer_id"]
    columns = load_spec("models/fraud.yaml").as_config()["data"]["columns"][:4]
    for entry in m["objects"]:
        body = sourcing.read_snapshot_object(s3, DATASETS, entry)
        table = tabular.read_bytes(body, entry["key"], columns, file_format=entry["format"])
        assert table.num_rows == entry["rows"] and not tabular.unparseable(table)


def test_scheduled_run_takes_yesterday_and_bad_dates_fail() -> None:
    now = datetime(2026, 3, 2, 1, tzinfo=UTC)
    assert sourcing.parse_day({}, now) == date(2026, 3, 1)
    with pytest.raises(sourcing.SourcingError, match="YYYY-MM-DD"):
        sourcing.parse_day({"date": "1 March"})


def test_a_team_registers_another_source_kind() -> None:
    @sourcing.register_source("inline")
    class InlineSource(sourcing.Source):
        def list_objects(self, day: date) -> list[sourcing.SourceObject]:
            return [sourcing.SourceObject(self.name, "-", "k", None, "e", 1, "k.csv")]

        def read(self, obj: sourcing.SourceObject) -> bytes:
            return CSV_1

    try:
        built = sourcing.build_source({"kind": "inline", "name": "x"}, s3=None,
                                      default_bucket="b")
        assert isinstance(built, InlineSource)
        with pytest.raises(sourcing.SourcingError, match="unknown kind"):
            sourcing.build_source({"kind": "ftp", "name": "y"}, s3=None, default_bucket="b")
    finally:
        sourcing.SOURCE_KINDS.pop("inline")


def test_a_local_copy_of_a_snapshot_is_read_as_its_manifest_says(env: Any, tmp_path: Any) -> None:
    """``aws s3 sync`` of a snapshot prefix also copies what is not the snapshot
    (an unfinished attempt's leftover, later versions): ``mdlc quality`` on the
    folder reads the listed files only, and refuses a copy that differs."""
    from mdlc_core import tabular

    s3, module = env
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/a.csv", Body=CSV_1)
    prefix = "datasets/fraud/dt=2026-03-01/"
    s3.put_object(Bucket=DATASETS, Key=prefix + "orders/stale.csv", Body=CSV_2)  # leftover
    module.handler({"date": "2026-03-01"}, None)
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/b.csv", Body=CSV_2)
    module.handler({"date": "2026-03-01", "new_version": True}, None)  # v=2/, 3 rows
    folder = tmp_path / "dt=2026-03-01"
    for item in s3.list_objects_v2(Bucket=DATASETS, Prefix=prefix)["Contents"]:
        target = folder / item["Key"][len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=DATASETS, Key=item["Key"])["Body"].read())
    assert len(tabular.data_files(folder)) == 4  # a, stale, v=2/a.csv, v=2/b.csv
    columns = load_spec("models/fraud.yaml").as_config()["data"]["columns"][:4]
    table = tabular.read_table(folder, columns)
    assert table.column("order_id").to_pylist() == ["o1"]
    assert tabular.read_table(folder / "v=2", columns).num_rows == 3
    (folder / "orders" / "a.csv").write_bytes(CSV_2)
    with pytest.raises(tabular.DataError, match=r"a\.csv: content differs from"):
        tabular.read_table(folder, columns)


def test_every_sourcing_error_names_where_it_came_from(env: Any) -> None:
    """No objects: the error names where they were looked for. An S3 error on
    one object (a ClientError names only the operation) names that object."""
    from botocore.exceptions import ClientError

    s3, module = env
    with pytest.raises(sourcing.SourcingError,
                       match=f"in 'orders' \\(s3://{RAW}/orders/dt=2026-03-01/, or objects "
                             f"under s3://{RAW}/orders/ last modified that day\\)"):
        module.handler({"date": "2026-03-01"}, None)
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/a.csv", Body=CSV_1)
    s3.put_object(Bucket=RAW, Key="orders/dt=2026-03-01/b.csv", Body=CSV_2)

    class Denied:
        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def get_object(self, **params: Any) -> Any:
            if params.get("Key", "").endswith("b.csv"):
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}},
                                  "GetObject")
            return s3.get_object(**params)

    source = sourcing.build_source({"name": "orders", "prefix": "orders/"}, s3=Denied(),
                                   default_bucket=RAW)
    with pytest.raises(sourcing.SourcingError) as raised:
        sourcing.create_snapshot(s3, sources=[source], bucket=DATASETS, model="fraud",
                                 spec_name="fraud", day=date(2026, 3, 1))
    assert str(raised.value).startswith(f"s3://{RAW}/orders/dt=2026-03-01/b.csv (version ")
    assert "cannot be read: An error occurred (AccessDenied)" in str(raised.value)
    assert s3.list_objects_v2(Bucket=DATASETS).get("KeyCount") == 0
