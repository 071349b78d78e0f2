"""monitoring.engine: the monitor handler and ``mdlc monitor`` on DuckDB give the report
the retired NumPy engine gave (recorded in ``__snapshots__/``), and the retired
engine is refused, by the spec and by the job, saying what to change.

The handler on moto S3 and CloudWatch reads a day (two versions, labels, a
fixed baseline); the summary, report and published metrics are the recorded
ones. ``mdlc monitor --engine duckdb`` likewise on local files.
"""

from __future__ import annotations

import json

import boto3
import pytest

from tests.lambda_loader import load_handler
from tests.test_model_monitor_handler import BUCKET, DAY, env, seed  # noqa: F401 (fixture)


def _run_with(engine: str, s3) -> tuple[dict, dict, list]:
    import os

    from mdlc_core import monitor_job
    from mdlc_core.runtime_config import load_config

    summary = monitor_job.run({"date": DAY}, load_config(), s3=s3,
                              cloudwatch=boto3.client("cloudwatch"), environ=os.environ,
                              engine=engine)
    report = json.loads(s3.get_object(
        Bucket=BUCKET, Key=f"monitoring/fraud/dt={DAY}/report.json")["Body"].read())
    datums = monitor_job.metric_data("fraud", report)
    return summary, report, datums


def test_the_handler_reports_the_day_as_the_numpy_engine_did(env, snapshot):  # noqa: F811
    seed(env)
    load_handler("model_monitor")  # mdlc_core on the path as the function has it
    duckdb = _run_with("duckdb", env)
    assert duckdb == snapshot  # the NumPy engine's summary, report and metric data
    assert len(duckdb[2]) > 20
    assert duckdb[1]["open_loop"]["by_version"][0]["features"]  # drift was compared


def test_the_spec_chooses_the_engine_and_a_wrong_one_is_named(env, monkeypatch):  # noqa: F811
    from mdlc_core import monitor_job

    with pytest.raises(ValueError, match=r"monitoring.engine must be one of .*'spark'"):
        monitor_job.engine_module("spark", {})
    limited = monitor_job.engine_module("duckdb", {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "4096"})
    from mdlc_core.sql.quality import memory_limit_for

    assert limited.memory_limit == memory_limit_for(4096)  # the day is DuckDB's, not Python's
    with pytest.raises(ValueError, match="AWS_LAMBDA_FUNCTION_MEMORY_SIZE must be a whole"):
        monitor_job.engine_module("duckdb", {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "4 GB"})


def test_a_config_naming_the_retired_engine_is_refused_with_what_to_do(env):  # noqa: F811
    """A function deployed from a spec of the NumPy engine's days."""
    import os

    from mdlc_core import monitor_job
    from mdlc_core.runtime_config import load_config

    config = load_config()
    config["monitoring"] = {**config.get("monitoring", {}), "engine": "embedded"}
    with pytest.raises(ValueError, match=r"monitoring.engine must be one of \('duckdb',\), "
                       r"got 'embedded': the embedded \(NumPy\) engine was retired .* "
                       r"monitoring.engine removed or set to duckdb"):
        monitor_job.run({"date": DAY}, config, s3=env, cloudwatch=None, environ=os.environ)


def test_duckdb_is_the_default_wherever_a_spec_names_no_engine() -> None:
    """The spec's default and the job's, for a config that has no engine, agree."""
    from mdlc_core import monitor_job

    from mdlc_constructs.spec.monitoring import MonitoringSpec

    assert MonitoringSpec().engine == monitor_job.DEFAULT_ENGINE == "duckdb"


def write_cli_day(folder, n: int, baseline_rows: int) -> int:
    """A day for ``mdlc monitor``: ``n`` predictions of two versions with tied
    scores and three actions, labels for every other one, a baseline of the
    score and a feature; Parquet files in ``folder``. Returns the label count."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(8)
    scores = np.round(rng.uniform(size=n), 2)  # ties on purpose
    pq.write_table(pa.table({
        "event_id": [f"e{i}" for i in range(n)], "score": scores,
        "prediction_ts": ["2026-11-02T10:00:00Z"] * n,
        "model_version": [("v1", "v2")[i % 2] for i in range(n)],
        "action": [("approve", "review", "block")[i % 3] for i in range(n)],
        "order_amount": rng.gamma(2, 50, n)}), folder / "predictions.parquet")
    labelled = range(0, n, 2)
    pq.write_table(pa.table({
        "event_id": [f"e{i}" for i in labelled],
        "label": (rng.uniform(size=len(labelled)) < 0.3).astype(int),
        "label_ts": ["2026-11-20T00:00:00Z"] * len(labelled)}), folder / "labels.parquet")
    pq.write_table(pa.table({"score": rng.uniform(size=baseline_rows),
                             "order_amount": rng.gamma(2, 40, baseline_rows)}),
                   folder / "baseline.parquet")
    return len(labelled)


def monitor_on(engines, folder, capsys, spec: str = "models/fraud.yaml"):
    """``mdlc monitor`` of :func:`write_cli_day`'s files on each engine:
    ``{engine: (exit code, printed text, the --report file's JSON)}``."""
    from mdlc_constructs.cli import main

    outputs = {}
    for engine in engines:
        out = folder / f"{engine}.json"
        code = main(["monitor", spec, "--predictions", str(folder / "predictions.parquet"),
                     "--labels", str(folder / "labels.parquet"),
                     "--baseline", str(folder / "baseline.parquet"), "--engine", engine,
                     "--report", str(out)])
        outputs[engine] = (code, capsys.readouterr().out, json.loads(out.read_text()))
    return outputs


def test_mdlc_monitor_prints_the_numpy_engines_report(tmp_path, capsys, snapshot):
    labels = write_cli_day(tmp_path, 3000, 5000)
    reports = monitor_on(("duckdb",), tmp_path, capsys)
    assert reports["duckdb"] == snapshot  # exit code, printed text, report
    assert reports["duckdb"][2]["closed_loop"]["labels"] == labels


def test_mdlc_monitor_refuses_the_retired_engine(tmp_path, capsys):
    from mdlc_constructs.cli import main

    write_cli_day(tmp_path, 10, 10)
    with pytest.raises(SystemExit) as exited:
        main(["monitor", "models/fraud.yaml", "--predictions",
              str(tmp_path / "predictions.parquet"), "--engine", "embedded"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.replace("'", "")  # Python 3.12 quotes the choices
    assert "--engine: invalid choice: embedded (choose from duckdb, spark)" in err, err
