"""Every ``mdlc`` command that writes to standard output ends cleanly when its
reader goes away (``mdlc features ... | head -3``): no traceback, exit 141."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mdlc_constructs.cli import EXIT_BROKEN_PIPE, main

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "models" / "fraud.yaml")


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("orders") / "orders.csv"
    assert main(["sample", SPEC, "--days", "3", "--start", "2026-11-01", "--out", str(path)]) == 0
    return path


def _closed_pipe(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``mdlc argv`` with its stdout a pipe nobody reads: the read end is
    closed before the command writes, so the first write fails with EPIPE
    every time (as with ``| head`` once head has exited)."""
    read, write = os.pipe()
    os.close(read)
    try:
        env = {**os.environ, "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
        return subprocess.run(
            [sys.executable, "-m", "mdlc_constructs.cli", *argv],
            stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=120, check=False,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "command",
    [
        ["features", SPEC, "{orders}", "--as-of", "2026-11-03"],
        ["quality", SPEC, "{orders}", "--date", "2026-11-03"],
        ["baseline", SPEC, "{orders}"],
        ["validate", SPEC],
        ["decide", SPEC, "--input", '{"event_id": "o-1", "score": 0.95}'],
    ],
    ids=lambda c: c[0],
)
def test_a_closed_pipe_ends_the_command_without_a_traceback(orders: Path, command: list[str]):
    result = _closed_pipe([part.replace("{orders}", str(orders)) for part in command])
    assert result.returncode == EXIT_BROKEN_PIPE, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert result.stderr == ""


def test_an_open_pipe_gets_the_whole_output(orders: Path):
    result = subprocess.run(
        [sys.executable, "-m", "mdlc_constructs.cli", "features", SPEC, str(orders),
         "--as-of", "2026-11-03"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[0] == "customer_id"
