"""The data functions' own layer: what it carries, that it fits, and that a
trimmed tree still runs the engines.

The layer is synthesized as ``cdk synth`` does and its staged asset unpacked
as Lambda would see it under ``/opt``: the wheels must be the functions'
platform's, the whole must fit Lambda's unzipped limit with 20% to spare,
and every data function must get it (and no other layer), while the other
functions keep Powertools' layer. The trimming cannot be run on Lambda
here, so the same recipe is applied to this machine's own install of the
same pinned versions, and the CLI's three engines run on the trimmed tree
must print what they print on the untrimmed one: the test that caught
``strip`` breaking NumPy's patchelf-rewritten OpenBLAS.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template

from mdlc_constructs import data_layer, layer_trim, wheels
from mdlc_constructs.functions import ARCHITECTURE, RUNTIME, python_function
from mdlc_constructs.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
ELF_X86_64 = 0x3E
#: The handlers whose functions are data functions in the example stack.
DATA_HANDLERS = {"quality_check", "feature_batch", "model_monitor"}


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, Path, Stack]:
    from mdlc_constructs.features import FeatureEngineering
    from mdlc_constructs.monitoring import ModelMonitoring
    from mdlc_constructs.quality import DataQuality
    from mdlc_constructs.storage import DataLake
    from mdlc_constructs.testing import make_app

    spec = load_spec(ROOT / "models" / "fraud.yaml")
    outdir = tmp_path_factory.mktemp("layer") / "cdk.out"
    app = make_app(compliance=False, outdir=str(outdir))
    stack = Stack(app, "DataLayerStack")
    lake = DataLake(stack, "DataLake")
    stream = kinesis.Stream(stack, "Events", encryption=kinesis.StreamEncryption.KMS,
                            encryption_key=lake.key)
    DataQuality(stack, "Quality", spec=spec, data_lake=lake)
    FeatureEngineering(stack, "Features", spec=spec, data_lake=lake, stream=stream)
    ModelMonitoring(stack, "Monitoring", spec=spec, data_lake=lake,
                    topic=sns.Topic(stack, "Topic", master_key=lake.key, enforce_ssl=True))
    app.synth()
    return Template.from_stack(stack), outdir, stack


def _service(properties: dict[str, Any]) -> str:
    return properties["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]


def test_one_layer_per_stack_is_every_data_functions_only_layer(synthesized) -> None:
    template, _, stack = synthesized
    layers = template.find_resources("AWS::Lambda::LayerVersion")
    (logical, layer), = layers.items()
    assert logical == stack.get_logical_id(
        data_layer.DataLayer.of(stack).layer.node.default_child)
    assert layer["Properties"]["CompatibleRuntimes"] == [RUNTIME.name]
    assert layer["Properties"]["CompatibleArchitectures"] == [ARCHITECTURE.name]
    assert layer["Properties"]["LicenseInfo"] == data_layer.LICENSE
    for pin in wheels.pinned(wheels.DATA_LAYER_PACKAGES):
        assert pin in layer["Properties"]["Description"]
    seen = set()
    for properties in (r["Properties"] for r in
                       template.find_resources("AWS::Lambda::Function").values()):
        service = _service(properties)
        if service in DATA_HANDLERS:
            seen.add(service)
            assert properties["Layers"] == [{"Ref": logical}], service
        else:  # the feature updater and the like keep the AWS-managed Powertools layer
            (arn,) = properties["Layers"]
            assert "AWSLambdaPowertoolsPythonV3" in json.dumps(arn), service
    assert seen == DATA_HANDLERS


def test_the_staged_layer_is_the_functions_platforms_and_fits_with_a_fifth_to_spare(
        synthesized) -> None:
    template, outdir, _ = synthesized
    (layer,) = template.find_resources("AWS::Lambda::LayerVersion").values()
    key = layer["Properties"]["Content"]["S3Key"]
    opt = outdir / f"asset.{key.removesuffix('.zip')}"
    site = opt / "python"  # Lambda puts /opt/python on sys.path
    for module in ("numpy", "pyarrow", "duckdb", "sqlglot", "aws_lambda_powertools",
                   "jmespath"):
        assert (site / module).exists() or (site / f"{module}.py").exists(), module
    for extension in (site / "_duckdb.abi3.so", site / "pyarrow" / "libarrow.so.2600"):
        header = extension.read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_X86_64
    tag = (site / f"pyarrow-{wheels.PINS['pyarrow']}.dist-info" / "WHEEL").read_text()
    assert f"cp{RUNTIME.name.removeprefix('python').replace('.', '')}-manylinux_2_28_x86_64" \
        in tag
    # What the trimming removed is gone, and nothing compiled was added.
    assert not (site / "pyarrow" / "libarrow_flight.so.2600").exists()
    assert not list(site.rglob("tests")) and not list(site.rglob("*.pyc"))
    size = wheels.folder_size(opt)
    built = data_layer.DataLayer.of(synthesized[2])
    assert size == built.bytes
    # The asset's hash is the staged tree's content (CDK hashes the custom hash once more).
    recorded = json.loads((built.folder / wheels.MANIFEST_NAME).read_text())["sha256"]
    assert wheels.content_hash(opt) == recorded
    assert key.removesuffix(".zip") == hashlib.sha256(recorded.encode()).hexdigest()
    # Staged as links into the installed tree: a synthesis does not copy 200 MB.
    installed = built.folder / wheels.LAYER_SITE / "_duckdb.abi3.so"
    assert (site / "_duckdb.abi3.so").stat().st_ino == installed.stat().st_ino
    # Lambda counts code and layers together; the library keeps 20% of a hard limit.
    assert size < 0.8 * wheels.LAMBDA_UNZIPPED_LIMIT, f"{size:,} bytes"


def test_a_function_past_the_limit_fails_synthesis_naming_it_and_both_parts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_cdk import aws_kms as kms

    from mdlc_constructs.testing import make_app

    stack = Stack(make_app(compliance=False, outdir=str(tmp_path / "out")), "TooLarge")
    limit = data_layer.DataLayer.of(stack).bytes + 1000
    monkeypatch.setattr(wheels, "LAMBDA_UNZIPPED_LIMIT", limit)
    with pytest.raises(data_layer.FunctionTooLarge,
                       match=r"TooLarge/Big: its code \(\d[\d,]* bytes, .*\) and the data layer "
                             r"\(\d[\d,]* bytes\) come to .* past Lambda's"):
        python_function(stack, "Big", handler="quality_check", description="too big",
                        key=kms.Key(stack, "Key"), data_layer=True)


def test_the_retired_pandas_layer_context_key_warns(tmp_path: Path) -> None:
    from aws_cdk import aws_kms as kms
    from aws_cdk.assertions import Annotations, Match

    from mdlc_constructs.testing import make_app

    app = make_app(compliance=False, outdir=str(tmp_path / "out"),
                   context={"mdlc:dataLayerVersion": 19})
    stack = Stack(app, "Retired")
    python_function(stack, "Data", handler="quality_check", description="data",
                    key=kms.Key(stack, "Key"), data_layer=True)
    Annotations.from_stack(stack).has_warning(
        "*", Match.string_like_regexp(r"mdlc:dataLayerVersion is no longer read"))


# --- the trimmed tree runs the engines ----------------------------------------

#: Runs the CLI's three engines on files it writes, printing one JSON line:
#: where each package was imported from, and each command's report.
ENGINES = r"""
import contextlib, io, json, sys
from pathlib import Path
out = Path(sys.argv[1])
import numpy, pyarrow, pyarrow.parquet as pq, duckdb, sqlglot
from mdlc_constructs.cli import main
spec = "models/fraud.yaml"
assert main(["sample", spec, "--days", "2", "--rows-per-day", "300", "--seed", "3",
             "--out", str(out / "orders.csv")]) == 0
