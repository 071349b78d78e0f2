"""Model monitoring (stage 7) as SQL: the metrics engine, on DuckDB or Spark.

The monitoring report (closed loop, open loop, per model version), computed
by queries that sqlglot builds once and renders for DuckDB and Spark SQL::

    metrics = compute_metrics(predictions, labels, baseline, spec["monitoring"],
                              feature_columns)

It is the only engine: the NumPy one it was proven equal to, bit for bit,
was retired (issue #18), and the tests hold these queries to its recorded
answers (``tests/__snapshots__/``), to scikit-learn and to SciPy. The
semantics (joins, ``None`` where a metric is undefined, PSI bins, KS) are
in :mod:`mdlc_core.monitoring`'s docstring, with the definitions the engines
share.

The inputs are typed by the shared reader: :class:`~mdlc_core.monitoring.Predictions`
and :class:`~mdlc_core.monitoring.Labels` (one definition of parsing: ids as
text, timestamps to UTC days, labels 0/1, nulls), and the baseline (a table,
and per-version baselines, ``baselines=``: version -> its table or None).
:func:`prepare` turns them into the relations every engine scans
(:data:`PREDICTIONS`, :data:`LABELS`, one ``mdlc_baseline_<k>`` per distinct
baseline) and a :class:`Plan`; :meth:`Plan.metrics` runs the queries through
any engine's ``fetch`` (SQL text -> rows as dicts). Queries that depend on
the data (the version groups, the PSI edges, the sample sizes) are built once
those are known, as sqlglot trees with the values as literal nodes. A day
DuckDB read itself (:mod:`mdlc_core.sql.monitoring_files`, :func:`prepare_day`)
or Spark's executors read (:func:`prepare_frames`) is the same plan over
views of their tables; a baseline DuckDB holds is a view too.

What is SQL and what is Python:

- **Join.** The label of each event is its row with the latest
  ``label_ts`` (ties: the later row), by ``ROW_NUMBER()``; predictions join
  it. Label, duplicate and unmatched counts are aggregates and an anti-join.
- **Accuracy** (:func:`accuracy_query`): the labelled predictions counted
  per (day, score) and per score, one positive and one negative column per
  version group (``CASE WHEN model_version = ...``), so one sort serves
  every group; true and false positives are the counts at scores
  ``>= threshold``; a running ``SUM() OVER`` gives the negatives at or
  below each score, and the doubled Mann-Whitney ``U``,
  ``sum(pos * (2 * le - neg))``, is an exact integer (ties count half), so
  ``AUC = U2 / (2 P N)`` is rounded once (the exact rank sums of the
  retired NumPy engine, bit for bit). Precision, recall, F1 and coverage
  are :func:`~mdlc_core.monitoring.ratio` of the same integers.
- **PSI**: the baseline's order statistics at the quantile positions come
  from SQL (``ROW_NUMBER() OVER (ORDER BY value)``); the edges are
  interpolated in Python by ``numpy.quantile`` on the two neighbours, which
  is bit for bit what ``numpy.quantile`` of the whole
  column gives; bin counts are ``SUM(CASE ...)`` over the edges (literals).
- **KS** (:func:`ks_query`): the integer gap ``max |c1 * n2 - c2 * n1|``
  per version group from one sort of both samples (weights ``+n2`` and
  ``-n1``, a running sum with peers); statistic and p-value from
  :func:`mdlc_core.kolmogorov.ks_2samp_counts`, shared with Spark
  (SciPy's ``ks_2samp``, without SciPy).
- **Action shares**: counts per version and action.

Values are normalized with ``+ 0.0`` where they are grouped or ordered, so
``-0.0`` and ``0.0`` are one value, as they are to NumPy.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp

from .. import kolmogorov
from .. import monitoring as shared
from ..monitoring import ALL_VERSIONS, SCORE_COLUMN, UNKNOWN_VERSION, Labels, Predictions

PREDICTIONS = "mdlc_predictions"
LABELS = "mdlc_labels"
BASELINE = "mdlc_baseline"
ROW = "_mdlc_row"
DIALECTS = ("duckdb", "spark")

Fetch = Callable[[str], list[dict[str, Any]]]
Run = Callable[[exp.Expression], list[dict[str, Any]]]


# ----------------------------------------------------------------------------- relations


def relation_column(index: int) -> str:
    """The relations' name of the ``index``-th compared column (score, then features):
    internal names, so a feature called ``day`` or ``label`` collides with nothing."""
    return f"m{index}"


def _as_arrow(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.float64))


def predictions_relation(predictions: Predictions, columns: Sequence[str]) -> pa.Table:
    """The typed predictions every engine scans: one row per prediction row."""
    n = len(predictions)
    data: dict[str, pa.Array] = {
        "event_id": predictions.event_id.combine_chunks() if n else pa.array([], pa.string()),
        "score": _as_arrow(predictions.score),
        "day": pa.array(np.asarray(predictions.day, dtype=np.int64)),
        "model_version": pc.take(pa.array(predictions.versions, pa.string()),
                                 pa.array(predictions.version_codes, pa.int64())),
        ROW: pa.array(np.arange(n, dtype=np.int64)),
    }
    if predictions.action_codes is not None:
        data["action"] = pc.take(pa.array(predictions.actions, pa.string()),
                                 pa.array(predictions.action_codes, pa.int64()))
    for index, name in enumerate(columns):
        values = predictions.score if name == SCORE_COLUMN else predictions.features[name]
        data[relation_column(index)] = _as_arrow(values)
    return pa.table(data)


def labels_relation(labels: Labels | None) -> pa.Table:
    """The labels as they arrived, with their row position (the tie-break)."""
    if labels is None or len(labels) == 0:
        return pa.table({"event_id": pa.array([], pa.string()), "label": pa.array([], pa.int64()),
                         "label_ts": pa.array([], pa.int64()), ROW: pa.array([], pa.int64())})
    return pa.table({
        "event_id": labels.event_id.combine_chunks(),
        "label": pa.array(labels.label.astype(np.int64)),
        "label_ts": pa.array(np.asarray(labels.label_ts, dtype=np.int64)),
        ROW: pa.array(np.arange(len(labels), dtype=np.int64)),
    })


def baseline_relation(baseline: Any, compared: Sequence[str],
                      columns: Mapping[str, int]) -> pa.Table | View:
    """The baseline's compared columns as floats (the shared reader's conversion),
    named as in the predictions relation: an Arrow table of a ``pa.Table``, or a
    view of a baseline a DuckDB session holds (``monitoring_files.DayBaseline``)."""
    if not isinstance(baseline, pa.Table):
        return baseline.view({name: relation_column(columns[name]) for name in compared})
    data = {relation_column(columns[name]): _as_arrow(shared.floats(baseline.column(name), name,
                                                                "baseline"))
            for name in compared}
    return pa.table(data or {"_no_column": pa.array(np.zeros(baseline.num_rows))})


# ------------------------------------------------------------------------------- queries


@functools.lru_cache(maxsize=64)
def _parse(sql: str) -> exp.Expression:
    """The query's tree, parsed once per process: the text names every value the
    query depends on (literals included), so the same text is the same query.
    A tree takes a few hundred KiB: 64 hold a run's queries several times over
    (the data-independent ones hit every run, those with a day's sizes do not).

    The trees are shared (a warm Lambda reuses them, and their renderings, see
    :meth:`Plan.render`): copy one before changing it.
    """
    return sqlglot.parse_one(sql, read="duckdb")


def _rendered(query: exp.Expression, dialect: str) -> str:
    """``query.sql(dialect=...)``, kept in the (shared, cached) tree's ``meta``:
    sqlglot copies the whole tree to render it. Spark SQL has no
    ``MATERIALIZED`` common table expressions (DuckDB's hint, see
    :func:`ks_query`): they are rendered as plain ones."""
    key = f"mdlc_sql_{dialect}"
    text = query.meta.get(key)
    if text is None:
        tree = query.transform(_unmaterialized) if dialect == "spark" else query
        text = query.meta[key] = tree.sql(dialect=dialect)
    return text


def _unmaterialized(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.CTE) and node.args.get("materialized"):
        node = node.copy()
        node.set("materialized", None)
    return node


def clear_cache() -> None:
    """Forget the parsed queries and their renderings (to measure a cold run)."""
    _parse.cache_clear()


def _double(value: float) -> str:
    """An exact DOUBLE literal in both dialects (the shortest repr round-trips)."""
    if value != value:  # NaN
        text = "NaN"
    elif value in (float("inf"), float("-inf")):
        text = "Infinity" if value > 0 else "-Infinity"
    else:
        text = repr(float(value))
    return f"CAST('{text}' AS DOUBLE)"


def _finite(column: str) -> str:
    return f"{column} IS NOT NULL AND NOT ISNAN({column})"


def versions_query() -> exp.Expression:
    """Each version and its first row: the report's order (first appearance)."""
    return _parse(f"SELECT model_version, MIN({ROW}) AS first_row, COUNT(*) AS n "
                  f"FROM {PREDICTIONS} GROUP BY model_version")


def days_query() -> exp.Expression:
    return _parse(f"SELECT DISTINCT day FROM {PREDICTIONS}")


def label_counts_query() -> exp.Expression:
    """Label rows, distinct labelled ids, and those of them no prediction has."""
    return _parse(f"""
        SELECT (SELECT COUNT(*) FROM {LABELS}) AS labels, COUNT(*) AS distinct_ids,
               COALESCE(SUM(CASE WHEN p.event_id IS NULL THEN 1 ELSE 0 END), 0) AS unmatched
        FROM (SELECT DISTINCT event_id FROM {LABELS}) AS l
        LEFT JOIN (SELECT DISTINCT event_id FROM {PREDICTIONS}) AS p
          ON l.event_id = p.event_id""")


def _text(value: str) -> str:
    """A string literal (a model version, data): sqlglot escapes it for each dialect."""
    return exp.Literal.string(value).sql(dialect="duckdb")


def _in_group(version: str | None) -> str:
    """Whether a prediction row belongs to a version group (None: every version)."""
    return "TRUE" if version is None else f"model_version = {_text(version)}"


def prediction_counts_query() -> exp.Expression:
    """Predictions per day and version, per day, per version, and in all."""
    return _parse(f"""
        SELECT day, model_version AS version, COUNT(*) AS predictions FROM {PREDICTIONS}
        GROUP BY GROUPING SETS ((day, model_version), (day), (model_version), ())""")


def accuracy_query(threshold: float, groups: Sequence[str | None], *, one_day: bool = False
                   ) -> exp.Expression:
    """Per day (NULL: every day) and version group ``g<i>`` of ``groups``: positives
    ``p<i>``, negatives ``n<i>``, true and false positives at ``threshold``, and
    the doubled Mann-Whitney U ``u<i>`` (ties count half).

    The label of an event is its row with the latest ``label_ts`` (ties: the
    later row). Labelled predictions are counted per (day, score), one
    column pair per group, so ties are one row; a running sum over the
    scores in order (``ROWS``, one row a score) gives the negatives at or
    below each score, and ``pos * (2 * le - neg)`` is twice the pairs won
    plus the ties. One sort serves every version group. ``one_day``: the
    predictions are of one day, which is then also every day (one set, not two).
    """
    t = _double(threshold)
    pos = [f"SUM(CASE WHEN label = 1 AND {_in_group(v)} THEN 1 ELSE 0 END) AS p{i}"
           for i, v in enumerate(groups)]
    neg = [f"SUM(CASE WHEN label = 0 AND {_in_group(v)} THEN 1 ELSE 0 END) AS n{i}"
           for i, v in enumerate(groups)]
    running = [f"SUM(n{i}) OVER (PARTITION BY day ORDER BY score ROWS BETWEEN UNBOUNDED "
               f"PRECEDING AND CURRENT ROW) AS le{i}" for i in range(len(groups))]
    totals = []
    for i in range(len(groups)):
        totals += [f"SUM(p{i}) AS p{i}", f"SUM(n{i}) AS n{i}",
                   f"SUM(CASE WHEN score >= {t} THEN p{i} ELSE 0 END) AS tp{i}",
                   f"SUM(CASE WHEN score >= {t} THEN n{i} ELSE 0 END) AS fp{i}",
                   f"SUM(p{i} * (2 * le{i} - n{i})) AS u{i}"]
    pairs = [f"p{i}, n{i}" for i in range(len(groups))]
    sets = "day, score" if one_day else "GROUPING SETS ((day, score), (score))"
    return _parse(f"""
        WITH winners AS (
            SELECT event_id, label FROM (
                SELECT event_id, label, ROW_NUMBER() OVER (
                    PARTITION BY event_id ORDER BY label_ts DESC, {ROW} DESC) AS rank_
                FROM {LABELS}) AS ranked
            WHERE rank_ = 1),
        labelled AS (
            SELECT p.day, p.model_version, p.score + 0.0 AS score, w.label
            FROM {PREDICTIONS} AS p JOIN winners AS w ON p.event_id = w.event_id),
        per_score AS (
            SELECT day, score, {', '.join(pos + neg)}
            FROM labelled GROUP BY {sets}),
        running AS (SELECT day, score, {', '.join(pairs)}, {', '.join(running)}
                    FROM per_score)
        SELECT day, {', '.join(totals)} FROM running GROUP BY day""")


def baseline_counts_query(relation: str, indexes: Sequence[int]) -> exp.Expression:
    """Rows and finite values of each compared column of a baseline relation."""
    parts = ["COUNT(*) AS rows_"] + [
        f"COUNT(CASE WHEN {_finite(relation_column(i))} THEN 1 END) AS finite_{i}" for i in indexes]
    return _parse(f"SELECT {', '.join(parts)} FROM {relation}")


def order_statistics_query(relation: str, index: int, positions: Sequence[int]
                           ) -> exp.Expression:
    """The baseline column's values at 0-based ``positions`` of its sorted finite values."""
    c = relation_column(index)
    wanted = ", ".join(str(int(p)) for p in positions)
    return _parse(f"""
        SELECT position_, value FROM (
            SELECT {c} + 0.0 AS value, ROW_NUMBER() OVER (ORDER BY {c}) - 1 AS position_
            FROM {relation} WHERE {_finite(c)}) AS ranked
        WHERE position_ IN ({wanted})""")


def _bin(column: str, edges: Sequence[float]) -> str:
    """The PSI bin of a value: how many edges are <= it (a value on an edge: upper bin)."""
    if not len(edges):
        return "0"
    return " + ".join(f"CASE WHEN {column} >= {_double(e)} THEN 1 ELSE 0 END" for e in edges)


def baseline_bins_query(relation: str, index: int, edges: Sequence[float]) -> exp.Expression:
    c = relation_column(index)
    return _parse(f"SELECT {_bin(c, edges)} AS bin, COUNT(*) AS n FROM {relation} "
                  f"WHERE {_finite(c)} GROUP BY 1")


def current_bins_query(index: int, edges: Sequence[float]) -> exp.Expression:
    """Rows, finite values and bin counts per version (NULL: every version)."""
    c = relation_column(index)
    return _parse(f"""
        SELECT version, bin, COUNT(*) AS n FROM (
            SELECT model_version AS version, {_bin(c, edges)} AS bin
            FROM {PREDICTIONS} WHERE {_finite(c)}) AS binned
        GROUP BY GROUPING SETS ((version, bin), (bin))""")


def ks_query(relation: str, index: int, groups: Sequence[str | None], sizes: Sequence[int],
             baseline_size: int) -> exp.Expression:
    """``max |c1 * n2 - c2 * n1|`` per version group ``g<i>`` (``sizes``: its
    finite values ``n1``; ``baseline_size``: ``n2``), from one sort of both samples.

    A current value weighs ``+n2`` in the columns of its groups, a baseline
    value ``-n1`` in every column; the running sum over the values in order,
    peers included (``RANGE``: ties are read at their end), is
    ``c1 * n2 - c2 * n1``.

    The weighted values are a ``MATERIALIZED`` common table expression
    (``weights_<index>``: a part of :func:`union_query`'s has its own name):
    DuckDB's window operator does not spill when it reads a ``UNION ALL``
    straight from its two sides (Out of Memory at 3M rows under 100 MB, as of
    duckdb 2.0.1), while over a materialized one it does (30M rows in 226 MiB).
    Spark's SQL is rendered without the keyword (:func:`_rendered`).
    """
    c = relation_column(index)
    current = [f"CASE WHEN {_in_group(v)} THEN {int(baseline_size)} ELSE 0 END AS w{i}"
               for i, v in enumerate(groups)]
    baseline = [f"{-int(n)} AS w{i}" for i, n in enumerate(sizes)]
    running = [f"SUM(w{i}) OVER (ORDER BY value RANGE BETWEEN UNBOUNDED PRECEDING AND "
               f"CURRENT ROW) AS s{i}" for i in range(len(groups))]
    gaps = [f"MAX(ABS(s{i})) AS gap{i}" for i in range(len(groups))]
    weights = f"weights_{int(index)}"
    return _parse(f"""
        WITH {weights} AS MATERIALIZED (
            SELECT {c} + 0.0 AS value, {', '.join(current)}
            FROM {PREDICTIONS} WHERE {_finite(c)}
            UNION ALL
            SELECT {c} + 0.0 AS value, {', '.join(baseline)}
            FROM {relation} WHERE {_finite(c)})
        SELECT {', '.join(gaps)} FROM (
            SELECT {', '.join(running)} FROM {weights}) AS running""")


def union_query(parts: Sequence[tuple[int, exp.Expression]], columns: Sequence[str],
                constants: Sequence[str] = ()) -> exp.Expression:
    """The rows of several per-column queries in one query (one round trip, one
    plan), each tagged with its column's index as ``column_``; ``constants``
    are extra leading select items of each part (text with ``{i}`` for the
    part's index)."""
    selects = []
    for i, query in parts:
        extra = "".join(f"{item.format(i=i)}, " for item in constants)
        selects.append(f"SELECT {int(i)} AS column_, {extra}{', '.join(columns)} "
                       f"FROM ({_rendered(query, 'duckdb')}) AS part_{int(i)}")
    return _parse(" UNION ALL ".join(selects))


def actions_query() -> exp.Expression:
    """Rows per version (NULL: every version) and action, and each action's first row."""
    return _parse(f"""
        SELECT model_version AS version, action, COUNT(*) AS n, MIN({ROW}) AS first_row
        FROM {PREDICTIONS} GROUP BY GROUPING SETS ((model_version, action), (action))""")


# --------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Reference:
    """One baseline relation and what it compares."""

    #: The relation's name; None: no baseline (nothing is compared).
    relation: str | None
    rows: int
    #: Compared columns, by name, in report order (score first when present).
    compared: tuple[str, ...]
    has_score: bool
    not_compared: tuple[str, ...]


@dataclass
class Plan:
    """The relations to register and what to compute; :meth:`metrics` runs it."""

    #: Arrow tables to register, or views over tables DuckDB holds (:class:`View`).
    relations: dict[str, pa.Table | View]
    decision_threshold: float
    bins: int
    #: The reference of the ``all`` group and of every version not in ``by_version``.
    overall: Reference
    #: Per model version, its own reference (``baselines=``).
    by_version: dict[str, Reference]
    #: Column name -> its index in the relations (``m<index>``).
    columns: dict[str, int]
    has_labels: bool
    has_actions: bool
    rows: int
    #: Run each column's part of a :func:`union_query` as its own query: one
    #: column's sort or window at a time within a memory limit (DuckDB's day
    #: session, whose baselines may be larger than the limit), not every
    #: column's at once (what one round trip saves on Spark).
    column_at_a_time: bool = False

    def _unions(self, run: Run, parts: Sequence[tuple[int, exp.Expression]],
                columns: Sequence[str], constants: Sequence[str] = ()
                ) -> list[dict[str, Any]]:
        """The rows of :func:`union_query` of ``parts`` (see :attr:`column_at_a_time`)."""
        if not parts:
            return []
        if not self.column_at_a_time:
            return run(union_query(parts, columns, constants))
        return [row for part in parts for row in run(union_query([part], columns, constants))]

    def render(self, query: exp.Expression, dialect: str) -> str:
        """``query`` as SQL text of ``dialect`` (``duckdb`` or ``spark``), rendered
        once per tree and dialect (the tree keeps it in its ``meta``)."""
        if dialect not in DIALECTS:
            raise ValueError(f"dialect {dialect!r} is not one of {DIALECTS}")
        return _rendered(query, dialect)

    def metrics(self, fetch: Fetch, dialect: str) -> dict[str, Any]:
        """The whole report: ``predictions``, ``dates``, ``closed_loop`` (None
        without labels) and ``open_loop``."""
        run = self._runner(fetch, dialect)
        days = sorted(int(r["day"]) for r in run(days_query()))
        versions = self._versions(run)
        return {
            "predictions": self.rows,
            "dates": [shared.iso_date(d) for d in days],
            "closed_loop": (self.closed_loop(fetch, dialect, versions=versions)
                            if self.has_labels else None),
            "open_loop": self.open_loop(fetch, dialect, versions=versions),
        }

    def _runner(self, fetch: Fetch, dialect: str) -> Run:
        return lambda query: fetch(self.render(query, dialect))

    @staticmethod
    def _versions(run: Run) -> list[tuple[str, int]]:
        """(version, rows) in the report's order: first appearance."""
        rows = sorted(run(versions_query()), key=lambda r: int(r["first_row"]))
        return [(r["model_version"], int(r["n"])) for r in rows]

    def closed_loop(self, fetch: Fetch, dialect: str, *,
                    versions: list[tuple[str, int]] | None = None) -> dict[str, Any]:
        """The closed loop's report (``versions``:
        :meth:`_versions` when the caller has it already)."""
        run = self._runner(fetch, dialect)
        names = [v for v, _ in (versions if versions is not None else self._versions(run))]
        (counts,) = run(label_counts_query())
        predictions = {(r["day"], r["version"]): int(r["predictions"])
                       for r in run(prediction_counts_query())}
        listed: list[str | None] = [
            None, *(v for v in names if v != UNKNOWN_VERSION or len(names) > 1)]
        days = {k[0] for k in predictions if k[0] is not None}
        accuracy: dict[tuple[Any, str | None], dict[str, int]] = {}
        for r in run(accuracy_query(self.decision_threshold, listed, one_day=len(days) == 1)):
            for i, version in enumerate(listed):
                values = {k: int(r[f"{k}{i}"] or 0) for k in ("p", "n", "tp", "fp", "u")}
                accuracy[r["day"], version] = values
                if len(days) == 1:
                    accuracy[None, version] = values

        def stats(day: Any, version: str | None) -> dict[str, Any]:
            return _group_stats(predictions.get((day, version), 0), accuracy.get((day, version)))

        by_version = [{"model_version": ALL_VERSIONS if v is None else v, **stats(None, v)}
                      for v in listed]
        by_day = []
        for day in sorted({k[0] for k in predictions if k[0] is not None}):
            for version in listed:
                group = stats(day, version)
                if group["predictions"]:
                    by_day.append({"date": shared.iso_date(int(day)),
                                   "model_version": ALL_VERSIONS if version is None else version,
                                   **group})
        labels, distinct = int(counts["labels"]), int(counts["distinct_ids"])
        return {
            "decision_threshold": self.decision_threshold,
            "labels": labels,
            "duplicate_labels": labels - distinct,
            "unmatched_labels": int(counts["unmatched"]) if labels else 0,
            "matched_predictions": by_version[0]["labelled"],
            "by_version": by_version,
            "by_day": by_day,
        }

    def open_loop(self, fetch: Fetch, dialect: str, *,
                  versions: list[tuple[str, int]] | None = None) -> dict[str, Any]:
        """The open loop's report: drift per version group against its baseline."""
        run = self._runner(fetch, dialect)
        versions = versions if versions is not None else self._versions(run)
        group_rows: dict[str | None, int] = {None: self.rows, **dict(versions)}
        groups: list[str | None] = [None]
        if len(versions) > 1 or (len(versions) == 1 and versions[0][0] != UNKNOWN_VERSION):
            groups += [v for v, _ in versions]
        chosen = {g: self.overall if g is None else self.by_version.get(g, self.overall)
                  for g in groups}
        drift: dict[tuple[str | None, str], dict[str, Any]] = {}
        for reference in {id(r): r for r in chosen.values()}.values():
            mine = [g for g in groups if chosen[g] is reference]
            drift.update(self._drift(run, reference, mine, group_rows))
        shares = self._action_shares(run, groups)
        by_version = []
        for group in groups:
            reference = chosen[group]
            by_version.append({
                "model_version": ALL_VERSIONS if group is None else group,
                "rows": group_rows[group],
                "baseline_rows": reference.rows,
                "score": drift[group, SCORE_COLUMN] if reference.has_score else None,
                "features": {name: drift[group, name] for name in reference.compared
                             if not (reference.has_score and name == SCORE_COLUMN)},
                "features_not_compared": list(reference.not_compared),
                "actions": shares[group],
            })
        return {
            "bins": self.bins,
            "baseline_rows": self.overall.rows,
            "baseline_has_score": self.overall.has_score,
            "features_not_compared": list(self.overall.not_compared),
            "by_version": by_version,
        }

    def _drift(self, run: Run, reference: Reference, groups: Sequence[str | None],
               group_rows: Mapping[str | None, int]
               ) -> dict[tuple[str | None, str], dict[str, Any]]:
        """PSI and KS of every column ``reference`` compares, for ``groups``: four
        queries whatever the number of columns (counts, order statistics, bins,
        KS gaps), each a :func:`union_query` of the columns' queries (one
        query a column and kind with :attr:`column_at_a_time`)."""
        if reference.relation is None or not reference.compared:
            return {}
        relation = reference.relation
        indexes = [self.columns[name] for name in reference.compared]
        (counts,) = run(baseline_counts_query(relation, indexes))
        finite = {i: int(counts[f"finite_{i}"]) for i in indexes}
        edges = self._edges(run, relation, finite)
        baseline_counts = {i: np.zeros(len(edges[i]) + 1, dtype=np.int64) for i in indexes}
        current = {i: {g: np.zeros(len(edges[i]) + 1, dtype=np.int64) for g in groups}
                   for i in indexes}
        parts = [(i, baseline_bins_query(relation, i, edges[i])) for i in indexes if finite[i]]
        binned = [*self._unions(run, parts, ["bin", "n"],
                                ["'b' AS side_", "CAST(NULL AS VARCHAR) AS version"]),
                  *self._unions(run, [(i, current_bins_query(i, edges[i])) for i in indexes],
                                ["bin", "n"], ["'c' AS side_", "version"])]
        for r in binned:
            i = int(r["column_"])
            if r["side_"] == "b":
                baseline_counts[i][int(r["bin"])] = int(r["n"])
            elif r["version"] in current[i]:
                current[i][r["version"]][int(r["bin"])] = int(r["n"])
        sizes = {i: [int(current[i][g].sum()) for g in groups] for i in indexes}
        tested = [(i, ks_query(relation, i, groups, sizes[i], finite[i]))
                  for i in indexes if finite[i] and any(sizes[i])]
        gaps = {int(r["column_"]): r for r in self._unions(
            run, tested, [f"gap{k}" for k in range(len(groups))])}
        result = {}
        for name, index in zip(reference.compared, indexes, strict=True):
            baseline_proportions = shared.proportions(baseline_counts[index])
            for k, group in enumerate(groups):
                rows = sizes[index][k]
                entry: dict[str, Any] = {"rows": rows, "missing": group_rows[group] - rows,
                                         "baseline_rows": finite[index], "psi": None,
                                         "ks_statistic": None, "ks_pvalue": None}
                if rows and finite[index]:
                    entry["psi"] = shared.psi(shared.proportions(current[index][group]),
                                                 baseline_proportions)
                    entry["ks_statistic"], entry["ks_pvalue"] = kolmogorov.ks_2samp_counts(
                        rows, finite[index], int(gaps[index][f"gap{k}"]))
                result[group, name] = entry
        return result

    def _edges(self, run: Run, relation: str, finite: Mapping[int, int]
               ) -> dict[int, np.ndarray]:
        """Per column: ``numpy.unique(numpy.quantile(sorted_baseline, q))``, from two
        order statistics a q (one query for every column)."""
        q = np.linspace(0, 1, self.bins + 1)[1:-1]
        edges = {i: np.zeros(0) for i in finite}
        wanted = {}
        for i, n in finite.items():
            if n and len(q):
                virtual = (n - 1) * q  # numpy's 'linear' method
                low = np.floor(virtual).astype(np.int64)
                high = np.minimum(low + 1, n - 1)
                wanted[i] = (low, high, virtual - low)
        if not wanted:
            return edges
        parts = [(i, order_statistics_query(relation, i, sorted({*lo.tolist(), *hi.tolist()})))
                 for i, (lo, hi, _) in wanted.items()]
        values: dict[int, dict[int, float]] = {i: {} for i in wanted}
        for r in self._unions(run, parts, ["position_", "value"]):
            values[int(r["column_"])][int(r["position_"])] = float(r["value"])
        for i, (low, high, fraction) in wanted.items():
            at = values[i]
            quantiles = [
                # The same interpolation (numpy's _lerp) on the two neighbours.
                float(np.quantile(np.array([at[lo], at[hi]]), g)) if hi > lo
                else float(np.quantile(np.array([at[lo]]), p))  # one value (n = 1)
                for lo, hi, g, p in zip(low.tolist(), high.tolist(), fraction.tolist(),
                                        q.tolist(), strict=True)
            ]
            edges[i] = np.unique(np.array(quantiles, dtype=np.float64))
        return edges

    def _action_shares(self, run: Run, groups: Sequence[str | None]
                       ) -> dict[str | None, dict[str, float]]:
        if not self.has_actions:
            return {g: {} for g in groups}
        rows = run(actions_query())
        first = {r["action"]: int(r["first_row"]) for r in rows if r["version"] is None}
        names = [a for a in sorted(first, key=first.__getitem__) if a]
        counts = {(r["version"], r["action"]): int(r["n"]) for r in rows}
        shares = {}
        for group in groups:
            total = sum(counts.get((group, a), 0) for a in names)
            shares[group] = {a: counts.get((group, a), 0) / total for a in names} if total else {}
        return shares


def _group_stats(predictions: int, accuracy: Mapping[str, int] | None) -> dict[str, Any]:
    """One group's entry of the closed loop."""
    a = accuracy or {}
    positives, negatives = a.get("p", 0), a.get("n", 0)
    tp, fp = a.get("tp", 0), a.get("fp", 0)
    fn, tn = positives - tp, negatives - fp
    labelled = positives + negatives
    precision = shared.ratio(tp, tp + fp)
    recall = shared.ratio(tp, tp + fn)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    # U2 / (2 P N) is exact rational arithmetic rounded once, as the retired
    # engine's (exact, half-integer) rank sums were.
    auc = a["u"] / (2 * positives * negatives) if positives and negatives else None
    return {
        "predictions": predictions,
        "labelled": labelled,
        "positives": positives,
        "predicted_positive": tp + fp,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auc": auc,
        "label_coverage": shared.ratio(labelled, predictions),
    }


def _reference(baseline: Any, relation: str, present: Collection[str],
               feature_columns: Sequence[str]) -> Reference:
    if baseline is None:
        return Reference(None, 0, (), False, tuple(feature_columns))
    names = baseline.column_names
    has_score = SCORE_COLUMN in names
    compared = [SCORE_COLUMN] if has_score else []
    not_compared = []
    for name in feature_columns:
        if name in names and name in present:
            compared.append(name)
        else:
            not_compared.append(name)
    return Reference(relation, baseline.num_rows, tuple(compared), has_score,
                     tuple(not_compared))


def prepare(predictions: Predictions, labels: Labels | None, baseline: pa.Table | None,
            monitoring_spec: Any = None, feature_columns: Sequence[str] = (), *,
            baselines: Mapping[str, pa.Table | None] | None = None,
            decision_threshold: float | None = None, bins: int | None = None) -> Plan:
    """The relations and settings of one monitoring run.

    ``monitoring_spec``: the spec's ``monitoring`` section (a mapping or the
    pydantic model); ``baseline`` the reference of the ``all`` group and of
    every version ``baselines`` does not name, as in
    in the open loop. Each distinct baseline table is
    one relation, ``mdlc_baseline_<k>``.
    """
    return _assemble(
        present=set(predictions.features), rows=len(predictions),
        has_actions=predictions.action_codes is not None, has_labels=labels is not None,
        predictions=lambda names: predictions_relation(predictions, names),
        labels=labels_relation(labels), baseline=baseline, monitoring_spec=monitoring_spec,
        feature_columns=feature_columns, baselines=baselines,
        decision_threshold=decision_threshold, bins=bins)


def prepare_day(predictions: Any, labels: Any, baseline: Any,
                monitoring_spec: Any = None, feature_columns: Sequence[str] = (), *,
                baselines: Mapping[str, Any] | None = None,
                decision_threshold: float | None = None, bins: int | None = None) -> Plan:
    """:func:`prepare` of a day DuckDB read itself: ``predictions`` a
    :class:`~mdlc_core.sql.monitoring_files.DayPredictions`, ``labels`` its
    ``DayLabels`` or None. The predictions and labels relations are views of
    the session's tables (:class:`View`), as are baselines it read
    (``DayBaseline``); an Arrow baseline is registered as it is."""
    empty_labels = labels_relation(None)
    return _assemble(
        present=set(predictions.features), rows=len(predictions),
        has_actions=predictions.has_actions, has_labels=labels is not None,
        predictions=predictions.view,
        labels=labels.view() if labels is not None else empty_labels, baseline=baseline,
        monitoring_spec=monitoring_spec, feature_columns=feature_columns, baselines=baselines,
        decision_threshold=decision_threshold, bins=bins)


def _assemble(*, present: Collection[str], rows: int, has_actions: bool, has_labels: bool,
              predictions: Callable[[list[str]], pa.Table | View],
              labels: pa.Table | View, baseline: Any, monitoring_spec: Any,
              feature_columns: Sequence[str],
              baselines: Mapping[str, Any] | None,
              decision_threshold: float | None, bins: int | None) -> Plan:
    """The plan of :func:`prepare` and :func:`prepare_day`: ``present`` the
    features the predictions have, ``predictions(names)`` their relation with
    the compared columns ``names`` as ``m<i>``."""
    spec = shared.as_mapping(monitoring_spec)
    closed = spec.get("closed_loop") or {}
    opened = spec.get("open_loop") or {}
    threshold = float(decision_threshold if decision_threshold is not None
                      else closed.get("decision_threshold", 0.5))
    bin_count = int(bins if bins is not None else opened.get("bins", 10))
    tables: dict[int, tuple[str, pa.Table]] = {}

    def reference(table: Any) -> Reference:
        if table is not None and id(table) not in tables:
            tables[id(table)] = (f"{BASELINE}_{len(tables)}", table)
        relation = tables[id(table)][0] if table is not None else ""
        return _reference(table, relation, present, feature_columns)

    overall = reference(baseline)
    by_version = {version: reference(table) for version, table in (baselines or {}).items()}
    names = [SCORE_COLUMN] if any(
        r.has_score for r in (overall, *by_version.values())) else []
    names += [n for n in feature_columns
              if any(n in r.compared for r in (overall, *by_version.values()))]
    columns = {name: index for index, name in enumerate(names)}
    relations: dict[str, pa.Table | View] = {PREDICTIONS: predictions(names), LABELS: labels}
    for relation, table in tables.values():
        compared = next(r.compared for r in (overall, *by_version.values())
                        if r.relation == relation)
        relations[relation] = baseline_relation(table, compared, columns)
    return Plan(relations=relations, decision_threshold=threshold, bins=bin_count,
                overall=overall, by_version=by_version, columns=columns,
                has_labels=has_labels, has_actions=has_actions, rows=rows)


def prepare_frames(predictions: Any, labels: Any, baseline: pa.Table | None,
                   monitoring_spec: Any = None, feature_columns: Sequence[str] = (), *,
                   baselines: Mapping[str, pa.Table | None] | None = None,
                   decision_threshold: float | None = None, bins: int | None = None) -> Plan:
    """:func:`prepare` of a day Spark's executors read (the monitoring job of
    ``monitoring.runner: spark``, :mod:`mdlc_core.spark_monitoring`):
    ``predictions`` and ``labels`` (or None) are that module's
    ``ExecutorPredictions``/``ExecutorLabels``, whose ``view`` is a Spark
    DataFrame of the same columns as :func:`predictions_relation` and
    :func:`labels_relation` give (so no row of the day is on the driver);
    the baselines, small, stay Arrow. Only :func:`spark_run` runs it."""
    return prepare_day(predictions, labels, baseline, monitoring_spec, feature_columns,
                       baselines=baselines, decision_threshold=decision_threshold, bins=bins)


@dataclass(frozen=True)
class View:
    """A relation that is a query over tables one DuckDB connection holds (a
    day it read from its files, :mod:`mdlc_core.sql.monitoring_files`)."""

    sql: str


def register(con: Any, relations: Mapping[str, pa.Table | View]) -> None:
    """Make ``relations`` visible to ``con`` under their names."""
    for name, relation in relations.items():
        if isinstance(relation, View):
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {relation.sql}")
        else:
            con.register(name, relation)


def unregister(con: Any, relations: Mapping[str, pa.Table | View]) -> None:
    """Undo :func:`register` (the session's tables stay)."""
    for name, relation in relations.items():
        if isinstance(relation, View):
            con.execute(f"DROP VIEW IF EXISTS {name}")
        else:
            con.unregister(name)


# ------------------------------------------------------------------------------ DuckDB


def _duckdb_run(plan: Plan, work: Callable[[Fetch], Any], *, memory_limit: str,
                temp_directory: str | os.PathLike[str] | None, threads: int | None) -> Any:
    from . import quality as sql_quality  # connect(): the shared DuckDB settings

    with tempfile.TemporaryDirectory(prefix="mdlc-duckdb-") as scratch:
        spill = Path(temp_directory) if temp_directory is not None else Path(scratch)
        with sql_quality.connect(memory_limit=memory_limit, temp_directory=spill,
                                 threads=threads) as con:
            register(con, plan.relations)

            def fetch(sql: str) -> list[dict[str, Any]]:
                cursor = con.execute(sql)
                names = [d[0] for d in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

            return work(fetch)


# ------------------------------------------------------------------------------- Spark


def spark_run(plan: Plan, work: Callable[[Fetch], Any], spark: Any) -> Any:
    """``work(fetch)`` with the plan's relations as temporary views of ``spark``.

    The Spark-dialect counterpart of :func:`_duckdb_run`: each relation becomes
    a view named after it (local to the session, dropped afterwards, so a run
    leaves nothing behind in a shared session), with the runner's session
    settings (``mdlc_core.spark_job.SESSION_CONF``); ``fetch`` collects a
    query's rows to the driver as dicts. The queries' results are small (counts
    per version, order statistics); the joins and sorts run on the executors.

    A relation is an Arrow table (:func:`prepare`: made a frame from the
    driver's memory) or already a Spark DataFrame (:func:`prepare_frames`: the
    executors' rows, used as they are); a DuckDB :class:`View` is refused.
    """
    from ..spark_job import SESSION_CONF, arrow_frame  # lazily: spark_job imports its kinds

    for key, value in SESSION_CONF.items():
        spark.conf.set(key, value)
    views = []
    try:
        for name, relation in plan.relations.items():
            if isinstance(relation, View):
                raise TypeError(f"relation {name} is a view of a DuckDB session; Spark takes "
                                "the Arrow relations of prepare() or the DataFrames of "
                                "prepare_frames()")
            frame = relation if _is_frame(relation) else arrow_frame(spark, relation)
            frame.createOrReplaceTempView(name)
            views.append(name)

        def fetch(sql: str) -> list[dict[str, Any]]:
            return [row.asDict() for row in spark.sql(sql).collect()]

        return work(fetch)
    finally:
        for name in views:
            spark.catalog.dropTempView(name)


def _is_frame(relation: Any) -> bool:
    """Whether ``relation`` is a Spark DataFrame (classic or Connect), without
    importing PySpark where it is not."""
    return not isinstance(relation, pa.Table) and hasattr(relation, "createOrReplaceTempView")


def compute_metrics(predictions: Predictions, labels: Labels | None, baseline: pa.Table | None,
                    monitoring_spec: Any, feature_columns: Sequence[str] = (), *,
                    baselines: Mapping[str, pa.Table | None] | None = None,
                    memory_limit: str = "1GB", temp_directory: str | None = None,
                    threads: int | None = None) -> dict[str, Any]:
    """The whole report (:meth:`Plan.metrics`), computed by DuckDB."""
    plan = prepare(predictions, labels, baseline, monitoring_spec, feature_columns,
                   baselines=baselines)
    return _duckdb_run(plan, lambda fetch: plan.metrics(fetch, "duckdb"),
                       memory_limit=memory_limit, temp_directory=temp_directory, threads=threads)


def closed_loop(predictions: Predictions, labels: Labels | None, decision_threshold: float, *,
                memory_limit: str = "1GB", threads: int | None = None) -> dict[str, Any]:
    """The closed loop alone (:meth:`Plan.closed_loop`), computed by DuckDB."""
    plan = prepare(predictions, labels, None, decision_threshold=decision_threshold)
    return _duckdb_run(plan, lambda fetch: plan.closed_loop(fetch, "duckdb"),
                       memory_limit=memory_limit, temp_directory=None, threads=threads)


def open_loop(predictions: Predictions, baseline: pa.Table | None, bins: int = 10,
              feature_columns: Sequence[str] = (), *,
              baselines: Mapping[str, pa.Table | None] | None = None,
              memory_limit: str = "1GB", threads: int | None = None) -> dict[str, Any]:
    """The open loop alone (:meth:`Plan.open_loop`), computed by DuckDB."""
    plan = prepare(predictions, None, baseline, None, feature_columns, baselines=baselines,
                   bins=bins)
    return _duckdb_run(plan, lambda fetch: plan.open_loop(fetch, "duckdb"),
                       memory_limit=memory_limit, temp_directory=None, threads=threads)


__all__ = ["BASELINE", "DIALECTS", "LABELS", "PREDICTIONS", "Plan", "Reference", "View",
           "clear_cache", "closed_loop", "compute_metrics", "open_loop", "prepare", "prepare_day",
           "prepare_frames",
           "register", "spark_run", "union_query", "unregister"]
