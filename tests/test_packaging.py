"""The built wheel, as a team gets it.

The wheel carries the handler folders, mdlc_core, the example spec and the
feature flags the library is tested with, so constructs and the testing
helpers work from an installed distribution without the source tree. The
last tests install it into a fresh virtual environment beside a CDK app made
by the pinned CDK CLI's own ``cdk init`` (a team's fresh app) and synthesize a
shared platform from it, under no feature flags, under the flags ``cdk init``
writes and under the library's own, each cdk-nag clean; then run, inside that
environment, a snapshot test written with the ``[testing]`` extra.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CDK_CLI = ROOT / ".cdk-cli" / "node_modules" / ".bin" / "cdk"

# The environment and the three syntheses are module fixtures, built once and
# shared by this module's tests: make test runs the module on one worker
# (one work unit per module: tests/work_units.py).
pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    """The environment of a step run in the team's app: ours, less pytest's
    (the inner pytest must not think it is an xdist worker) and any
    virtual environment, with jsii's Node.js banner silenced as the Makefile does."""
    # Nor PYTHONDONTWRITEBYTECODE: a team's Python writes the bytecode of what
    # it imports, so each later step of the app (three syntheses, two test runs)
    # reuses what the first compiled instead of compiling aws-cdk-lib's modules
    # again (seconds of CPU each; uv installs without bytecode).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHONPATH", "CDK_",
                                "PYTHONDONTWRITEBYTECODE"))}
    env.update(JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION="1",
               JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
               AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED="true",
               PIP_DISABLE_PIP_VERSION_CHECK="1",
               # The Lambda wheels a team builds once (docs/engines.md); here the
               # checkout's, which make install built, so synthesis stays offline.
               MDLC_LAMBDA_WHEELHOUSE=str(ROOT / "build" / "lambda-wheels"), **extra)
    return env


def _run(args: list[str], cwd: Path | None = None, **env: str) -> str:
    result = subprocess.run(args, cwd=cwd, env=_env(**env), capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode:
        pytest.fail(f"{' '.join(map(str, args))} exited {result.returncode} in {cwd}:\n"
                    f"{output[-6000:]}")
    return output


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> tuple[Path, str]:
    """The wheel of this checkout, and what its build printed."""
    out = tmp_path_factory.mktemp("wheel")
    log = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "--wheel-dir", str(out), str(ROOT)])
    (wheel,) = out.glob("mdlc_constructs-*.whl")
    return wheel, log


@pytest.fixture(scope="module")
def wheel_names(built_wheel) -> set[str]:
    with zipfile.ZipFile(built_wheel[0]) as archive:
        return set(archive.namelist())


def test_the_build_declares_every_package_it_ships(built_wheel):
    """A folder shipped as package data that Python imports as a package makes
    setuptools print a screenful per folder ("Package would be ignored") on
    every build and editable install: each must be declared."""
    _, log = built_wheel
    assert "would be ignored" not in log, log


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
    assert not [name for name in wheel_names if "__pycache__" in name]


def test_the_example_spec_and_the_feature_flags_ship(wheel_names):
    assert "mdlc_constructs/examples/fraud.yaml" in wheel_names
    assert "mdlc_constructs/feature_flags.json" in wheel_names


# -- the declared ranges ---------------------------------------------------------


def _lower_bounds() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    for line in [*project["dependencies"], *project["optional-dependencies"]["testing"]]:
        requirement = Requirement(line)
        lows = [s.version for s in requirement.specifier if s.operator == ">="]
        assert lows, f"pyproject.toml: {line!r} has no lower bound (>=) to test"
        bounds[requirement.name.lower()] = lows[0]
    return bounds


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{name}: {line!r} is not an exact version"
            pins[requirement.name.lower()] = spec.version
    return pins


