"""DuckDB in the quality function's asset: for Lambda's platform, from the wheelhouse.

The asset is synthesized as ``cdk synth`` does and unpacked as Lambda would
see it: the wheel must be the one for the function's runtime and
architecture (an x86-64 ELF extension of the CPython stable ABI), only the
quality function (and the quality Processing job) carries it, the whole
stays under Lambda's unzipped limit, and a synthesis without the wheelhouse
fails naming the make target.
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
from mdlc_constructs.functions import ARCHITECTURE, RUNTIME, stage_code
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


def test_the_quality_asset_carries_duckdb_for_the_functions_platform(tmp_path: Path) -> None:
    template, outdir = synthesize(tmp_path, "duckdb")
    assets = function_assets(template, outdir)
    quality = {k: v for k, v in assets.items() if k.startswith("QualityFunction")}
    (properties, folder), = quality.values()
    vendored = json.loads((folder / wheels.MANIFEST_NAME).read_text())
    assert vendored["platform"] == f"manylinux_2_28_{ARCHITECTURE.name}"
    assert vendored["python"] == RUNTIME.name.removeprefix("python")
    assert vendored["packages"] == [f"{n}=={v}" for n, v in wheels.PINS.items()]
    extension = folder / "_duckdb.abi3.so"  # the stable ABI: CPython 3.12 and later
    header = extension.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_X86_64
    tag = (folder / f"duckdb-{wheels.PINS['duckdb']}.dist-info" / "WHEEL").read_text()
    assert "Tag: cp312-abi3-manylinux_2_28_x86_64" in tag
    assert (folder / "sqlglot" / "__init__.py").is_file()
    assert not list(folder.rglob("*.pyc"))  # no compiled files: a deterministic hash
    # Lambda's 250 MB counts the code and the layers unzipped; the asset is a third.
    assert wheels.folder_size(folder) < wheels.LAMBDA_UNZIPPED_LIMIT / 3
    # Its /tmp takes the Parquet objects and DuckDB's spill; the handler knows its size.
    assert properties["EphemeralStorage"] == {"Size": 10240}
    assert properties["Environment"]["Variables"]["MDLC_EPHEMERAL_STORAGE_MB"] == "10240"


def test_only_duckdb_assets_carry_the_wheels(tmp_path: Path) -> None:
    template, outdir = synthesize(tmp_path, "embedded")
    for _, (properties, folder) in function_assets(template, outdir).items():
        assert (folder / "index.py").is_file()
        assert not (folder / wheels.MANIFEST_NAME).exists()
        assert not (folder / "duckdb").exists()
        assert "EphemeralStorage" not in properties
    # The Processing runner: its quality job gets the wheel, other jobs do not.
    config = load_spec(ROOT / "models" / "fraud.yaml").as_config()
    quality = Path(stage_code("processing_job", config, packages=wheels.DUCKDB_PACKAGES))
    features = Path(stage_code("processing_job", config))
    assert (quality / wheels.MANIFEST_NAME).is_file()
    assert not (features / "duckdb").exists()


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
    pins = dict(re.findall(r"^(duckdb|sqlglot)==(\S+)$",
                           (ROOT / "constraints.txt").read_text(), re.MULTILINE))
    assert pins == wheels.PINS


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


def test_features_and_monitoring_on_duckdb_carry_the_wheels_in_both_runners(
        tmp_path: Path) -> None:
    """features.engine and monitoring.engine: duckdb vendor the wheels into the
    stage's function asset, and into its Processing job's code built for the
    image's Python (wheels.PROCESSING_TARGET); an embedded stage's do not."""
    from aws_cdk import aws_kinesis as kinesis
    from aws_cdk import aws_sns as sns

    from mdlc_constructs.features import FeatureEngineering
    from mdlc_constructs.monitoring import ModelMonitoring
    from mdlc_constructs.processing import stage_engine
    from mdlc_constructs.storage import DataLake
    from mdlc_constructs.testing import make_app

    raw = copy.deepcopy(load_spec(ROOT / "models" / "fraud.yaml").model_dump(
        mode="json", by_alias=True, exclude_unset=True))
    raw.setdefault("features", {})["engine"] = "duckdb"
    raw.setdefault("monitoring", {})["engine"] = "duckdb"
    spec = ModelSpec.model_validate(raw)
    assert stage_engine(spec, "features") == stage_engine(spec, "monitoring") == "duckdb"
    assert stage_engine(spec, "quality") == "embedded"
    outdir = tmp_path / "engines.out"
    app = make_app(compliance=False, outdir=str(outdir))
    stack = Stack(app, "Engines")
    lake = DataLake(stack, "DataLake")
    stream = kinesis.Stream(stack, "Events", encryption=kinesis.StreamEncryption.KMS,
                            encryption_key=lake.key)
    FeatureEngineering(stack, "Features", spec=spec, data_lake=lake, stream=stream)
    ModelMonitoring(stack, "Monitoring", spec=spec, data_lake=lake,
                    topic=sns.Topic(stack, "Topic", master_key=lake.key, enforce_ssl=True))
    app.synth()
    assets = function_assets(Template.from_stack(stack), outdir)
    for prefix in ("FeaturesBatch", "MonitoringJob"):
        (_, folder), = [v for k, v in assets.items() if k.startswith(prefix)]
        vendored = json.loads((folder / wheels.MANIFEST_NAME).read_text())
        assert vendored["python"] == RUNTIME.name.removeprefix("python"), prefix
        assert (folder / "sqlglot" / "__init__.py").is_file()
    job = Path(stage_code("processing_job", spec.as_config(), packages=wheels.DUCKDB_PACKAGES,
                          target=wheels.PROCESSING_TARGET))
    assert json.loads((job / wheels.MANIFEST_NAME).read_text())["python"] == "3.12"
