"""``mdlc monitor SPEC --predictions FILE [--labels FILE] [--baseline FILE]``:
the model monitoring metrics of the deployed handler, computed locally.

Files are CSV or Parquet (or a directory of them, such as the predictions
prefix ``predictions/<model>/`` of a simulation's ``--out``):

  predictions  event_id, score (0-1), prediction_ts; optionally model_version,
               action and the model's feature columns
  labels       event_id, label (0 or 1), label_ts (when the label arrived; the
               newest label of an event wins)
  baseline     a score column and/or the model's feature columns

The spec's own names work too: its data.event_id column for event_id (e.g.
order_id), data.timestamp for prediction_ts and label_ts (order_ts) and
data.label for label (fraud_status), so the spec's dataset itself (``mdlc
sample``'s CSV) serves as labels. The engine is --engine, else the spec's
monitoring.engine (duckdb: the report from SQL on DuckDB), or spark: the
same SQL on PySpark in local mode, what monitoring.runner: spark runs, which
needs pyspark and Java.
Exit 0: no threshold crossed; 1: an alarm threshold of the spec is crossed;
2: unusable input.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import pyarrow as pa
from mdlc_core import monitoring

# The spec package makes mdlc_core importable from a source checkout too.
from mdlc_constructs.spec import SpecError, load_spec

from . import EXIT_OK, EXIT_VIOLATIONS, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "monitor",
        help="compute closed- and open-loop monitoring metrics from local files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="model spec YAML file")
    parser.add_argument(
        "--predictions", required=True, metavar="FILE",
        help="predictions: event_id, score, prediction_ts (or the spec's names, see above)",
    )
    parser.add_argument(
        "--labels", metavar="FILE",
        help="labels, for the closed loop: event_id, label, label_ts (or the spec's names)",
    )
    parser.add_argument("--baseline", metavar="FILE", help="baseline file (open loop drift)")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--report", metavar="FILE", help="also write the JSON report here")
    parser.add_argument("--engine", choices=["duckdb", "spark"],
                        help="the metrics engine (default: the spec's monitoring.engine, "
                        "duckdb); both give the same report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.spec)
    except SpecError as error:
        raise UsageError("\n".join(error.problems)) from error
    data = spec.data
    try:
        predictions = monitoring.Predictions.from_table(
            with_spec_names(
                monitoring.read_table_path(args.predictions), args.predictions,
                {"event_id": data.event_id, "score": None, "prediction_ts": data.timestamp},
            ),
            spec.feature_columns,
            what=args.predictions,
        )
        labels = (
            monitoring.Labels.from_table(
                with_spec_names(
                    monitoring.read_table_path(args.labels), args.labels,
                    {"event_id": data.event_id, "label": data.label, "label_ts": data.timestamp},
                ),
                what=args.labels,
            )
            if args.labels
            else None
        )
        baseline = monitoring.read_table_path(args.baseline) if args.baseline else None
    except monitoring.MonitoringInputError as error:
        raise UsageError(str(error)) from error
    if (
        baseline is not None
        and "score" not in baseline.column_names
        and not any(c in baseline.column_names for c in spec.feature_columns)
    ):
        raise UsageError(
            f"{args.baseline}: needs a score column or one of the feature columns "
            f"{spec.feature_columns}; found {baseline.column_names}"
        )
    report: dict[str, Any] = {"model": spec.name}
    engine = args.engine or spec.monitoring.engine
    if engine == "spark":
        report.update(_on_spark(predictions, labels, baseline, spec))
    else:
        from mdlc_core.sql import monitoring as sql_monitoring

        report.update(sql_monitoring.compute_metrics(
            predictions, labels, baseline, spec.monitoring, spec.feature_columns))
    alarms = monitoring.evaluate_alarms(report, spec.monitoring)
    report["alarms"] = alarms
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print("\n".join(render(report)))
    return EXIT_VIOLATIONS if alarms else EXIT_OK


def _on_spark(predictions: monitoring.Predictions, labels: monitoring.Labels | None,
              baseline: pa.Table | None, spec: Any) -> dict[str, Any]:
    """The metrics from the compiled SQL on local PySpark: the queries the
    ``monitoring.runner: spark`` job runs, on the same typed inputs."""
    from mdlc_core.sql import monitoring as sql_monitoring

    from .spark_session import local_spark

    session = local_spark("mdlc-monitor")
    plan = sql_monitoring.prepare(predictions, labels, baseline, spec.monitoring,
                                  spec.feature_columns)
    return sql_monitoring.spark_run(plan, lambda fetch: plan.metrics(fetch, "spark"), session)


def with_spec_names(table: pa.Table, what: str, needed: dict[str, str | None]) -> pa.Table:
    """``table`` with the monitor's column names: each needed column that is
    absent is taken from the spec's column of that role when present.

    Raises:
        UsageError: naming the columns still missing, what each may be called,
            and the columns the file has.
    """
    names = list(table.column_names)
    renamed = dict.fromkeys(names)
    for column, alias in needed.items():
        if column not in names and alias and alias in names and renamed[alias] is None:
            renamed[alias] = column
    table = table.rename_columns([renamed[name] or name for name in names])
    missing = [column for column in needed if column not in table.column_names]
    if missing:
        accepted = ", ".join(
            f"{column} (or {alias})" if alias and alias != column else column
            for column, alias in needed.items()
        )
        raise UsageError(
            f"{what}: needs the columns {accepted}; missing {missing}; found {names}"
        )
    return table


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def render(report: dict[str, Any]) -> list[str]:
    """The report as text, with the metric names the docs use."""
    dates = report["dates"]
    span = f"{dates[0]}..{dates[-1]}" if dates else "no dates"
    lines = [f"model {report['model']}: {report['predictions']} predictions ({span})"]
    closed = report["closed_loop"]
    if closed is None:
        lines.append("closed loop: no labels given (--labels)")
    else:
        lines.append(
            f"closed loop (decision threshold {closed['decision_threshold']:g}; "
            f"{closed['labels']} labels, {closed['duplicate_labels']} duplicates):"
        )
        header = (
            f"  {'model version':<14} {'date':<10} {'predictions':>11} {'labelled':>8} "
            f"{'precision':>9} {'recall':>7} {'F1':>7} {'AUC':>7} {'label coverage':>14}"
        )
        lines.append(header)
        rows = [(g, "all days") for g in closed["by_version"]]
        rows += [(g, g["date"]) for g in closed["by_day"]]
        for group, when in rows:
            lines.append(
                f"  {group['model_version']:<14} {when:<10} {group['predictions']:>11} "
                f"{group['labelled']:>8} {_fmt(group['precision']):>9} {_fmt(group['recall']):>7} "
                f"{_fmt(group['f1']):>7} {_fmt(group['auc']):>7} "
                f"{_fmt(group['label_coverage']):>14}"
            )
        lines.append(f"labels that match no prediction: {closed['unmatched_labels']}")
    opened = report["open_loop"]
    lines.append(f"open loop (baseline {opened['baseline_rows']} rows, {opened['bins']} bins):")
    for group in opened["by_version"]:
        version = group["model_version"]
        score = group["score"]
        if score:
            lines.append(
                f"  model version {version}: score PSI {_fmt(score['psi'])}, "
                f"KS statistic {_fmt(score['ks_statistic'])}, KS p-value {_fmt(score['ks_pvalue'])}"
            )
        else:
            lines.append(f"  model version {version}: score PSI n/a (no baseline score column)")
        for name, drift in group["features"].items():
            lines.append(
                f"    feature {name}: PSI {_fmt(drift['psi'])}, "
                f"KS p-value {_fmt(drift['ks_pvalue'])}"
            )
        if group["actions"]:
            shares = ", ".join(f"{a} {s:.4f}" for a, s in sorted(group["actions"].items()))
            lines.append(f"    action share: {shares}")
    if opened["features_not_compared"]:
        lines.append(f"  features not compared: {', '.join(opened['features_not_compared'])}")
    if report["alarms"]:
        lines.append(f"thresholds crossed ({len(report['alarms'])}):")
        lines.extend(f"  {alarm['message']}" for alarm in report["alarms"])
    else:
        lines.append("thresholds crossed: none")
    return lines