def test_every_lower_bound_is_the_version_make_test_lowest_installs():
    bounds, lowest = _lower_bounds(), _pins("constraints-lowest.txt")
    # "2.7" and "2.7.0" are the same version; compare them as versions.
    from packaging.version import Version

    assert {k: Version(v) for k, v in bounds.items()} == \
        {k: Version(v) for k, v in lowest.items()}


def test_the_exact_versions_of_the_repository_are_inside_the_ranges():
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins("constraints.txt")
    lines = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        lines += [line for line in extra if not line.startswith("mdlc-constructs")]
    for line in lines:
        requirement = Requirement(line)
        name = requirement.name.lower()
        assert name in pins, f"constraints.txt has no exact version of {name}"
        assert requirement.specifier.contains(Version(pins[name])), (
            f"constraints.txt: {name}=={pins[name]} is outside pyproject.toml's {line!r}")


# -- a team's own app, from the wheel --------------------------------------------

TEAM_APP = '''\
"""A team's CDK app: every spec in models/ on one shared platform."""
import aws_cdk as cdk

from mdlc_constructs.compliance import apply_compliance_checks
from mdlc_constructs.platform import build_app

app = cdk.App()
build_app(app, "models", shared_platform=True)
apply_compliance_checks(app)
app.synth()
'''

TEAM_TEST = '''\
"""The team's tests, written with mdlc-constructs[testing] as docs/testing.md shows."""
import json
from pathlib import Path

import pytest
from moto import mock_aws

from mdlc_constructs.platform import build_app
from mdlc_constructs.testing import load_handler, make_app, normalize_template

APP = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    app = make_app(cdk_json=APP / "cdk.json", outdir=str(tmp_path_factory.mktemp("cdk.out")))
    built = build_app(app, APP / "models", shared_platform=True)
    assembly = app.synth()
    stacks = [built.platform, *built.models.values()]
    return {s.stack_name: assembly.get_stack_by_name(s.stack_name).template for s in stacks}


def test_the_stacks_match_their_snapshots(templates, snapshot):
    for name, template in sorted(templates.items()):
        assert normalize_template(template) == snapshot(name=name)


def test_the_snapshot_is_of_what_cdk_synth_writes(templates):
    for name, template in templates.items():
        written = json.loads((APP / "cdk.out" / f"{name}.template.json").read_text())
        assert normalize_template(template) == normalize_template(written), name


def test_a_shipped_handler_loads(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        module = load_handler("quality_check")
    assert callable(module.handler)
'''