reports = {}
for name, args in {
    "quality": ["quality", spec, str(out / "orders.csv"), "--engine", "duckdb",
                "--report", str(out / "quality.json")],
    "features": ["features", spec, str(out / "orders.csv"), "--as-of", "2026-12-31",
                 "--engine", "duckdb"],
}.items():
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(args)
    reports[name] = [code, printed.getvalue()]
rng = numpy.random.default_rng(8)
n = 2000
pq.write_table(pyarrow.table({
    "event_id": [f"e{i}" for i in range(n)], "score": numpy.round(rng.uniform(size=n), 2),
    "prediction_ts": ["2026-11-02T10:00:00Z"] * n,
    "model_version": [("v1", "v2")[i % 2] for i in range(n)],
    "action": [("approve", "review", "block")[i % 3] for i in range(n)],
    "order_amount": rng.gamma(2, 50, n)}), out / "predictions.parquet")
pq.write_table(pyarrow.table({
    "event_id": [f"e{i}" for i in range(0, n, 2)],
    "label": (rng.uniform(size=n // 2) < 0.3).astype(int),
    "label_ts": ["2026-11-20T00:00:00Z"] * (n // 2)}), out / "labels.parquet")
pq.write_table(pyarrow.table({"score": rng.uniform(size=3000),
                              "order_amount": rng.gamma(2, 40, 3000)}),
               out / "baseline.parquet")
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    code = main(["monitor", spec, "--predictions", str(out / "predictions.parquet"),
                 "--labels", str(out / "labels.parquet"), "--baseline",
                 str(out / "baseline.parquet"), "--engine", "duckdb",
                 "--report", str(out / "monitor.json")])
reports["monitor"] = [code, printed.getvalue(), json.loads((out / "monitor.json").read_text())]
reports["quality"].append(json.loads((out / "quality.json").read_text()))
for report in (reports["quality"][2], reports["monitor"][2]):
    report.pop("checked_at", None), report.pop("generated_at", None)
origins = {m.__name__: m.__file__ for m in (numpy, pyarrow, duckdb, sqlglot)}
print(json.dumps({"origins": origins,
                  "reports": json.loads(json.dumps(reports).replace(str(out), "<out>"))}))
"""


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _run_engines(tmp_path: Path, first_on_path: Path | None) -> dict[str, Any]:
    """The ENGINES script in a fresh interpreter; ``first_on_path`` shadows the
    installed packages (``-S`` keeps site-packages until it is added after)."""
    out = tmp_path / ("trimmed" if first_on_path else "installed")
    out.mkdir()
    path = [*([str(first_on_path)] if first_on_path else []), str(ROOT / "lambdas"), str(ROOT)]
    bootstrap = (f"import sys, site; sys.path[:0] = {path!r}; "
                 f"site.addsitedir({str(_site_packages())!r}); sys.argv = ['engines', "
                 f"{str(out)!r}]; exec(compile({ENGINES!r}, 'engines', 'exec'))")
    result = subprocess.run([sys.executable, "-S", "-c", bootstrap], cwd=ROOT, text=True,
                            capture_output=True, env={**os.environ, "PYTHONNOUSERSITE": "1"},
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"origins"')]
    return json.loads(lines[-1])


def test_the_engines_on_a_trimmed_tree_print_what_they_print_untrimmed(tmp_path: Path) -> None:
    """The trimming recipe on this machine's install of the same pins: NumPy,
    PyArrow, DuckDB and sqlglot copied, trimmed (rules, copies, symbol tables)
    and put first on the path; quality, features and monitoring run there."""
    site = _site_packages()
    tree = tmp_path / "site"
    tree.mkdir()
    for entry in site.iterdir():
        name = entry.name.split("-")[0].split(".")[0].lower()
        if name in {"numpy", "pyarrow", "duckdb", "_duckdb", "sqlglot"} and \
                not entry.name.endswith(".dist-info"):
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tree / entry.name)
    removed = layer_trim.trim(tree)
    assert removed["symbol tables"] > 10_000_000  # PyArrow's, stripped for real
    assert not (tree / "pyarrow" / "libarrow_flight.so.2600").exists()
    trimmed, installed = _run_engines(tmp_path, tree), _run_engines(tmp_path, None)
    for module, origin in trimmed["origins"].items():
        assert origin.startswith(str(tree)), (module, origin)
        assert not installed["origins"][module].startswith(str(tree))
    assert trimmed["reports"] == installed["reports"]
    reports = trimmed["reports"]
    assert reports["quality"][0] == reports["features"][0] == 0
    assert reports["monitor"][2]["closed_loop"]["labels"] == 1000  # every other event


def test_every_duckdb_function_gets_the_scratch_it_spills_to_and_knows_it(synthesized) -> None:
    """DuckDB keeps the objects it scans and its spill in /tmp: the quality,
    features and monitoring functions (DuckDB by default) get Lambda's most,
    and the handler bounds its spill by the figure in its environment."""
    from mdlc_constructs.functions import DUCKDB_EPHEMERAL_STORAGE_MB

    template, _, _ = synthesized
    for properties in (r["Properties"] for r in
                       template.find_resources("AWS::Lambda::Function").values()):
        if _service(properties) in DATA_HANDLERS:
            assert properties["EphemeralStorage"] == {"Size": DUCKDB_EPHEMERAL_STORAGE_MB}
            assert properties["Environment"]["Variables"]["MDLC_EPHEMERAL_STORAGE_MB"] == \
                str(DUCKDB_EPHEMERAL_STORAGE_MB)
        else:
            assert "EphemeralStorage" not in properties
