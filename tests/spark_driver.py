"""What the Spark tests use to prove that no row goes through the job's driver.

The Spark kinds hand Spark the objects' locations; the executors (PySpark's
Python workers, other processes than the test's) read and parse them. So in
the test's process, which is the driver's, every reader of snapshot data can
be made to raise (:func:`forbid_driver_reads`) and the job's S3 client can
record what it was asked for (:class:`RecordingS3`): a job that reads a
snapshot object through either again fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest

#: The driver-side readers of snapshot objects a kind used before the executors read.
DRIVER_READERS = (
    ("mdlc_core.sourcing", "read_snapshot_object"),
    ("mdlc_core.sourcing", "download_snapshot_object"),
    ("mdlc_core.tabular", "read_bytes"),
    ("mdlc_core.tabular", "read_file"),
    ("mdlc_core.tabular", "read_table"),
    ("mdlc_core.feature_job", "read_object"),
    ("mdlc_core.quality_job", "read_snapshot"),
    ("mdlc_core.quality_job", "snapshot_relation"),
)


def forbid_driver_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every driver-side reader of snapshot data raise, in this process only."""
    import importlib

    patched = 0
    for module_name, name in DRIVER_READERS:
        module = importlib.import_module(module_name)
        if not hasattr(module, name):
            continue  # retired since: nothing to forbid

        def refuse(*args: Any, _name: str = f"{module_name}.{name}", **kwargs: Any) -> Any:
            raise AssertionError(f"the driver called {_name}: rows went through the driver")

        monkeypatch.setattr(module, name, refuse)
        patched += 1
    assert patched >= 4, "the shared readers moved: update DRIVER_READERS"


class RecordingS3:
    """The job's S3 client: every call passes through, and the keys it reads
    (GetObject, downloads) are kept in :attr:`read`."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.read: list[str] = []

    def get_object(self, **kwargs: Any) -> Any:
        self.read.append(kwargs["Key"])
        return self._client.get_object(**kwargs)

    def download_file(self, bucket: str, key: str, *args: Any, **kwargs: Any) -> Any:
        self.read.append(key)
        return self._client.download_file(bucket, key, *args, **kwargs)

    def download_fileobj(self, bucket: str, key: str, *args: Any, **kwargs: Any) -> Any:
        self.read.append(key)
        return self._client.download_fileobj(bucket, key, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def data_keys_read(recorder: RecordingS3, manifests: list[dict[str, Any]]) -> list[str]:
    """The manifests' objects among what the job's client read (must be none)."""
    objects = {entry["key"] for manifest in manifests for entry in manifest["objects"]}
    return [key for key in recorder.read if key in objects]
