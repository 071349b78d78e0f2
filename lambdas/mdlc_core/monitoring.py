"""Model monitoring metrics (MDLC stage 7), shared by the Lambda handler,
``mdlc monitor`` and the scale-out Processing job.

Closed loop
    Predictions (``event_id``, ``score``, ``prediction_ts`` and optionally
    ``model_version`` and ``action``) are joined with labels (``event_id``,
    ``label`` 0/1, ``label_ts``) by event id. Per day of ``prediction_ts``
    and per model version (plus the version ``"all"``): precision, recall
    and F1 at the spec's decision threshold, AUC (Mann-Whitney, ties get
    their average rank), label coverage and the confusion counts.

    - Precision, recall, F1 and AUC use only the predictions that have a
      label yet; label coverage says how many that is.
    - A metric that is undefined for the data (no labelled prediction, no
      positive label, nothing predicted positive, an empty day) is ``None``,
      never 0: a day without fraud is not a day of zero recall.
    - Several labels for one event id: the one with the latest ``label_ts``
      wins (a chargeback reversed later is the truth); equal ``label_ts``
      fall back to the later row. The extra rows are counted as
      ``duplicate_labels``.
    - A label whose event id matches no prediction is counted in
      ``unmatched_labels`` (distinct event ids), never silently dropped.
    - An event scored twice (e.g. batch and real time) gets its label on
      each prediction row.

Open loop
    Today's scores and each input feature against a baseline (the training
    snapshot): population stability index and the two-sample
    Kolmogorov-Smirnov test, plus the share of each action.

    - PSI bins are the baseline's quantiles (``bins`` equal-population bins;
      edges that coincide, e.g. for a discrete feature, are merged). A bin
      that is empty on either side gets the proportion ``PSI_EPSILON``
      instead of 0, so the logarithm stays finite and one empty bin costs
      a bounded, large-but-not-infinite amount.
    - KS p-values are those of ``scipy.stats.ks_2samp`` (two-sided, method
      ``auto``: exact up to 10,000 values a sample, asymptotic above), from
      :mod:`mdlc_core.kolmogorov`, without SciPy; the SQL engine shares it.

Everything is vectorized with numpy/pyarrow: a join is a pyarrow hash
lookup, every per-group count is a ``bincount``, AUC is one sort.
"""

from __future__ import annotations

import io
import math
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

from . import kolmogorov

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


