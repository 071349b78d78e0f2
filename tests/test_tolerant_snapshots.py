"""The suite's snapshot comparison (tests/tolerant_snapshots.py): floats
within the tolerance, everything else exactly."""

from __future__ import annotations

import pytest

from tests.tolerant_snapshots import TolerantAmber


def matches(recorded: str, received: str) -> bool:
    return TolerantAmber().matches(serialized_data=received, snapshot_data=recorded)


@pytest.mark.parametrize("recorded, received", [
    ("'psi': 0.07469057163031582,", "'psi': 0.07469057163031581,"),  # one ulp, another CPU
    ("'ks_pvalue': 0.004207543009787667,", "'ks_pvalue': 0.004207543009787666,"),
    ("'x': 1e-05,", "'x': 1.0000000000000001e-05,"),
    ("'x': nan, 'y': -inf,", "'x': nan, 'y': -inf,"),
])
def test_a_float_an_ulp_apart_matches(recorded: str, received: str) -> None:
    assert matches(recorded, received)


@pytest.mark.parametrize("recorded, received", [
    ("'psi': 0.0746905716303,", "'psi': 0.0746905716304,"),  # 1.3e-12 relative
    ("'rows': 104,", "'rows': 105,"),  # ints exactly
    ("'rows': 104,", "'rows': 104.0,"),  # a float never matches an int
    ("'auc': None,", "'auc': 0.5,"),
    ("'date': '2024-05-01',", "'date': '2024-05-02',"),
    ("'x': 0.5,\n'y': 1,", "'x': 0.5,"),  # a line fewer
    ("'x': inf,", "'x': 1e308,"),
])
def test_anything_else_must_be_equal(recorded: str, received: str) -> None:
    assert not matches(recorded, received)
