"""Training input: the run's parameters and the train/validation split (no AWS calls).

The training workflow's first own step resolves everything a run uses from
the execution input, with the spec as the default, so that every later step
(the training job, the gate, the registration) reads one object, and splits
the feature snapshot into the algorithm's channels.

The split is deterministic: an event is in the validation channel when the
SHA-256 of its event id, as a number in [0, 1), is below the validation
fraction. A re-run on the same snapshot gives the same channels, and an
event stays on its side when later snapshots add rows.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Formats the split can write, by the spec's ``training.content_type``.
CONTENT_TYPES = ("text/csv", "application/x-parquet")
#: SageMaker job names: 1-63 characters, alphanumerics and hyphens.
JOB_NAME_LIMIT = 63
#: CreateModelPackage's ClientToken: 1-36 characters, ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,35}$.
CLIENT_TOKEN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,35}$")
UNKNOWN = "unknown"


class TrainingInputError(ValueError):
    """The execution input or the feature snapshot cannot be trained on."""


@dataclass(frozen=True)
class Split:
    """The rows of each channel, as columns: label first, then the features."""

    train: dict[str, list[Any]]
    validation: dict[str, list[Any]]
    dropped_unlabelled: int

    @property
    def rows(self) -> dict[str, int]:
        first = next(iter(self.train))
        return {
            "train": len(self.train[first]),
            "validation": len(self.validation[first]),
            "dropped_unlabelled": self.dropped_unlabelled,
        }


def validation_share(event_id: Any) -> float:
    """The event's position in [0, 1): the first 8 bytes of SHA-256 of its id."""
    digest = hashlib.sha256(str(event_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split(
    columns: Mapping[str, Sequence[Any]],
    *,
    event_id: str,
    label: str,
    features: Sequence[str],
    validation_fraction: float,
) -> Split:
    """Split a feature snapshot (columns by name) into train and validation rows.

    Rows without a label are dropped (and counted): they cannot teach or
    judge a supervised model. Both channels must end up non-empty.
    """
    missing = [c for c in (event_id, label, *features) if c not in columns]
    if missing:
        raise TrainingInputError(
            f"the feature snapshot has no column(s) {missing}; it has {sorted(columns)}"
        )
    names = [label, *features]
    train: dict[str, list[Any]] = {n: [] for n in names}
    validation: dict[str, list[Any]] = {n: [] for n in names}
    dropped = 0
    labels = columns[label]
    for row, identifier in enumerate(columns[event_id]):
        if _missing(labels[row]):
            dropped += 1
            continue
        target = validation if validation_share(identifier) < validation_fraction else train
        for name in names:
            target[name].append(columns[name][row])
    result = Split(train, validation, dropped)
    counts = result.rows
    if counts["train"] == 0 or counts["validation"] == 0:
        raise TrainingInputError(
            f"cannot train: {counts['train']} training and {counts['validation']} validation "
            f"rows after dropping {dropped} unlabelled rows (validation_fraction "
            f"{validation_fraction})"
        )
    return result


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _csv_value(value: Any) -> str:
    # XGBoost and Linear Learner read an empty field as missing.
    if _missing(value):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_csv(channel: Mapping[str, Sequence[Any]]) -> bytes:
    """The built-ins' CSV: label in the first column, no header."""
    names = list(channel)
    lines = (
        ",".join(_csv_value(channel[n][row]) for n in names)
        for row in range(len(channel[names[0]]))
    )
    return ("\n".join(lines) + "\n").encode("utf-8")


def to_parquet(channel: Mapping[str, Sequence[Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(dict(channel)), buffer)
    return buffer.getvalue()


def encode(channel: Mapping[str, Sequence[Any]], content_type: str) -> tuple[bytes, str]:
    """The channel's bytes and file suffix for ``content_type``."""
    if content_type == "text/csv":
        return to_csv(channel), "csv"
    if content_type == "application/x-parquet":
        return to_parquet(channel), "parquet"
    raise TrainingInputError(
        f"training.content_type {content_type!r}: the split writes only {list(CONTENT_TYPES)}"
    )


# -- run parameters -------------------------------------------------------------

_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")


def job_name(model: str, day: str, execution: str) -> str:
    """A training job name unique per execution and stable across retries.

    ``mdlc-<model>-<yyyymmdd>-<10 hex of the execution's id>``, at most 63
    characters (a model name has at most 31).
    """
    digest = hashlib.sha256(execution.encode("utf-8")).hexdigest()[:10]
    name = f"mdlc-{model}-{day.replace('-', '')}-{digest}"
    name = re.sub(r"[^A-Za-z0-9-]", "-", name)
    return name[:JOB_NAME_LIMIT].rstrip("-")


def client_token(execution: str) -> str:
    """The registration's idempotency token: 32 hex characters of SHA-256 of the
    execution's id.

    Stable across retries of the Register step and redrives of the same
    execution (a repeated CreateModelPackage returns the version the first
    call made), different for every other execution (each run registers its
    own version). An empty id would give every caller the same token, so
    that later runs silently got an earlier version back: it is an error.
    """
    if not execution:
        raise TrainingInputError(
            "the event has no 'execution' (the workflow passes $$.Execution.Id): the "
            "registration's ClientToken must be unique per run"
        )
    # Hex digits only, 32 of them: always within CLIENT_TOKEN.
    return hashlib.sha256(f"mdlc-register:{execution}".encode()).hexdigest()[:32]


def _hyperparameter(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TrainingInputError(
        f"hyperparameters.{name}: expected a string, number or boolean, got {value!r}"
    )


def resolve_parameters(training: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The run's parameters: the execution input's overrides, else the spec's.

    ``training`` is the spec's ``training`` section (plain JSON). Overridable:
    ``hyperparameters`` (merged key by key over the spec's), ``instance_type``,
    ``instance_count``, ``threshold``. SageMaker takes hyperparameters as
    strings; numbers and booleans are converted here.
    """
    hyperparameters = {**training.get("hyperparameters", {}), **overrides.get("hyperparameters",
                                                                           {})}
    instance_type = overrides.get("instance_type", training["instance_type"])
    if not isinstance(instance_type, str) or not _INSTANCE.match(instance_type):
        raise TrainingInputError(
            f"instance_type: expected a SageMaker instance type such as 'ml.m5.xlarge', "
            f"got {instance_type!r}"
        )
    count = overrides.get("instance_count", training["instance_count"])
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise TrainingInputError(f"instance_count: expected a positive integer, got {count!r}")
    threshold = overrides.get("threshold", training["evaluation"]["threshold"])
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise TrainingInputError(f"threshold: expected a number, got {threshold!r}")
    return {
        "hyperparameters": {k: _hyperparameter(k, v) for k, v in sorted(hyperparameters.items())},
        "instance_type": instance_type,
        "instance_count": count,
        "threshold": float(threshold),
    }


def _text(value: Any) -> str:
    # Model package metadata values are strings of at most 256 characters.
    return UNKNOWN if value in (None, "") else str(value)[:256]


def lineage(data: Mapping[str, Any], code_version: Any) -> dict[str, str]:
    """What the model package will record about the data and code it came from."""
    snapshot = data.get("snapshot") or {}
    features = data.get("features") or {}
    return {
        "dataset_date": _text(snapshot.get("date") or features.get("date")),
        "dataset_snapshot": _text(snapshot.get("snapshot_prefix")),
        "dataset_manifest": _text(snapshot.get("manifest_key")),
        "dataset_content_hash": _text(snapshot.get("content_hash")),
        "feature_snapshot": _text(features.get("features_key")),
        "code_version": _text(code_version),
    }