def _text(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
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
            column = _parse_timestamps(column)
        else:
            raise MonitoringInputError(
                f"{what}: {name} must be an ISO-8601 timestamp, got type {kind}"
            )
        return column.cast(pa.int64()).to_numpy()
    except pa.ArrowException as error:
        raise MonitoringInputError(
            f"{what}: {name} is not an ISO-8601 timestamp: {error}"
        ) from error


def _parse_timestamps(column: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        return pc.cast(column, pa.timestamp("us"))
    except pa.ArrowInvalid:
        return pc.cast(column, pa.timestamp("us", tz="UTC"))


def _floats(column: pa.ChunkedArray, name: str, what: str) -> np.ndarray:
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
        event_id = _text(table, "event_id", what)
        _no_nulls(event_id, "event_id", what)
        score_column = table.column("score")
        _no_nulls(score_column, "score", what)
        score = _floats(score_column, "score", what)
        if np.isnan(score).any():
            raise MonitoringInputError(f"{what}: {int(np.isnan(score).sum())} score(s) are NaN")
        day = _timestamps_us(table, "prediction_ts", what) // _DAY_US
        names = table.column_names
        version_codes, versions = _codes(
            _text(table, "model_version", what) if "model_version" in names else None,
            len(score),
            UNKNOWN_VERSION,
        )
        action_codes, actions = (None, [])
        if "action" in names:
            action = _text(table, "action", what)
            action_codes, actions = _codes(action, len(score), "")
        features = {
            name: _floats(table.column(name), name, what)
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
        event_id = _text(table, "event_id", what)
        _no_nulls(event_id, "event_id", what)
        column = table.column("label")
        _no_nulls(column, "label", what)
        if pa.types.is_boolean(column.type):
            values = column.cast(pa.int8()).to_numpy()
        else:
            values = _floats(column, "label", what) if len(column) else np.zeros(0)
        bad = ~np.isin(values, (0, 1))
        if bad.any():
            examples = sorted({str(v) for v in np.asarray(values)[bad][:5]})
            raise MonitoringInputError(
                f"{what}: label must be 0 or 1; {int(bad.sum())} row(s) are not, e.g. {examples}"
            )
        label_ts = _timestamps_us(table, "label_ts", what)
        return cls(event_id, np.asarray(values, dtype=np.int8), label_ts)


# ---------------------------------------------------------------------- closed loop


def join_labels(predictions: Predictions, labels: Labels | None) -> tuple[np.ndarray, dict]:
    """Each prediction's label (-1 when none arrived yet) and label counts."""
    joined = np.full(len(predictions), -1, dtype=np.int8)
    if labels is None or len(labels) == 0:
        return joined, {"labels": 0, "duplicate_labels": 0, "unmatched_labels": 0}
    # Newest first, so the first occurrence index_in finds is the label that wins.
    order = np.lexsort((np.arange(len(labels)), labels.label_ts))[::-1]
    newest_first = labels.event_id.take(pa.array(order))
    position = pc.index_in(predictions.event_id, value_set=newest_first.combine_chunks())
    found = position.is_valid().to_numpy(zero_copy_only=False)
    if found.any():
        index = position.filter(position.is_valid()).to_numpy().astype(np.int64)
        joined[found] = labels.label[order][index]
    distinct = pc.unique(labels.event_id)
    matched = pc.sum(pc.is_in(distinct, value_set=predictions.event_id.combine_chunks())).as_py()
    return joined, {
        "labels": len(labels),
        "duplicate_labels": len(labels) - len(distinct),
        "unmatched_labels": len(distinct) - int(matched or 0),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def grouped_auc(codes: np.ndarray, scores: np.ndarray, labels: np.ndarray, groups: int) -> list:
    """AUC per group (Mann-Whitney U / (n_pos * n_neg)); None without both classes."""
    result: list[float | None] = [None] * groups
    if len(codes) == 0:
        return result
    # Quicksort by score, then a stable (radix) sort by the small integer
    # group code: the same order as lexsort, several times faster.
    order = np.argsort(scores)
    order = order[np.argsort(codes[order], kind="stable")]
    c, s, y = codes[order], scores[order], labels[order]
    m = len(c)
    new_run = np.empty(m, dtype=bool)
    new_run[0] = True
    new_run[1:] = (c[1:] != c[:-1]) | (s[1:] != s[:-1])
    run_start = np.flatnonzero(new_run)
    run_end = np.append(run_start[1:], m) - 1
    # Tied scores share the mean of the positions they span.
    mean_position = ((run_start + run_end) / 2.0)[np.cumsum(new_run) - 1]
    group_start = np.searchsorted(c, np.arange(groups), side="left")
    rank = mean_position - group_start[c] + 1.0
    positive = y == 1
    rank_sum = np.bincount(c[positive], weights=rank[positive], minlength=groups)
    n_pos = np.bincount(c[positive], minlength=groups).astype(np.float64)
    n_neg = np.bincount(c[~positive], minlength=groups).astype(np.float64)
    for g in np.flatnonzero((n_pos > 0) & (n_neg > 0)):
        result[g] = float((rank_sum[g] - n_pos[g] * (n_pos[g] + 1) / 2) / (n_pos[g] * n_neg[g]))
    return result


def _group_stats(
    codes: np.ndarray, groups: int, score: np.ndarray, label: np.ndarray, threshold: float
) -> list[dict[str, Any]]:
    predictions = np.bincount(codes, minlength=groups)
    has_label = label >= 0
    lc, ls, ly = codes[has_label], score[has_label], label[has_label]
    predicted = ls >= threshold
    actual = ly == 1

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(lc[mask], minlength=groups)

    tp, fp = count(predicted & actual), count(predicted & ~actual)
    fn, tn = count(~predicted & actual), count(~predicted & ~actual)
    auc = grouped_auc(lc, ls, ly, groups)
    stats = []
    for g in range(groups):
        labelled = int(tp[g] + fp[g] + fn[g] + tn[g])
        precision = _ratio(tp[g], tp[g] + fp[g])
        recall = _ratio(tp[g], tp[g] + fn[g])
        if precision is None or recall is None:
            f1 = None
        else:
            f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        stats.append(
            {
                "predictions": int(predictions[g]),
                "labelled": labelled,
                "positives": int(tp[g] + fn[g]),
                "predicted_positive": int(tp[g] + fp[g]),
                "tp": int(tp[g]),
                "fp": int(fp[g]),
                "fn": int(fn[g]),
                "tn": int(tn[g]),
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "auc": auc[g],
                "label_coverage": _ratio(labelled, predictions[g]),
            }
        )
    return stats


def _version_groups(predictions: Predictions) -> list[tuple[str, np.ndarray | None]]:
    """("all", None) then each version with its row mask (skipped if it is the only one)."""
    groups: list[tuple[str, np.ndarray | None]] = [(ALL_VERSIONS, None)]
    present = np.unique(predictions.version_codes) if len(predictions) else []
    if len(present) > 1 or (
        len(present) == 1 and predictions.versions[present[0]] != UNKNOWN_VERSION
    ):
        for code in present:
            groups.append((predictions.versions[code], predictions.version_codes == code))
    return groups


def closed_loop(
    predictions: Predictions, labels: Labels | None, decision_threshold: float
) -> dict[str, Any]:
    """Accuracy per model version (over all days) and per day and version."""
    joined, counts = join_labels(predictions, labels)
    score = predictions.score
    versions = predictions.versions
    n_versions = len(versions)
    # Version "all" is code n_versions, so per-version and all-version stats
    # come out of one bincount pass.
    version_codes = np.concatenate([predictions.version_codes, np.full(len(score), n_versions)])
    both_scores = np.concatenate([score, score])
    both_labels = np.concatenate([joined, joined])
    by_version_stats = _group_stats(
        version_codes, n_versions + 1, both_scores, both_labels, decision_threshold
    )
    present = set(np.unique(predictions.version_codes).tolist()) if len(score) else set()
    names = [*versions, ALL_VERSIONS]
    by_version = [
        {"model_version": names[g], **by_version_stats[g]}
        for g in [n_versions, *sorted(present)]
        if g == n_versions or names[g] != UNKNOWN_VERSION or len(present) > 1
    ]
    by_day: list[dict[str, Any]] = []
    if len(score):
        days, day_index = np.unique(predictions.day, return_inverse=True)
        day_codes = day_index.ravel() * (n_versions + 1) + version_codes.reshape(2, -1)
        day_codes = day_codes.ravel()
        day_stats = _group_stats(
            day_codes, len(days) * (n_versions + 1), both_scores, both_labels, decision_threshold
        )
        for d, day in enumerate(days):
            date = _date(int(day))
            for g in [n_versions, *sorted(present)]:
                if g != n_versions and names[g] == UNKNOWN_VERSION and len(present) == 1:
                    continue
                stats = day_stats[d * (n_versions + 1) + g]
                if stats["predictions"]:
                    by_day.append({"date": date, "model_version": names[g], **stats})
    return {
        "decision_threshold": decision_threshold,
        **counts,
        "matched_predictions": int((joined >= 0).sum()),
        "by_version": by_version,
        "by_day": by_day,
    }


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")


# ------------------------------------------------------------------------ open loop


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (the KS test's limit)."""
    if x <= 0:
        return 1.0
    if x < 1.18:
        # Jacobi-theta form: the alternating series converges too slowly here.
        y = math.exp(-(math.pi**2) / (8 * x * x))
        total = sum(y ** ((2 * j - 1) ** 2) for j in range(1, 8))
        return min(1.0, max(0.0, 1.0 - math.sqrt(2 * math.pi) / x * total))
    total = sum((-1) ** (j - 1) * math.exp(-2 * j * j * x * x) for j in range(1, 101))
    return min(1.0, max(0.0, 2.0 * total))


def ks_2samp(
    a: np.ndarray, b: np.ndarray, *, sorted_input: bool = False
) -> tuple[float | None, float | None]:
    """Two-sample KS statistic D = max |F_a - F_b| and its p-value, as SciPy's.

    The gap is counted in integers (:func:`mdlc_core.kolmogorov.max_gap`), so
    ties are handled and the statistic is exact; the p-value is
    :func:`mdlc_core.kolmogorov.ks_2samp_counts` (``scipy.stats.ks_2samp``,
    two-sided, ``method="auto"``). ``(None, None)`` when a sample is empty.
    """
    if len(a) == 0 or len(b) == 0:
        return None, None
    if not sorted_input:
        a, b = np.sort(a), np.sort(b)
    return kolmogorov.ks_2samp_counts(len(a), len(b), kolmogorov.max_gap(a, b))


class Reference:
    """A baseline column prepared once (sorted, quantile bin edges)."""

    def __init__(self, values: np.ndarray, bins: int) -> None:
        finite = values[~np.isnan(values)]
        self.sorted = np.sort(finite)
        self.missing = int(len(values) - len(finite))
        if len(self.sorted):
            quantiles = np.quantile(self.sorted, np.linspace(0, 1, bins + 1)[1:-1])
            self.edges = np.unique(quantiles)
        else:
            self.edges = np.zeros(0)
        counts = np.diff(
            np.concatenate(
                [[0], np.searchsorted(self.sorted, self.edges, side="left"), [len(self.sorted)]]
            )
        )
        self.proportions = _proportions(counts)

    def compare(self, values: np.ndarray) -> dict[str, Any]:
        finite = np.sort(values[~np.isnan(values)])
        result: dict[str, Any] = {
            "rows": len(finite),
            "missing": int(len(values) - len(finite)),
            "baseline_rows": len(self.sorted),
            "psi": None,
            "ks_statistic": None,
            "ks_pvalue": None,
        }
        if len(finite) == 0 or len(self.sorted) == 0:
            return result
        counts = np.diff(
            np.concatenate([[0], np.searchsorted(finite, self.edges, side="left"), [len(finite)]])
        )
        result["psi"] = _psi(_proportions(counts), self.proportions)
        result["ks_statistic"], result["ks_pvalue"] = ks_2samp(
            finite, self.sorted, sorted_input=True
        )
        return result


def _proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    if total == 0:
        return np.zeros(len(counts))
    return np.maximum(counts / total, PSI_EPSILON)


def _psi(current: np.ndarray, baseline: np.ndarray) -> float:
    return float(np.sum((current - baseline) * np.log(current / baseline)))


def psi(current: np.ndarray, baseline: np.ndarray, bins: int = 10) -> float | None:
    """Population stability index of ``current`` against ``baseline``.

    Bins: ``bins`` quantiles of the baseline (a value equal to an edge falls
    in the upper bin); empty bins count as ``PSI_EPSILON``.
    """
    reference = Reference(np.asarray(baseline, dtype=np.float64), bins)
    return reference.compare(np.asarray(current, dtype=np.float64))["psi"]


class _References:
    """The prepared columns of one baseline table (score, then each compared feature)."""

    def __init__(self, baseline: pa.Table | None, bins: int, predictions: Predictions,
                 feature_columns: Sequence[str]) -> None:
        self.rows = baseline.num_rows if baseline is not None else 0
        self.score: Reference | None = None
        self.features: dict[str, Reference] = {}
        self.not_compared: list[str] = []
        if baseline is None:
            self.not_compared = list(feature_columns)
            return
        names = baseline.column_names
        if SCORE_COLUMN in names:
            self.score = Reference(_floats(baseline.column(SCORE_COLUMN), "score", "baseline"),
                                   bins)
        for name in feature_columns:
            if name in names and name in predictions.features:
                values = _floats(baseline.column(name), name, "baseline")
                self.features[name] = Reference(values, bins)
            else:
                self.not_compared.append(name)


def open_loop(
    predictions: Predictions,
    baseline: pa.Table | None,
    bins: int = 10,
    feature_columns: Sequence[str] = (),
    *,
    baselines: Mapping[str, pa.Table | None] | None = None,
) -> dict[str, Any]:
    """Score and feature drift against the baseline, and action shares, per version.

    ``baseline`` is the reference of the ``all`` group and of every version
    ``baselines`` does not name; ``baselines`` maps a model version to the
    data it was trained on (None: that version has none, so its drift is not
    compared). Each group's entry says how many baseline rows it was
    compared with and which features were not compared.
    """
    prepared: dict[int, _References] = {}

    def references(table: pa.Table | None) -> _References:
        # One preparation per distinct table: versions often share one.
        key = id(table)
        if key not in prepared:
            prepared[key] = _References(table, bins, predictions, feature_columns)
        return prepared[key]

    overall = references(baseline)
    by_version = []
    for version, mask in _version_groups(predictions):
        chosen = baseline
        if baselines is not None and version != ALL_VERSIONS and version in baselines:
            chosen = baselines[version]
        refs = references(chosen)

        def rows(values: np.ndarray, mask: np.ndarray | None = mask) -> np.ndarray:
            return values if mask is None else values[mask]

        entry: dict[str, Any] = {
            "model_version": version,
            "rows": int(len(predictions) if mask is None else mask.sum()),
            "baseline_rows": refs.rows,
            "score": refs.score.compare(rows(predictions.score)) if refs.score else None,
            "features": {
                name: ref.compare(rows(predictions.features[name]))
                for name, ref in refs.features.items()
            },
            "features_not_compared": list(refs.not_compared),
            "actions": _action_shares(predictions, mask),
        }
        by_version.append(entry)
    return {
        "bins": bins,
        "baseline_rows": overall.rows,
        "baseline_has_score": overall.score is not None,
        "features_not_compared": list(overall.not_compared),
        "by_version": by_version,
    }


def _action_shares(predictions: Predictions, mask: np.ndarray | None) -> dict[str, float]:
    if predictions.action_codes is None:
        return {}
    codes = predictions.action_codes if mask is None else predictions.action_codes[mask]
    counts = np.bincount(codes, minlength=len(predictions.actions))
    # Rows without an action (encoded as "") are left out of the denominator.
    keep = [i for i, name in enumerate(predictions.actions) if name]
    total = sum(int(counts[i]) for i in keep)
    if not total:
        return {}
    return {predictions.actions[i]: int(counts[i]) / total for i in keep}


# ------------------------------------------------------------------------ together


def compute_metrics(
    predictions: Predictions,
    labels: Labels | None,
    baseline: pa.Table | None,
    monitoring_spec: Any,
    feature_columns: Sequence[str] = (),
) -> dict[str, Any]:
    """The report ``mdlc monitor`` prints and the handler publishes."""
    spec = _as_mapping(monitoring_spec)
    closed = spec.get("closed_loop") or {}
    opened = spec.get("open_loop") or {}
    return {
        "predictions": len(predictions),
        "dates": sorted({_date(int(d)) for d in np.unique(predictions.day)}),
        "closed_loop": (
            closed_loop(predictions, labels, float(closed.get("decision_threshold", 0.5)))
            if labels is not None
            else None
        ),
        "open_loop": open_loop(predictions, baseline, int(opened.get("bins", 10)), feature_columns),
    }


def _as_mapping(spec: Any) -> Mapping[str, Any]:
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
    spec = _as_mapping(monitoring_spec)
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
