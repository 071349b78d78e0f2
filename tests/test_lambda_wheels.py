"""The wheelhouse: DuckDB in a Processing job's code, none in a function's,
and a synthesis without the wheelhouse failing with what to run.

The functions get their packages from the stack's data layer
(tests/test_data_layer.py); the assets here are synthesized as ``cdk synth``
does and unpacked as Lambda or SageMaker would see them.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Template

from mdlc_constructs import wheels
from mdlc_constructs.functions import stage_code
from mdlc_constructs.spec import ModelSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
ELF_X86_64 = 0x3E


def synthesize(tmp_path: Path, engine: str, runner: str = "embedded") -> tuple[Any, Path]:
    from mdlc_constructs.quality import DataQuality
    from mdlc_constructs.storage import DataLake
    from mdlc_constructs.testing import make_app

    raw = load_spec(ROOT / "models" / "fraud.yaml").model_dump(mode="json", by_alias=True,
                                                                exclude_unset=True)
    raw = copy.deepcopy(raw)
    raw.setdefault("quality", {})["engine"] = engine
    raw["quality"]["runner"] = runner
    spec = ModelSpec.model_validate(raw)
    outdir = tmp_path / f"{engine}-{runner}.out"
    app = make_app(compliance=False, outdir=str(outdir))
    stack = Stack(app, f"Quality{engine.capitalize()}")
    DataQuality(stack, "Quality", spec=spec, data_lake=DataLake(stack, "DataLake"))
    app.synth()
    return Template.from_stack(stack), outdir


def function_assets(template: Any, outdir: Path) -> dict[str, tuple[dict[str, Any], Path]]:
    """Each function's properties and its unpacked asset folder in the assembly."""
    found = {}
    for logical, resource in template.find_resources("AWS::Lambda::Function").items():
        key = resource["Properties"]["Code"]["S3Key"]
        digest = re.fullmatch(r"([0-9a-f]{64})\.zip", key if isinstance(key, str) else "")
        if digest:
            found[logical] = (resource["Properties"], outdir / f"asset.{digest.group(1)}")
    return found


def test_the_quality_functions_code_carries_no_wheels_the_data_layer_does(
        tmp_path: Path) -> None:
    """DuckDB and sqlglot reach the quality function through the stack's data
    layer (tests/test_data_layer.py), so its own asset stays the handler, the
    library's core and its config (DuckDB, the only quality engine since the
    pyarrow one was retired)."""
    for engine in ("duckdb",):
        template, outdir = synthesize(tmp_path, engine)
        (properties, folder), = [v for k, v in function_assets(template, outdir).items()
                                 if k.startswith("QualityFunction")]
        assert (folder / "index.py").is_file() and (folder / "mdlc_core").is_dir()
        assert not (folder / wheels.MANIFEST_NAME).exists()
        assert not (folder / "duckdb").exists() and not (folder / "sqlglot").exists()
        assert wheels.folder_size(folder) < 2_000_000, engine
        (layer,) = template.find_resources("AWS::Lambda::LayerVersion")
        assert properties["Layers"] == [{"Ref": layer}]
        # Its /tmp takes the Parquet objects and DuckDB's spill; the handler knows its size.
        assert properties["EphemeralStorage"] == {"Size": 10240}
        assert properties["Environment"]["Variables"]["MDLC_EPHEMERAL_STORAGE_MB"] == "10240"


def test_the_processing_jobs_code_carries_duckdb_for_the_images_python() -> None:
    """The Processing image has NumPy and PyArrow but not DuckDB: a job on the
    DuckDB engine vendors it, built for the image's CPython (3.12), whose
    wheel is not the functions'."""
    config = load_spec(ROOT / "models" / "fraud.yaml").as_config()
    job = Path(stage_code("processing_job", config, packages=wheels.DUCKDB_PACKAGES,
                          target=wheels.PROCESSING_TARGET))
    vendored = json.loads((job / wheels.MANIFEST_NAME).read_text())
    assert vendored["python"] == "3.12"
    assert vendored["packages"] == wheels.pinned(wheels.DUCKDB_PACKAGES)
    extension = job / "_duckdb.abi3.so"  # the stable ABI: CPython 3.12 and later
    header = extension.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_X86_64
    tag = (job / f"duckdb-{wheels.PINS['duckdb']}.dist-info" / "WHEEL").read_text()
    assert "Tag: cp312-abi3-manylinux_2_28_x86_64" in tag
    assert (job / "sqlglot" / "__init__.py").is_file()
    assert not list(job.rglob("*.pyc"))  # no compiled files: a deterministic hash
    assert not (Path(stage_code("processing_job", config)) / "duckdb").exists()


def test_synthesis_without_the_wheelhouse_names_the_make_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(wheels.WHEELHOUSE_ENV, str(tmp_path / "none"))
    with pytest.raises(wheels.WheelhouseError, match=r"run `make lambda-wheels`"):
        wheels.installed(wheels.DUCKDB_PACKAGES, wheels.Target("3.14", "x86_64"))
    # A wheelhouse without DuckDB's wheel: the missing wheel is named.
    house = tmp_path / "other"
    house.mkdir()
    for wheel in (ROOT / "build" / "lambda-wheels").glob("sqlglot-*.whl"):
        (house / wheel.name).write_bytes(wheel.read_bytes())
    monkeypatch.setenv(wheels.WHEELHOUSE_ENV, str(house))
    with pytest.raises(wheels.WheelhouseError,
                       match=r"lacks a wheel of duckdb==.* for CPython 3.14 on "
                             r"manylinux_2_28_x86_64: run `make lambda-wheels` in a checkout"):
        wheels.installed(wheels.DUCKDB_PACKAGES, wheels.Target("3.14", "x86_64"))


def test_the_pins_are_the_versions_the_tests_run() -> None:
    pins = dict(re.findall(r"^([a-z0-9-]+)==(\S+)$",
                           (ROOT / "constraints.txt").read_text(), re.MULTILINE))
    assert {name: pins.get(name) for name in wheels.PINS} == wheels.PINS


def test_an_installed_library_looks_for_the_wheelhouse_in_the_apps_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(wheels.WHEELHOUSE_ENV, raising=False)
    assert wheels.wheelhouse() == ROOT / "build" / "lambda-wheels"  # a checkout
    installed = tmp_path / "site-packages" / "mdlc_constructs" / "wheels.py"
    monkeypatch.setattr(wheels, "__file__", str(installed))
    monkeypatch.chdir(tmp_path)
    assert wheels.wheelhouse() == tmp_path / "build" / "lambda-wheels"
    with pytest.raises(wheels.WheelhouseError,
                       match=r"`python -m mdlc_constructs.wheels .*build/lambda-wheels` once"):
        wheels.installed(wheels.DUCKDB_PACKAGES, wheels.Target("3.14", "x86_64"))
