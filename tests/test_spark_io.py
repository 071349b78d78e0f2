"""mdlc_core.spark_io without a JVM: the stores' locations and uploads, and the
executors' errors raised again as themselves on the driver.

The reading and writing on Spark itself are run by tests/test_spark.py and
tests/test_spark_features.py (the jobs against the other engines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from mdlc_core import spark_io
from mdlc_core.batch_features import FeatureError
from mdlc_core.monitoring import MonitoringInputError
from mdlc_core.sourcing import SnapshotError
from mdlc_core.tabular import DataError
from moto import mock_aws


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="lake")
        yield client


def test_emrfs_hands_spark_the_objects_s3_uris() -> None:
    store = spark_io.Emrfs()
    assert store.read_location("lake", "datasets/m/dt=2026-11-02/part.csv") == \
        "s3://lake/datasets/m/dt=2026-11-02/part.csv"
    assert store.write_location("art", "spark/m/features/r/staging/") == \
        "s3://art/spark/m/features/r/staging/"


def test_downloaded_copies_what_spark_reads_and_uploads_what_it_wrote(
    s3: Any, tmp_path: Path
) -> None:
    """A local path Hadoop reads as written (``dt=`` not percent-escaped); what
    Spark wrote is uploaded SSE-KMS with the key, without Hadoop's .crc files."""
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    s3.put_object(Bucket="lake", Key="datasets/m/dt=2026-11-02/part.csv", Body=b"a\n1\n")
    store = spark_io.Downloaded(s3, tmp_path, kms_key=key)
    location = store.read_location("lake", "datasets/m/dt=2026-11-02/part.csv")
    assert location == f"file://{tmp_path}/lake/datasets/m/dt=2026-11-02/part.csv"
    assert Path(location.removeprefix("file://")).read_bytes() == b"a\n1\n"
    folder = Path(store.write_location("lake", "spark/run/staging/").removeprefix("file://"))
    folder.mkdir(parents=True)
    (folder / "part-00000-x.snappy.parquet").write_bytes(b"PAR1")
    (folder / ".part-00000-x.snappy.parquet.crc").write_bytes(b"crc")
    store.written("lake", "spark/run/staging/")
    listed = s3.list_objects_v2(Bucket="lake", Prefix="spark/")["Contents"]
    assert [o["Key"] for o in listed] == ["spark/run/staging/part-00000-x.snappy.parquet"]
    head = s3.head_object(Bucket="lake", Key=listed[0]["Key"])
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key)


def test_downloaded_refuses_a_key_that_leaves_its_folder(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"s3://lake/\.\./\.\./etc/passwd: not a key"):
        spark_io.Downloaded(s3, tmp_path / "objects").read_location("lake", "../../etc/passwd")


@pytest.mark.parametrize("error", [
    SnapshotError("s3://lake/k.csv: content differs from its manifest (sha256 ab, the "
                  "manifest recorded cd)"),
    DataError("s3://lake/k.csv: missing column(s) ['order_id']"),
    FeatureError("s3://lake/k.csv has no column(s) ['customer_id']"),
    # The monitoring kind's executors: a prediction or label object the shared reader refuses.
    MonitoringInputError("s3://lake/predictions/m/dt=2026-11-02/scored/a.parquet: cannot "
                         "read as parquet: Parquet magic bytes not found in footer"),
])
def test_an_executors_error_is_raised_again_as_itself(error: Exception) -> None:
    """Spark wraps the Python worker's traceback in its own exception: the
    driver raises the mdlc error it carries, same type, same message."""
    qualified = f"{type(error).__module__}.{type(error).__name__}"
    wrapped = RuntimeError(
        "An exception was thrown from the Python worker. Please see the stack trace below.\n"
        "Traceback (most recent call last):\n  File \"worker.py\", line 1, in main\n"
        f"{qualified}: {error}\n\tat org.apache.spark.api.python.BasePythonRunner\n")
    with pytest.raises(type(error)) as raised, spark_io.executor_errors():
        raise wrapped
    assert str(raised.value) == str(error) and raised.value.__cause__ is wrapped
    assert spark_io.executor_error(RuntimeError("java.lang.OutOfMemoryError: heap")) is None
