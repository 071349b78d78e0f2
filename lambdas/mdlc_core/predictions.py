"""Model monitoring's input, written by whatever decides: the predictions layout.

Every path that scores and decides (the batch decide step, the fused stream
consumer, the state-machine integration step) also writes its decisions as
*predictions* in the contract ``mdlc_core.monitor_job`` reads
(docs/monitoring.md, Inputs):

    s3://<PREDICTIONS_BUCKET>/predictions/<model>/dt=YYYY-MM-DD/scored/<name>.csv|.parquet

columns ``event_id``, ``score``, ``prediction_ts`` (the decision time, UTC),
``model_version``, ``action`` and the model's feature columns (the inputs it
scored; empty where missing). ``dt`` is the UTC day of ``prediction_ts``. The
``scored/`` folder holds predictions only: the day's folder also holds the
batch transform's raw output (``part-NNNNN.csv.out``) and the decision
records (``decisions/``), which are not monitoring input.

Writers are at least once: a redelivered batch can write an event's
decision again, under the same name when the batch is the same (it
overwrites) or another (then the monitor counts each ``event_id`` of a day
once). The rows always come from the decision that was acted on, so every
copy is the same.

Standard library only (the stream consumer has no data layer); the batch
step writes Parquet with :func:`to_parquet`, which imports PyArrow.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mdlc_core.decisions import Decision

from .layout import Layout

logger = logging.getLogger("mdlc.predictions")

#: The contract's columns before the features (docs/monitoring.md).
COLUMNS = ("event_id", "score", "prediction_ts", "model_version", "action")
#: The folder under a day that holds predictions and nothing else.
SCORED = "scored"
#: What the monitor reads under ``scored/``; anything else there is skipped.
FORMATS = (".csv", ".csv.gz", ".parquet", ".pq")


def day_prefix(model: str, day: str) -> str:
    """``predictions/<model>/dt=<day>/``: the day's folder (transform output,
    decisions, and ``scored/``)."""
    return Layout(model).prediction_day(day)


def scored_prefix(model: str, day: str) -> str:
    """``predictions/<model>/dt=<day>/scored/``: the monitor's input for the day."""
    return Layout(model).scored(day)


def is_prediction_file(key: str) -> bool:
    """Whether ``key`` is in one of the contract's formats (markers and others are not)."""
    name = key.rsplit("/", 1)[-1]
    return not name.startswith(("_", ".")) and name.lower().endswith(FORMATS)


def distinct(decisions: Iterable[Decision]) -> list[Decision]:
    """One decision per event id, the first (a batch may hold a producer's resend,
    whose stored decision is the same)."""
    seen: dict[str, Decision] = {}
    for decision in decisions:
        seen.setdefault(decision.event_id, decision)
    return list(seen.values())


def by_day(decisions: Iterable[Decision]) -> dict[str, list[Decision]]:
    """Decisions grouped by the UTC day of ``decided_at`` (ISO 8601, UTC), in order."""
    days: dict[str, list[Decision]] = {}
    for decision in distinct(decisions):
        days.setdefault(decision.decided_at[:10], []).append(decision)
    return days


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _row(decision: Decision, features: Sequence[str]) -> list[Any]:
    return [decision.event_id, decision.score, decision.decided_at, decision.model_version,
            decision.action, *(_number(decision.features.get(name)) for name in features)]


def to_csv(decisions: Sequence[Decision], features: Sequence[str]) -> bytes:
    """The decisions as a predictions CSV with a header (a missing feature is empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*COLUMNS, *features])
    for decision in decisions:
        writer.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v)
                         for v in _row(decision, features)])
    return buffer.getvalue().encode()


def to_parquet(decisions: Sequence[Decision], features: Sequence[str]) -> bytes:
    """The decisions as a predictions Parquet file (``prediction_ts`` a UTC timestamp)."""
    from datetime import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, pa.Array] = {
        "event_id": pa.array([d.event_id for d in decisions], pa.string()),
        "score": pa.array([d.score for d in decisions], pa.float64()),
        "prediction_ts": pa.array(
            [datetime.fromisoformat(d.decided_at.replace("Z", "+00:00")) for d in decisions],
            pa.timestamp("ms", "UTC"),
        ),
        "model_version": pa.array([d.model_version for d in decisions], pa.string()),
        "action": pa.array([d.action for d in decisions], pa.string()),
    }
    for name in features:
        columns[name] = pa.array([_number(d.features.get(name)) for d in decisions],
                                 pa.float64())
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


class PredictionLog:
    """Writes a batch of acted-on decisions as one predictions file per UTC day.

    ``name`` names the file within each day's ``scored/`` folder; a writer
    derives it from what it processed (a stream batch's sequence numbers, an
    event id, a transform part) so that a redelivery overwrites its file.
    """

    def __init__(self, clients: Any, bucket: str, model: str, features: Sequence[str]) -> None:
        self.clients = clients
        self.bucket = bucket
        self.model = model
        self.features = tuple(features)

    @classmethod
    def from_env(
        cls, clients: Any, config: Mapping[str, Any], features: Sequence[str],
        environ: Mapping[str, str] | None = None,
    ) -> PredictionLog | None:
        """From ``PREDICTIONS_BUCKET``; None when it is not set (nothing is written)."""
        import os

        env = os.environ if environ is None else environ
        bucket = env.get("PREDICTIONS_BUCKET")
        if not bucket:
            return None
        return cls(clients, bucket, str(config.get("name", "model")), features)

    def key(self, day: str, name: str, suffix: str = ".csv") -> str:
        return f"{scored_prefix(self.model, day)}{name}{suffix}"

    def write_many(self, decisions: Iterable[Decision], name: str) -> list[str]:
        """Write the decisions (CSV, one object per day); returns the event ids
        whose file could not be written (the others are written)."""
        failed: list[str] = []
        for day, group in by_day(decisions).items():
            try:
                self.clients.get("s3").put_object(
                    Bucket=self.bucket,
                    Key=self.key(day, name),
                    Body=to_csv(group, self.features),
                    ContentType="text/csv",
                )
            except Exception:  # reported per event, so the caller can retry them
                logger.exception("predictions of %s not written to s3://%s/%s", day,
                                 self.bucket, self.key(day, name))
                failed += [d.event_id for d in group]
        return failed
