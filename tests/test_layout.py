"""The S3 layout is a contract with data already written: each key stays as documented.

Constructs grant these prefixes and handlers write under them (both import
``mdlc_core.layout``); a changed prefix would strand a deployed model's data
and break its grants, so each is pinned here as docs and the module state it.
"""

from __future__ import annotations

from mdlc_core.layout import VARIANT_NAME, Layout, endpoint_name

LAYOUT = Layout("fraud")


def test_every_prefix_is_the_documented_one():
    assert {
        "datasets": LAYOUT.datasets, "snapshot": LAYOUT.snapshot("2026-11-01"),
        "features": LAYOUT.feature_snapshot("2026-11-01"),
        "training input": LAYOUT.training_job_input("job-1"),
        "training output": LAYOUT.training_output,
        "checkpoints": LAYOUT.training_checkpoints,
        "baseline": LAYOUT.baseline_features, "job baseline": LAYOUT.job_baseline("job-1"),
        "transform input": LAYOUT.transform_input("2026-11-01"),
        "transform ids": LAYOUT.transform_ids("2026-11-01"),
        "prediction day": LAYOUT.prediction_day("2026-11-01"),
        "scored": LAYOUT.scored("2026-11-01"), "scored pattern": LAYOUT.scored_pattern,
        "labels": LAYOUT.labels, "reports": LAYOUT.monitoring,
        "quality report": LAYOUT.quality_report("2026-11-01"),
        "report": LAYOUT.monitoring_report("2026-11-01"),
        "capture": LAYOUT.capture, "dead letters": LAYOUT.dead_letters("stream-consumer"),
    } == {
        "datasets": "datasets/fraud/", "snapshot": "datasets/fraud/dt=2026-11-01/",
        "features": "features/fraud/dt=2026-11-01/",
        "training input": "training-input/fraud/job-1/",
        "training output": "training-output/fraud/",
        "checkpoints": "training-checkpoints/fraud/",
        "baseline": "baselines/fraud/features.parquet",
        "job baseline": "baselines/fraud/jobs/job-1/features.parquet",
        "transform input": "batch-input/fraud/dt=2026-11-01/transform/",
        "transform ids": "batch-input/fraud/dt=2026-11-01/ids/",
        "prediction day": "predictions/fraud/dt=2026-11-01/",
        "scored": "predictions/fraud/dt=2026-11-01/scored/",
        "scored pattern": "predictions/fraud/dt=*/scored/*",
        "labels": "labels/fraud/", "reports": "monitoring/fraud/",
        "quality report": "quality-reports/fraud/dt=2026-11-01/report.json",
        "report": "monitoring/fraud/dt=2026-11-01/report.json",
        "capture": "capture/fraud/", "dead letters": "dead-letters/fraud/stream-consumer/",
    }


def test_patterns_and_names():
    assert Layout.everything(LAYOUT.datasets) == "datasets/fraud/*"
    assert endpoint_name("fraud") == "mdlc-fraud" and VARIANT_NAME == "AllTraffic"


def test_the_module_docstring_lists_every_prefix():
    import mdlc_core.layout as module

    for prefix in ("datasets/", "features/", "training-input/", "training-output/",
                   "training-checkpoints/", "baselines/", "batch-input/", "predictions/",
                   "labels/", "quality-reports/", "monitoring/", "capture/", "dead-letters/"):
        assert prefix in (module.__doc__ or ""), prefix
