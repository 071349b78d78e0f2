"""The built wheel carries the handler folders and mdlc_core, so constructs
find their handlers in an installed distribution without the source tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("mdlc_constructs-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_every_handler_folder_is_in_the_wheel(wheel_names):
    handlers = sorted(p.parent.name for p in (ROOT / "lambdas").glob("*/index.py"))
    assert handlers, "no handlers found"
    for name in handlers:
        assert f"mdlc_handlers/{name}/index.py" in wheel_names


def test_core_and_every_library_module_are_in_the_wheel(wheel_names):
    for path in (ROOT / "lambdas" / "mdlc_core").glob("*.py"):
        assert f"mdlc_core/{path.name}" in wheel_names
    for path in (ROOT / "mdlc_constructs").rglob("*.py"):
        assert path.relative_to(ROOT).as_posix() in wheel_names
    assert "mdlc_handlers/mdlc_core/expressions.py" not in wheel_names  # shipped once


def test_the_example_spec_ships_for_mdlc_new(wheel_names):
    assert "mdlc_constructs/examples/fraud.yaml" in wheel_names