@pytest.fixture(scope="module")
def team(built_wheel, tmp_path_factory):
    """A fresh environment with the wheel and its [testing] extra, and three
    copies of a ``cdk init`` app synthesized from it: cdk.json without any
    context, as ``cdk init`` wrote it, and with the library's tested flags."""
    # make test installs it: a missing CLI is a broken install, never a pass.
    assert CDK_CLI.exists(), f"the pinned CDK CLI is not installed at {CDK_CLI}: run `make install`"
    base = tmp_path_factory.mktemp("team")
    venv, app = base / "venv", base / "init"
    python = venv / "bin" / "python"
    # uv (a dev dependency) makes the environment from its cache in seconds.
    _run([sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, str(venv)])
    app.mkdir()
    # cdk init runs while pip installs: it needs neither the other.
    init = subprocess.Popen([str(CDK_CLI), "init", "app", "--language", "python",
                             "--generate-only"], cwd=app, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wheel = built_wheel[0]
    _run([sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(python),
          "-c", str(ROOT / "constraints.txt"), f"{wheel}[testing]"])
    # What the app imports, compiled once before the three syntheses start
    # together (each would compile it again while there is no bytecode yet).
    _run([str(python), "-c", "import aws_cdk, cdk_nag, mdlc_constructs.platform, "
          "mdlc_constructs.compliance, mdlc_constructs.testing"])
    init_output, _ = init.communicate()
    assert init.returncode == 0, init_output
    (app / "app.py").write_text(TEAM_APP)
    shutil.rmtree(app / "tests")
    (app / "tests").mkdir()
    (app / "tests" / "test_stacks.py").write_text(TEAM_TEST)
    (app / "models").mkdir()
    shutil.copy(ROOT / "models" / "fraud.yaml", app / "models" / "fraud.yaml")
    init_context = json.loads((app / "cdk.json").read_text())["context"]
    with zipfile.ZipFile(wheel) as archive:  # what make_app() reads when installed
        library_flags = json.loads(archive.read("mdlc_constructs/feature_flags.json"))

    apps = {"no flags": base / "bare", "cdk init": app, "library": base / "library"}
    for name, context in (("no flags", None), ("library", library_flags)):
        shutil.copytree(app, apps[name])
        cdk_json = json.loads((apps[name] / "cdk.json").read_text())
        cdk_json.pop("context")
        if context is not None:
            cdk_json["context"] = context
        (apps[name] / "cdk.json").write_text(json.dumps(cdk_json, indent=2))
    synths = {
        name: subprocess.Popen(
            [str(CDK_CLI), "synth", "--quiet", "--app", f"{python} app.py", "-o", "cdk.out"],
            cwd=path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, path in apps.items()
    }
    results = {name: (proc.communicate()[0], proc.returncode) for name, proc in synths.items()}
    return {"python": python, "apps": apps, "results": results, "init_context": init_context,
            "library_flags": library_flags}


def test_cdk_init_writes_the_flags_the_library_covers(team):
    """The fixture is what it claims: cdk init's recommended flags, and the
    library's flags set every one of them (the CLI's "N feature flags are not
    configured" warning counts the others)."""
    init_context, library = team["init_context"], team["library_flags"]
    assert len(init_context) > 50
    assert init_context["@aws-cdk/core:defaultCrossStackReferences"] == "weak"
    assert set(init_context) <= set(library), sorted(set(init_context) - set(library))


@pytest.mark.parametrize("flags", ["no flags", "cdk init", "library"])
def test_the_shared_platform_synthesizes_cdk_nag_clean(team, flags):
    from mdlc_constructs.compliance import read_findings

    output, returncode = team["results"][flags]
    assert returncode == 0, output[-6000:]
    out = team["apps"][flags] / "cdk.out"
    assert {p.name for p in out.glob("*.template.json")} == {
        "Mdlc-Platform.template.json", "Mdlc-fraud.template.json"}
    assert [str(f) for f in read_findings(out)] == []
    assert "feature flags are not configured" not in output or flags == "no flags", output


def test_the_flags_decide_the_cross_stack_references(team):
    """Each variant synthesized under its own flags: strong references (exports)
    without flags, weak under cdk init's, weak with exports kept under ours."""
    def platform_exports(flags: str) -> bool:
        out = team["apps"][flags] / "cdk.out" / "Mdlc-Platform.template.json"
        outputs = json.loads(out.read_text()).get("Outputs", {})
        return any("Export" in output for output in outputs.values())

    def weak(flags: str) -> bool:
        return "Fn::GetStackOutput" in (
            team["apps"][flags] / "cdk.out" / "Mdlc-fraud.template.json").read_text()

    assert (platform_exports("no flags"), weak("no flags")) == (True, False)
    assert (platform_exports("cdk init"), weak("cdk init")) == (False, True)
    assert (platform_exports("library"), weak("library")) == (True, True)


def test_a_snapshot_test_written_with_the_testing_extra_passes(team):
    """The team's snapshot test of its cdk-init app: recorded, then checked,
    and equal to the templates its own `cdk synth` wrote."""
    app, python = team["apps"]["cdk init"], team["python"]
    pytest_args = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    first = _run([*pytest_args, "--snapshot-update"], cwd=app)
    assert re.search(r"\b3 passed\b", first), first
    snapshots = list((app / "tests" / "__snapshots__").glob("*.ambr"))
    assert snapshots and "Mdlc-Platform" in snapshots[0].read_text()
    second = _run(pytest_args, cwd=app)
    assert re.search(r"\b3 passed\b", second) and "snapshot" in second, second
