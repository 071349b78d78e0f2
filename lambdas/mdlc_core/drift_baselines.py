"""Which training data each model version's predictions are compared with (open loop).

A model version's drift baseline is the features its own training job was
trained on. The training input step writes them once per job
(``baselines/<model>/jobs/<job>/features.parquet``, ``mdlc_core.layout``) and
the Register step records their URI in the version's model package, under
``CustomerMetadataProperties["mdlc:drift-baseline"]``. Every prediction names
the package that scored it (``model_version``: the stream and batch paths
write the package ARN), so the monitor describes each package it meets in a
day's predictions, once per run, and reads that package's baseline.

So a re-training that was rejected, or approved but not deployed yet, never
moves the reference of the version in service; and on the day a blue/green
deployment shifts traffic, each version is compared with its own training
data. The ``all`` group (the one alarms watch) is compared with the mixture
the day's traffic would show without drift: each version's baseline in
proportion to that version's share of the predictions (evenly spaced rows of
each, so the mixture is deterministic), on the columns they all have. With
one version that is simply its baseline. The mixture is chosen once
(:func:`mixture_plan`) and made by the reader that holds the tables: pyarrow
for the Spark runner's driver (:func:`mixture`), DuckDB for the other runners,
which read every baseline into DuckDB's tables, within its memory limit
(``mdlc_core.sql.monitoring_files.DaySession.mixture``, the same rows).

Fallbacks, each reported in ``open_loop.baselines``:

- a version that is not a package ARN (a decision whose serving lookup
  failed names the variant) or whose package has no ``mdlc:drift-baseline``
  (registered before per-version baselines) is compared with the one
  baseline every run used to replace, ``baselines/<model>/features.parquet``,
  if it is still there; else its drift is not compared;
- a package that no longer exists is logged and treated the same way.

A failed describe call for any other reason (access denied, throttling after
the client's retries) fails the run: drift silently not compared would hide
exactly the alarm this stage exists for.

Written here, not taken from the SageMaker SDK: the SDK's ``DriftCheckBaselines``
hold Model Monitor's statistics and constraints JSON, not a table of features.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

logger = logging.getLogger("mdlc.drift_baselines")

#: The model package property that names a version's drift baseline (an ``s3://`` URI).
DRIFT_BASELINE_PROPERTY = "mdlc:drift-baseline"


class BaselineTable(Protocol):
    """What this module needs of a baseline: a ``pyarrow.Table``, or a table a
    DuckDB session holds (``mdlc_core.sql.monitoring_files.DayBaseline``)."""

    @property
    def num_rows(self) -> int: ...

    @property
    def column_names(self) -> list[str]: ...


#: Describe errors that mean "this package is gone", not "we may not look".
_GONE = {"ValidationException", "ResourceNotFound", "ResourceNotFoundException"}


def is_package_arn(version: str) -> bool:
    """Whether ``version`` names a model package (``arn:...:model-package/<group>/<n>``)."""
    return version.startswith("arn:") and ":model-package/" in version


def split_uri(uri: str, default_bucket: str) -> tuple[str, str]:
    """``s3://bucket/key`` or a bare key (in ``default_bucket``) as (bucket, key)."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        if not bucket or not key:
            raise ValueError(f"baseline URI {uri!r} is not s3://bucket/key")
        return bucket, key
    return default_bucket, uri


@dataclass(frozen=True)
class Baseline:
    """One version's reference: the table, where it came from and why."""

    table: BaselineTable | None
    uri: str | None
    #: ``model-package``, ``legacy`` (the one file older runs replaced) or ``none``
    source: str
    #: the package's ModelPackageVersion, when the version is a package
    package_version: int | None = None

    def describe(self, version: str) -> dict[str, Any]:
        return {
            "model_version": version,
            "source": self.source,
            "uri": self.uri,
            "rows": self.table.num_rows if self.table is not None else 0,
            "package_version": self.package_version,
        }


