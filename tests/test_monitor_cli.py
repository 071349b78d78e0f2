"""``mdlc monitor``: the monitoring metrics from local files, and its exit codes."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mdlc_constructs.cli import EXIT_OK, EXIT_USAGE, EXIT_VIOLATIONS, main

SPEC = "models/fraud.yaml"


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return str(path)


@pytest.fixture
def files(tmp_path):
    """A healthy day: good scores, labels agree, no drift, few blocks."""
    rng = np.random.default_rng(11)
    n = 1000
    scores = rng.uniform(size=n)
    amounts = rng.gamma(2, 50, size=n)
    actions = ["block" if s >= 0.99 else "review" if s >= 0.9 else "approve" for s in scores]
    predictions = write_csv(
        tmp_path / "predictions.csv",
        ["event_id", "score", "prediction_ts", "model_version", "action", "order_amount"],
        [
            (f"o{i}", scores[i], "2024-05-01T10:00:00Z", "v3", actions[i], amounts[i])
            for i in range(n)
        ],
    )
    labels = write_csv(
        tmp_path / "labels.csv",
        ["event_id", "label", "label_ts"],
        [(f"o{i}", int(scores[i] > 0.5), "2024-05-20T00:00:00Z") for i in range(n)]
        + [("nobody", 1, "2024-05-20T00:00:00Z")],
    )
    baseline = tmp_path / "baseline.parquet"
    pq.write_table(
        pa.table({"score": rng.uniform(size=5000), "order_amount": rng.gamma(2, 50, size=5000)}),
        baseline,
    )
    return {
        "predictions": predictions,
        "labels": labels,
        "baseline": str(baseline),
        "dir": tmp_path,
    }


def run(files, *extra):
    argv = ["monitor", SPEC, "--predictions", files["predictions"]]
    argv += ["--labels", files["labels"], "--baseline", files["baseline"], *extra]
    return main(argv)


def test_healthy_day_prints_named_metrics_and_exits_0(files, capsys):
    assert run(files) == EXIT_OK
    out = capsys.readouterr().out
    for name in (
        "precision",
        "recall",
        "F1",
        "AUC",
        "label coverage",
        "PSI",
        "labels that match no prediction: 1",
    ):
        assert name in out, name
    assert "thresholds crossed: none" in out
    all_row = next(line for line in out.splitlines() if line.strip().startswith("all "))
    assert "1.0000" in all_row  # perfect precision/recall/AUC


def test_json_report(files, capsys):
    assert run(files, "--json") == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    overall = report["closed_loop"]["by_version"][0]
    assert overall["auc"] == 1.0 and overall["label_coverage"] == 1.0
    assert report["closed_loop"]["unmatched_labels"] == 1
    assert report["open_loop"]["by_version"][0]["features"]["order_amount"]["psi"] < 0.2


def test_inverted_labels_exit_1_naming_the_thresholds(files, capsys):
    text = (files["dir"] / "labels.csv").read_text()
    flipped = [text.splitlines()[0]] + [
        ",".join([e, str(1 - int(lbl)), ts])
        for e, lbl, ts in (line.split(",") for line in text.splitlines()[1:])
    ]
    (files["dir"] / "labels.csv").write_text("\n".join(flipped) + "\n")
    assert run(files) == EXIT_VIOLATIONS
    out = capsys.readouterr().out
    assert "precision 0 < min_precision 0.5" in out
    assert "auc 0 < min_auc 0.75" in out


def test_predictions_only_run_open_loop(files, capsys):
    code = main(["monitor", SPEC, "--predictions", files["predictions"]])
    assert code == EXIT_OK
    assert "closed loop: no labels given" in capsys.readouterr().out


def test_directory_of_parquet_predictions(files, capsys, tmp_path):
    folder = tmp_path / "dt=2024-05-01"
    folder.mkdir()
    table = pacsv.read_csv(files["predictions"])
    pq.write_table(table.slice(0, 500), folder / "part-0.parquet")
    pq.write_table(table.slice(500), folder / "part-1.parquet")
    (folder / "_SUCCESS").write_text("")
    files = {**files, "predictions": str(folder)}
    assert run(files, "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["predictions"] == 1000


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda f: {"predictions": str(f["dir"] / "missing.csv")}, "no such file"),
        (
            lambda f: {
                "labels": write_csv(
                    f["dir"] / "l.csv", ["id", "label", "label_ts"], [("o1", 1, "2024-05-02")]
                )
            },
            "event_id",
        ),
        (
            lambda f: {
                "labels": write_csv(
                    f["dir"] / "l.csv", ["event_id", "label", "label_ts"], [("o1", 2, "2024-05-02")]
                )
            },
            "0 or 1",
        ),
        (
            lambda f: {"predictions": write_csv(f["dir"] / "p.json", ["x"], [(1,)])},
            "not a CSV or Parquet",
        ),
        (
            lambda f: {
                "predictions": write_csv(f["dir"] / "p.csv", ["event_id", "score"], [("o1", 0.5)])
            },
            "prediction_ts",
        ),
        (
            lambda f: {"baseline": write_csv(f["dir"] / "b.csv", ["other"], [(1,)])},
            "needs a score column",
        ),
    ],
    ids=["missing-file", "no-event-id", "label-not-0-1", "not-csv-parquet", "no-ts", "baseline"],
)
def test_unusable_input_exits_2_with_the_reason(files, capsys, setup, message):
    files = {**files, **setup(files)}
    assert run(files) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("mdlc monitor: ")
    assert message in err


def test_bad_spec_exits_2(files, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    assert main(["monitor", str(bad), "--predictions", files["predictions"]]) == EXIT_USAGE


def test_the_specs_own_column_names_are_accepted(files, tmp_path, capsys):
    """Predictions named as the spec names them (order_id, order_ts) and the
    spec's dataset as labels (order_id, fraud_status, order_ts) give the same
    report as the monitor's own names."""
    assert run(files, "--json") == EXIT_OK
    expected = json.loads(capsys.readouterr().out)
    table = pacsv.read_csv(files["predictions"])
    spec_named = tmp_path / "spec_named.csv"
    pacsv.write_csv(
        table.rename_columns(
            [{"event_id": "order_id", "prediction_ts": "order_ts"}.get(n, n)
             for n in table.column_names]
        ),
        spec_named,
    )
    labels = pacsv.read_csv(files["labels"])
    dataset = tmp_path / "orders.csv"
    pacsv.write_csv(
        labels.rename_columns(["order_id", "fraud_status", "order_ts"]), dataset
    )
    argv = ["monitor", SPEC, "--predictions", str(spec_named), "--labels", str(dataset),
            "--baseline", files["baseline"], "--json"]
    assert main(argv) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == expected


def test_missing_columns_name_what_is_needed_and_its_spec_names(files, tmp_path, capsys):
    table = pacsv.read_csv(files["predictions"]).drop_columns(["prediction_ts"])
    path = tmp_path / "no_time.csv"
    pacsv.write_csv(table, path)
    assert main(["monitor", SPEC, "--predictions", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert (
        f"{path}: needs the columns event_id (or order_id), score, prediction_ts "
        "(or order_ts); missing ['prediction_ts']"
    ) in err
    labels = tmp_path / "labels.csv"
    labels.write_text("order_id,fraud_status\no1,1\n")
    argv = ["monitor", SPEC, "--predictions", files["predictions"], "--labels", str(labels)]
    assert main(argv) == EXIT_USAGE
    assert "label_ts (or order_ts); missing ['label_ts']" in capsys.readouterr().err


def test_help_names_the_files_columns(capsys):
    with pytest.raises(SystemExit):
        main(["monitor", "--help"])
    out = capsys.readouterr().out
    for text in ("event_id, score (0-1), prediction_ts", "event_id, label (0 or 1), label_ts",
                 "data.event_id", "order_id"):
        assert text in out, text
