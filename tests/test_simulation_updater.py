"""The stream path with a lagging, failing feature updater, run for real.

Its own module (not tests/test_simulation.py) so that `make test` (one module
per work unit) can run it beside the 21-day lifecycle on the other worker: each is one of the
suite's two longest simulations.

Sixteen days: the updater's four days off (Nov 10-13) fall between the weekly
re-trainings of days 7 and 14, and three days follow them, so a version trained
on rows the updater never applied serves events while the updater catches up.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tests.test_simulation import _orders, _run

pytestmark = pytest.mark.slow

DAYS = 16


@pytest.fixture(scope="module")
def fraud_assembly(synthesized) -> Path:
    return Path(synthesized[1].directory)


def test_a_lagging_failing_feature_updater_still_serves_training_rows(fraud_spec,
                                                                      fraud_assembly,
                                                                      tmp_path):
    """Sixteen days with the feature updater behind the consumer on every
    delivery (its mapping polled after the consumer's), 40% of its writes
    throttled (retried, then given up by its mapping), and switched off for
    four days: every stream
    decision still scored its event's training row, because the consumer folds
    in and records what the updater has not applied."""
    from tests.fault_harness import Faults

    orders = _orders(fraud_spec, tmp_path / "orders.csv", days=DAYS, rows=120)
    harness: list[Faults] = []
    updater = "DataFeaturesUpdate"

    def configure(cloud):
        cloud.streams.mappings.sort(key=lambda m: updater in m.function)
        faults = Faults(cloud, seed=5)
        faults.fail("dynamodb", "TransactWriteItems", probability=0.4, when=lambda _: (
            f"{updater}ServiceRole" in (cloud.principals.current() or "")))
        harness.append(faults)

    def on_day(simulation, day):
        (mapping,) = [m for m in simulation.cloud.streams.mappings if updater in m.function]
        mapping.enabled = not date(2026, 11, 10) <= day < date(2026, 11, 14)

    run = _run(fraud_spec, orders, fraud_assembly, configure=configure, on_day=on_day)
    stream = run.report["decisions"]["stream"]["total"]
    assert stream == (DAYS - 1) * 120  # every event from day 2 on
    assert run.report["feature_parity"] == {"checked": stream, "mismatches": 0,
                                            "missing_rows": 0, "examples": []}
    # The faults happened: throttled writes, and records the updater gave up on.
    assert harness[0].injected["dynamodb:TransactWriteItems"] > 100
    (mapping,) = [m for m in run.cloud.streams.mappings if updater in m.function]
    assert mapping.dead_lettered > 0
    assert [e for e in run.report["executions"] if e["status"] != "SUCCEEDED"
            and e["workflow"] != "deployment"] == []
