"""A starting ``quality.rules`` list from a reference snapshot (``mdlc baseline``).

Per-column statistics of one snapshot, read by the shared reader
(:mod:`mdlc_core.tabular`), and the rules they suggest, to paste into the
spec and edit. Statistics, not a check: the rules are then evaluated by
the SQL engines like any other (:mod:`mdlc_core.sql.quality`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .quality import json_value
from .tabular import DataError


def suggest_baseline(table: pa.Table, spec_config: Mapping[str, Any]) -> dict[str, Any]:
    """Per-column statistics of a reference snapshot and rules inferred from them.

    The rules are a starting point to paste into ``quality.rules`` and edit:
    completeness at the observed share (rounded down), the declared type,
    allowed values for low-cardinality columns, ranges rounded outwards,
    uniqueness of the event id when it holds, a row-count band around the
    observed count, freshness for the timestamp column, and the spec's
    existing consistency rules (one snapshot cannot suggest those).
    """
    data = spec_config["data"]
    rows = table.num_rows
    statistics: dict[str, Any] = {}
    rules: list[dict[str, Any]] = []
    for spec_column in data["columns"]:
        name, type_name = spec_column["name"], spec_column["type"]
        if name not in table.column_names:
            raise DataError(f"the data has no column {name!r}")
        column = table.column(name)
        stats = _column_statistics(column, rows)
        statistics[name] = {"type": type_name, **stats}
        share = 1.0 - stats["null_share"]
        rules.append({"kind": "completeness", "column": name, "min": math.floor(share * 100) / 100})
        rules.append({"kind": "type", "column": name, "type": type_name})
        roles = (data["event_id"], data["entity_key"], data["timestamp"])
        if name in roles:
            continue
        # Few values that repeat look like a category; otherwise a numeric range.
        repeats = 0 < stats["distinct"] <= min(10, (rows - column.null_count) // 2)
        if type_name in ("string", "int", "bool") and repeats:
            values = sorted(v["value"] for v in stats["top_values"])
            rules.append({"kind": "allowed_values", "column": name, "values": values})
        elif type_name in ("int", "float") and stats.get("min") is not None:
            low, high = stats["min"], stats["max"]
            rules.append({
                "kind": "range", "column": name,
                "min": 0 if low >= 0 else -_nice_ceil(-low),
                "max": _nice_ceil(high) if high > 0 else 0,
            })
    event_id = data["event_id"]
    if statistics[event_id]["distinct"] == rows - table.column(event_id).null_count:
        rules.append({"kind": "unique", "columns": [event_id]})
    rules.append({"kind": "row_count", "min": rows // 2, "max": max(rows * 2, 1)})
    # A daily snapshot plus half a day of slack for late files.
    rules.append({"kind": "freshness", "column": data["timestamp"], "max_age_hours": 36})
    existing = spec_config.get("quality", {}).get("rules", [])
    rules += [
        {k: v for k, v in rule.items() if v is not None}
        for rule in existing if rule["kind"] == "consistency"
    ]
    return {"rows": rows, "statistics": statistics, "quality": {"rules": rules}}


def _column_statistics(column: pa.ChunkedArray, rows: int) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "null_share": round(column.null_count / rows, 6) if rows else 0.0,
        "distinct": len(pc.unique(column.drop_null())),
    }
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        extremes = pc.min_max(column).as_py()
        mean = pc.mean(column).as_py()
        stats.update(
            min=json_value(extremes["min"]), max=json_value(extremes["max"]),
            mean=None if mean is None else round(mean, 6),
        )
    elif pa.types.is_timestamp(column.type):
        extremes = pc.min_max(column).as_py()
        stats.update(min=json_value(extremes["min"]), max=json_value(extremes["max"]))
    if not pa.types.is_floating(column.type) and not pa.types.is_timestamp(column.type):
        counts = pc.value_counts(column.drop_null())
        top = counts.take(pc.array_sort_indices(counts.field("counts"), order="descending")[:5])
        stats["top_values"] = [
            {"value": json_value(v), "count": c}
            for v, c in zip(top.field("values").to_pylist(), top.field("counts").to_pylist(),
                            strict=True)
        ]
    return stats


def _nice_ceil(value: float) -> float | int:
    """Round up to two significant digits: 48712.3 -> 49000, 0.734 -> 0.74."""
    if value <= 0:
        return 0
    scale = 10 ** (math.floor(math.log10(value)) - 1)
    rounded = math.ceil(value / scale) * scale
    return int(rounded) if scale >= 1 else round(rounded, 10)
