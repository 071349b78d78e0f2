"""Model monitoring (MDLC stage 7): the definitions every engine shares.

The metrics are computed by one engine, the queries of
:mod:`mdlc_core.sql.monitoring`, on DuckDB (the Lambda handler, the
Processing job and ``mdlc monitor``: :mod:`mdlc_core.sql.monitoring_files`
reads the day's files) or on Spark (``monitoring.runner: spark``,
:mod:`mdlc_core.spark_monitoring`). The NumPy engine that used to live here
was retired (issue #18); its answers are the tests' recorded snapshots.
What stays is what the engines share:

- **Inputs.** The columns (:data:`PREDICTION_COLUMNS`, :data:`LABEL_COLUMNS`,
  :data:`SCORE_COLUMN`), the shared reader (:func:`read_table_bytes`,
  :func:`read_table_path`, :func:`concat_tables`) and the typed inputs it
  gives (:class:`Predictions`, :class:`Labels`: ids as text, timestamps to UTC
  days, labels 0/1, nulls refused), which ``mdlc monitor`` and the Spark
  driver's path hand to the SQL; the Spark executors type each object with
  the same functions. :class:`MonitoringInputError` is every reader's refusal;
  :class:`ReadDay` what a day read by DuckDB or by the executors carries.
- **Refusals as SQL.** The bits of a row's bad-value mask and the checks over
  it (:func:`prediction_checks`, :func:`label_checks`), in the shared reader's
  order, so DuckDB's and Spark's readers refuse a day in the same words.
- **The report's arithmetic.** Ratios that are ``None`` when undefined
  (:func:`ratio`), PSI's proportions with :data:`PSI_EPSILON` for an empty
  bin (:func:`proportions`, :func:`psi`), a day's date (:func:`iso_date`).
- **Alarms.** :func:`evaluate_alarms`: the spec's thresholds a report crosses.

Semantics of the report (docs/monitoring.md):

Closed loop
    Predictions are joined with labels by event id; per day and per model
    version (plus ``"all"``): precision, recall and F1 at the decision
    threshold, AUC (Mann-Whitney, ties count half), label coverage and the
    confusion counts, over the predictions that have a label yet. A metric
    that is undefined for the data is ``None``, never 0. Several labels for
    one event: the latest ``label_ts`` wins (ties: the later row); extra rows
    are ``duplicate_labels``; labels of no prediction are ``unmatched_labels``.

Open loop
    Scores and features against a baseline: PSI over the baseline's
    quantile bins (equal edges merged; an empty bin counts as
    :data:`PSI_EPSILON`), the two-sample KS test (:mod:`mdlc_core.kolmogorov`,
    SciPy's ``ks_2samp`` without SciPy), and each action's share.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

PSI_EPSILON = 1e-4
ALL_VERSIONS = "all"
UNKNOWN_VERSION = "unknown"
PREDICTION_COLUMNS = ("event_id", "score", "prediction_ts")
LABEL_COLUMNS = ("event_id", "label", "label_ts")

#: The bits of a row's bad-value mask, as the SQL readers of the day's files
#: (DuckDB's ``sql.monitoring_files``, the Spark job's executors) mark what
#: the shared reader would refuse.
ID_NULL, VALUE_NULL, VALUE_BAD, SCORE_NAN, TS_NULL, TS_BAD = 1, 2, 4, 8, 16, 32
#: ``(SQL condition, kind, column)``: a row failing the condition is refused.
Check = tuple[str, str, str]


def prediction_checks(bad: str, feature_columns: Mapping[str, str]) -> list[Check]:
    """The shared reader's refusals of prediction rows, in its order, over the
    mask column ``bad`` and each monitored feature's column
    (``{feature: column}``; a feature value that is not a number is null).
    One definition for both SQL readers, so their errors cannot drift apart."""
    return [(f"{bad} & {ID_NULL} <> 0", "null", "event_id"),
            (f"{bad} & {VALUE_NULL} <> 0", "null", "score"),
            (f"{bad} & {VALUE_BAD} <> 0", "number", "score"),
            (f"{bad} & {SCORE_NAN} <> 0", "nan", "score"),
            (f"{bad} & {TS_NULL} <> 0", "null", "prediction_ts"),
            (f"{bad} & {TS_BAD} <> 0", "timestamp", "prediction_ts"),
            *((f"{column} IS NULL", "number", name) for name, column in feature_columns.items())]


def label_checks(bad: str) -> list[Check]:
    """The shared reader's refusals of label rows, in its order (as
    :func:`prediction_checks`)."""
    return [(f"{bad} & {ID_NULL} <> 0", "null", "event_id"),
            (f"{bad} & {VALUE_NULL} <> 0", "null", "label"),
            (f"{bad} & {VALUE_BAD} <> 0", "number", "label"),
            ("label IS NOT NULL AND (isnan(label) OR label NOT IN (0, 1))", "label", "label"),
            (f"{bad} & {TS_NULL} <> 0", "null", "label_ts"),
            (f"{bad} & {TS_BAD} <> 0", "timestamp", "label_ts")]
SCORE_COLUMN = "score"

_DAY_US = 86_400_000_000
_TEXT_COLUMNS = {"event_id": pa.string(), "model_version": pa.string(), "action": pa.string()}


class MonitoringInputError(ValueError):
    """Predictions, labels or a baseline that cannot be used, with the reason."""


# --------------------------------------------------------------------------- reading


def table_format(name: str, head: bytes = b"") -> str:
    """``"csv"`` or ``"parquet"`` from the file name (or Parquet's magic bytes)."""
    lower = name.lower()
    if lower.endswith((".parquet", ".pq", ".parq")) or head[:4] == b"PAR1":
        return "parquet"
    if lower.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    raise MonitoringInputError(
        f"{name}: not a CSV or Parquet file (expected .csv, .csv.gz or .parquet)"
    )


def read_table_bytes(data: bytes, name: str) -> pa.Table:
    """One CSV or Parquet object, e.g. the body of an S3 object."""
    fmt = table_format(name, data[:4])
    try:
        if fmt == "parquet":
            return pq.read_table(io.BytesIO(data))
        stream: Any = io.BytesIO(data)
        if name.lower().endswith(".gz"):
            stream = pa.input_stream(pa.py_buffer(data), compression="gzip")
        # Ids must stay text: "007" and "7" are different orders, and one
        # file of numeric-looking ids must not make another file's ids clash.
        return pacsv.read_csv(
            stream, convert_options=pacsv.ConvertOptions(column_types=_TEXT_COLUMNS)
        )
    except (pa.ArrowException, OSError) as error:
        raise MonitoringInputError(f"{name}: cannot read as {fmt}: {error}") from error


def read_table_path(path: str | Path) -> pa.Table:
    """A CSV/Parquet file, or every CSV/Parquet file under a directory
    (how a Processing job receives an S3 prefix)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and not p.name.startswith(("_", "."))
            and p.name.lower().endswith((".csv", ".csv.gz", ".parquet", ".pq"))
        )
        if not files:
            raise MonitoringInputError(f"{path}: no .csv or .parquet files in the directory")
        return concat_tables([read_table_bytes(p.read_bytes(), str(p)) for p in files], str(path))
    if not path.is_file():
        raise MonitoringInputError(f"{path}: no such file")
    table_format(path.name, _head(path))
    return read_table_bytes(path.read_bytes(), str(path))


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(4)


def concat_tables(tables: Sequence[pa.Table], name: str) -> pa.Table:
    """Tables of one dataset written by different writers (CSV and Parquet mixed)."""
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as error:
        raise MonitoringInputError(f"{name}: files have incompatible columns: {error}") from error


# ------------------------------------------------------------------------- columns


def _require(table: pa.Table, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise MonitoringInputError(
            f"{what}: missing column(s) {missing}; found {table.column_names}"
        )


def _no_nulls(column: pa.ChunkedArray, name: str, what: str) -> None:
    if column.null_count:
        raise MonitoringInputError(f"{what}: {column.null_count} row(s) without {name}")


def text_column(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    """Column ``name`` of ``table`` as text; one that cannot be is a
    :class:`MonitoringInputError` naming ``what``."""
    column = table.column(name)
    try:
        return pc.cast(column, pa.string()) if column.type != pa.string() else column
    except pa.ArrowException as error:
        raise MonitoringInputError(f"{what}: {name} is not text: {error}") from error


def _timestamps_us(table: pa.Table, name: str, what: str) -> np.ndarray:
    """Microseconds since the epoch, UTC. Zone-less text is read as UTC."""
    column = table.column(name)
    _no_nulls(column, name, what)
    kind = column.type
    if pa.types.is_null(kind):  # a header-only CSV: no rows, no type to infer
        return np.zeros(0, dtype=np.int64)
    try:
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            tz = getattr(kind, "tz", None)
            column = pc.cast(column, pa.timestamp("us", tz=tz))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            column = parse_timestamps(column)
        else:
            raise MonitoringInputError(
                f"{what}: {name} must be an ISO-8601 timestamp, got type {kind}"
            )
        return column.cast(pa.int64()).to_numpy()
    except pa.ArrowException as error:
        raise MonitoringInputError(
            f"{what}: {name} is not an ISO-8601 timestamp: {error}"
        ) from error


def parse_timestamps(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO 8601 text as microsecond timestamps: zone-less as is, zoned as UTC."""
    try:
        return pc.cast(column, pa.timestamp("us"))
    except pa.ArrowInvalid:
        return pc.cast(column, pa.timestamp("us", tz="UTC"))


def floats(column: pa.ChunkedArray, name: str, what: str) -> np.ndarray:
    """``column`` as doubles, nulls as NaN; text that is not a number is a
    :class:`MonitoringInputError` naming ``what`` (the file or table) and ``name``."""
    try:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowException as error:
        raise MonitoringInputError(f"{what}: {name} is not numeric: {error}") from error
    return np.asarray(values, dtype=np.float64)


def _codes(column: pa.ChunkedArray | None, n: int, default: str) -> tuple[np.ndarray, list[str]]:
    """Small-cardinality text (versions, actions) as integer codes + names."""
    if column is None:
        return np.zeros(n, dtype=np.int64), [default]
    encoded = pc.dictionary_encode(pc.fill_null(column, default)).combine_chunks()
    return (
        encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        [str(v) for v in encoded.dictionary.to_pylist()],
    )


@dataclass(frozen=True)
class Predictions:
    """One row per scored event, as arrays."""

    event_id: pa.ChunkedArray
    score: np.ndarray
    day: np.ndarray  # days since 1970-01-01 (UTC) of prediction_ts
    version_codes: np.ndarray
    versions: list[str]
    action_codes: np.ndarray | None
    actions: list[str]
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def from_table(
        cls, table: pa.Table, feature_columns: Iterable[str] = (), what: str = "predictions"
    ) -> Predictions:
        _require(table, PREDICTION_COLUMNS, what)
        event_id = text_column(table, "event_id", what)
        _no_nulls(event_id, "event_id", what)
        score_column = table.column("score")
        _no_nulls(score_column, "score", what)
        score = floats(score_column, "score", what)
        if np.isnan(score).any():
            raise MonitoringInputError(f"{what}: {int(np.isnan(score).sum())} score(s) are NaN")
        day = _timestamps_us(table, "prediction_ts", what) // _DAY_US
        names = table.column_names
        version_codes, versions = _codes(
            text_column(table, "model_version", what) if "model_version" in names else None,
            len(score),
            UNKNOWN_VERSION,
        )
        action_codes, actions = (None, [])
        if "action" in names:
            action = text_column(table, "action", what)
            action_codes, actions = _codes(action, len(score), "")
        features = {
            name: floats(table.column(name), name, what)
            for name in feature_columns
            if name in names and name != "score"
        }
        return cls(event_id, score, day, version_codes, versions, action_codes, actions, features)


@dataclass(frozen=True)
class Labels:
    """Ground truth as it arrived, possibly with several rows per event."""

    event_id: pa.ChunkedArray
    label: np.ndarray  # int8, 0 or 1
    label_ts: np.ndarray  # microseconds since the epoch, UTC

    def __len__(self) -> int:
        return len(self.label)

    @classmethod
    def from_table(cls, table: pa.Table, what: str = "labels") -> Labels:
        _require(table, LABEL_COLUMNS, what)
        event_id = text_column(table, "event_id", what)
        _no_nulls(event_id, "event_id", what)
        column = table.column("label")
        _no_nulls(column, "label", what)
        if pa.types.is_boolean(column.type):
            values = column.cast(pa.int8()).to_numpy()
        else:
            values = floats(column, "label", what) if len(column) else np.zeros(0)
        bad = ~np.isin(values, (0, 1))
        if bad.any():
            examples = sorted({str(v) for v in np.asarray(values)[bad][:5]})
            raise MonitoringInputError(
                f"{what}: label must be 0 or 1; {int(bad.sum())} row(s) are not, e.g. {examples}"
            )
        label_ts = _timestamps_us(table, "label_ts", what)
        return cls(event_id, np.asarray(values, dtype=np.int8), label_ts)


@dataclass(kw_only=True)
class ReadDay:
    """A day's predictions an engine read itself, one row per event (DuckDB's
    ``sql.monitoring_files.DayPredictions``, the Spark executors'
    ``spark_monitoring.ExecutorPredictions``): what ``sql.monitoring``'s
    ``prepare_day`` and ``prepare_frames`` need beside the relation, which
    each engine's ``view(names)`` gives."""

    rows: int
    #: Extra copies of an event's prediction, dropped (the first row counts).
    duplicates: int
    #: The monitored features some file has, in the spec's order.
    features: tuple[str, ...]
    has_actions: bool
    #: Feature name -> its column in the engine's table or frame.
    feature_columns: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.rows


# ------------------------------------------------------------ the report's arithmetic


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None where it is undefined (a zero
    denominator): the report says "no value", never 0 or NaN."""
    return float(numerator) / float(denominator) if denominator else None


def proportions(counts: np.ndarray) -> np.ndarray:
    """Bin counts as PSI's proportions: an empty bin is :data:`PSI_EPSILON`, so
    :func:`psi` stays finite; no rows at all is all zeros."""
    total = counts.sum()
    if total == 0:
        return np.zeros(len(counts))
    return np.maximum(counts / total, PSI_EPSILON)


def psi(current: np.ndarray, baseline: np.ndarray) -> float:
    """The population stability index of two :func:`proportions` arrays."""
    return float(np.sum((current - baseline) * np.log(current / baseline)))


def iso_date(day: int) -> str:
    """A day number (days since 1970-01-01, UTC) as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")


# ------------------------------------------------------------------------ alarms


def as_mapping(spec: Any) -> Mapping[str, Any]:
    """The ``monitoring`` section as a plain mapping, from the spec's pydantic
    model or from the dict a handler's configuration carries (None: empty)."""
    if hasattr(spec, "model_dump"):
        return spec.model_dump(mode="json")
    return spec or {}


def evaluate_alarms(metrics: Mapping[str, Any], monitoring_spec: Any) -> list[dict[str, Any]]:
    """Every threshold of the spec that the metrics cross, per model version.

    Thresholds apply to each model version over the whole period (the
    ``by_version`` entries, including ``"all"``), which is what the handler
    publishes. A metric that is ``None`` crosses nothing. ``ks_alpha: 0``
    disables the KS check.
    """
    spec = as_mapping(monitoring_spec)
    closed = spec.get("closed_loop") or {}
    opened = spec.get("open_loop") or {}
    crossed: list[dict[str, Any]] = []

    def check(metric: str, value: Any, limit: Any, key: str, below: bool, **where: str) -> None:
        if value is None or limit is None:
            return
        if (value < limit) if below else (value > limit):
            context = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in where.items())
            crossed.append(
                {
                    "metric": metric,
                    "value": value,
                    "threshold": key,
                    "limit": limit,
                    **where,
                    "message": f"{metric} {value:.4g} {'<' if below else '>'} "
                    f"{key} {limit:g} ({context})",
                }
            )

    closed_metrics = metrics.get("closed_loop")
    if closed_metrics:
        for group in closed_metrics["by_version"]:
            version = group["model_version"]
            for metric, key in (
                ("precision", "min_precision"),
                ("recall", "min_recall"),
                ("auc", "min_auc"),
                ("label_coverage", "min_label_coverage"),
            ):
                check(metric, group.get(metric), closed.get(key), key, True, model_version=version)
    open_metrics = metrics.get("open_loop")
    if open_metrics:
        max_psi, alpha = opened.get("max_psi"), opened.get("ks_alpha")
        shares = opened.get("max_action_share") or {}
        for group in open_metrics["by_version"]:
            version = group["model_version"]
            if group.get("score"):
                check(
                    "score_psi",
                    group["score"]["psi"],
                    max_psi,
                    "max_psi",
                    False,
                    model_version=version,
                )
                check(
                    "score_ks_pvalue",
                    group["score"]["ks_pvalue"],
                    alpha,
                    "ks_alpha",
                    True,
                    model_version=version,
                )
            for name, drift in group.get("features", {}).items():
                check(
                    "feature_psi",
                    drift["psi"],
                    max_psi,
                    "max_psi",
                    False,
                    model_version=version,
                    feature=name,
                )
                check(
                    "feature_ks_pvalue",
                    drift["ks_pvalue"],
                    alpha,
                    "ks_alpha",
                    True,
                    model_version=version,
                    feature=name,
                )
            for action, limit in shares.items():
                check(
                    "action_share",
                    group.get("actions", {}).get(action),
                    limit,
                    f"max_action_share.{action}",
                    False,
                    model_version=version,
                    action=action,
                )
    return crossed