class VersionBaselines:
    """Finds and reads each version's baseline, each package and object once per run.

    ``read(bucket, key)`` returns the table, or None when the object does not
    exist; ``describe(arn)`` is SageMaker's DescribeModelPackage; ``mix``
    makes the ``all`` group's mixture of the tables ``read`` returns (default
    :func:`mixture`, for pyarrow tables).
    """

    def __init__(
        self,
        *,
        read: Callable[[str, str], BaselineTable | None],
        describe: Callable[[str], dict[str, Any]],
        default_bucket: str,
        legacy_key: str | None,
        mix: Callable[[list[tuple[Any, int]]], Any] | None = None,
    ) -> None:
        self._read = read
        self._describe = describe
        self._mix = mix or mixture
        self.default_bucket = default_bucket
        self.legacy_key = legacy_key
        self._tables: dict[tuple[str, str], BaselineTable | None] = {}
        self._found: dict[str, Baseline] = {}

    def table(self, bucket: str, key: str) -> BaselineTable | None:
        if (bucket, key) not in self._tables:
            self._tables[(bucket, key)] = self._read(bucket, key)
        return self._tables[(bucket, key)]

    def legacy(self) -> Baseline:
        if not self.legacy_key:
            return Baseline(None, None, "none")
        table = self.table(self.default_bucket, self.legacy_key)
        if table is None:
            return Baseline(None, None, "none")
        return Baseline(table, f"s3://{self.default_bucket}/{self.legacy_key}", "legacy")

    def for_version(self, version: str) -> Baseline:
        if version not in self._found:
            self._found[version] = self._lookup(version)
        return self._found[version]

    def _lookup(self, version: str) -> Baseline:
        if not is_package_arn(version):
            return self.legacy()
        try:
            package = self._describe(version)
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            if code not in _GONE:
                raise
            logger.warning("model package %s not found (%s); its drift is compared with the "
                           "legacy baseline if any", version, code)
            return self.legacy()
        number = package.get("ModelPackageVersion")
        number = int(number) if number is not None else None
        uri = (package.get("CustomerMetadataProperties") or {}).get(DRIFT_BASELINE_PROPERTY)
        if not uri:
            fallback = self.legacy()
            return Baseline(fallback.table, fallback.uri, fallback.source, number)
        bucket, key = split_uri(uri, self.default_bucket)
        table = self.table(bucket, key)
        if table is None:
            logger.warning("the drift baseline %s of %s is missing; its drift is not compared",
                           uri, version)
            return Baseline(None, uri, "none", number)
        return Baseline(table, uri, "model-package", number)

    def resolve(self, counts: Mapping[str, int]) -> tuple[dict[str, Any], Any,
                                                          list[dict[str, Any]]]:
        """Per version its table, the ``all`` group's table, and the report's entries.

        ``counts``: each version's number of predictions that day.
        """
        found = {version: self.for_version(version) for version in counts}
        entries = [b.describe(v) for v, b in found.items()]
        weighted = [(found[v].table, n) for v, n in counts.items()
                    if found[v].table is not None and n > 0]
        overall = self._mix(weighted)
        if len({id(t) for t, _ in weighted}) > 1 and overall is not None:
            entries.append({"model_version": "all", "source": "mixture",
                            "uri": sorted({e["uri"] for e in entries
                                           if e["rows"] and e["uri"]}),
                            "rows": overall.num_rows, "package_version": None})
        return {v: b.table for v, b in found.items()}, overall, entries


def mixture_plan(weighted: Sequence[tuple[Any, int]]
                 ) -> tuple[list[str], list[tuple[Any, int]]] | None:
    """How the tables are mixed in proportion to their weights: the common
    columns (in the first table's order) and how many rows of each, or None
    when there is one table (the mixture is that table).

    The largest mixture the tables allow: ``total = min(rows / share)``, and
    ``round(share * total)`` rows of each (at least one), evenly spaced
    (:func:`positions`). Every reader makes the mixture from this plan.
    """
    tables = list(dict.fromkeys(id(t) for t, _ in weighted))
    if len(tables) == 1:
        return None
    weight = sum(n for _, n in weighted)
    common = [c for c in weighted[0][0].column_names
              if all(c in t.column_names for t, _ in weighted)]
    total = min(t.num_rows * weight / n for t, n in weighted)
    return common, [(table, min(table.num_rows, max(1, round(total * n / weight))))
                    for table, n in weighted]


def positions(rows: int, take: int) -> np.ndarray:
    """The 0-based rows of a table of ``rows`` that the mixture takes ``take`` of:
    evenly spaced, first and last included (deterministic, and as
    representative as the table's own order). DuckDB's mixture computes the
    same integers in SQL (``DaySession.mixture``; a test holds them equal)."""
    return np.linspace(0, rows - 1, take).round().astype(np.int64)


def mixed(weighted: Sequence[tuple[Any, int]],
          take: Callable[[list[str], list[tuple[Any, int]]], Any]) -> Any:
    """The mixture of ``weighted``: None for no tables, the table itself for
    one, else what ``take`` (the reader's, given :func:`mixture_plan`'s common
    columns and rows per table) makes of the plan."""
    if not weighted:
        return None
    plan = mixture_plan(weighted)
    if plan is None:
        return weighted[0][0]
    return take(*plan)


def mixture(weighted: list[tuple[pa.Table, int]]) -> pa.Table | None:
    """The pyarrow tables mixed in proportion to their weights, on their common
    columns (:func:`mixed`)."""
    return mixed(weighted, lambda common, parts: pa.concat_tables(
        [table.select(common).take(pa.array(positions(table.num_rows, take)))
         for table, take in parts]))


__all__ = ["DRIFT_BASELINE_PROPERTY", "Baseline", "BaselineTable", "VersionBaselines",
           "is_package_arn", "mixed", "mixture", "mixture_plan", "positions", "split_uri"]
