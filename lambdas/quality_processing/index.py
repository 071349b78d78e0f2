"""The scale-out data quality runner: a SageMaker Processing job entry point.

The same engine, rules and report as the ``quality_check`` function, for
snapshots that do not fit a Lambda. SageMaker copies the snapshot (and the
previous one, for the consistency rules) to local folders; the report goes
to the output folder, which SageMaker uploads next to the Lambda runner's
reports, and the violation metrics are published the same way.

    python3 index.py --date 2026-11-27 [--previous-date 2026-11-26]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

from mdlc_core import quality, tabular
from mdlc_core.runtime_config import load_config

BASE = Path("/opt/ml/processing")
NAMESPACE = "MDLC/DataQuality"


def main(argv: list[str] | None = None, base: Path = BASE) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--date", required=True, type=date.fromisoformat)
    parser.add_argument("--previous-date", type=date.fromisoformat)
    args = parser.parse_args(argv)
    os.environ.setdefault("MDLC_CONFIG_FILE", str(Path(__file__).with_name("mdlc_config.json")))
    config = load_config()
    columns = config["data"]["columns"]
    table = tabular.read_table(base / "input" / "current", columns)
    previous_folder = base / "input" / "previous"
    previous = None
    if previous_folder.is_dir() and any(previous_folder.rglob("*")):
        previous = tabular.read_table(previous_folder, columns)
    report = quality.check(
        table,
        config,
        snapshot_date=args.date,
        previous=previous,
        previous_date=args.previous_date,
    )
    output = base / "output"
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.json").write_text(json.dumps(report, indent=2))
    _publish(config["name"], report)
    print(json.dumps(report["summary"]))
    # Violations are a result, not a failure of the job: the workflow reads
    # the report's summary and stops there, as with the Lambda runner.
    return 0


def _publish(model: str, report: dict) -> None:
    try:
        import boto3
    except ImportError:  # pragma: no cover - the SageMaker images ship boto3
        return
    data = [
        {
            "MetricName": "QualityViolations",
            "Value": float(rule.get("status") == "fail"),
            "Unit": "Count",
            "Dimensions": [
                {"Name": "Model", "Value": model},
                {"Name": "Rule", "Value": rule["id"]},
            ],
        }
        for rule in report["rules"]
    ]
    data.append(
        {
            "MetricName": "QualityViolations",
            "Value": float(report["summary"]["violations"]),
            "Unit": "Count",
            "Dimensions": [{"Name": "Model", "Value": model}],
        }
    )
    client = boto3.client("cloudwatch")
    for start in range(0, len(data), 200):
        client.put_metric_data(Namespace=NAMESPACE, MetricData=data[start : start + 200])


if __name__ == "__main__":
    sys.exit(main())
