"""Third-party packages for Lambda and Processing, built without Docker.

Two things are built here from pinned wheels (:data:`PINS`, equal to
``constraints.txt``'s, which a test asserts), so the cloud runs the versions
the repository's tests ran:

* the data functions' layer (:mod:`mdlc_constructs.data_layer`): NumPy,
  PyArrow, DuckDB, sqlglot and Powertools for the functions' runtime and
  architecture, installed under ``layer/python`` and trimmed
  (:mod:`mdlc_constructs.layer_trim`);
* DuckDB and sqlglot in a Processing job's code, for the image's CPython
  (:data:`PROCESSING_TARGET`), when its stage's engine is DuckDB.

Both come from pip's cross-platform options::

    pip install --no-index --find-links build/lambda-wheels --only-binary=:all: \\
        --platform manylinux_2_28_x86_64 --python-version 3.14 --implementation cp \\
        --no-compile --target <folder> duckdb==2.0.1 ...

from a wheelhouse that ``make lambda-wheels`` downloads once (``python -m
mdlc_constructs.wheels DIR``, which also builds the layer), so synthesis never
needs the network. Each install is kept under the wheelhouse
(``installed/<key>/``) and linked where it is used, so a synthesis after the
first costs a tree of links, not a pip run. The local execution imports the
host's own builds instead (:data:`MANIFEST_NAME` names what a code folder
vendored; see ``mdlc_constructs.local.functions.prefer_host_packages``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Where ``make lambda-wheels`` puts the wheels (relative to the checkout), and
#: the variable that points synthesis at another folder.
WHEELHOUSE_ENV = "MDLC_LAMBDA_WHEELHOUSE"
MAKE_TARGET = "make lambda-wheels"
#: The file in an asset listing what it vendors, for the local execution.
MANIFEST_NAME = "mdlc_vendored.json"
#: DuckDB runs the compiled SQL; sqlglot renders it (the Processing jobs'
#: code carries them: the image has NumPy and PyArrow).
DUCKDB_PACKAGES = ("duckdb", "sqlglot")
#: The data functions' layer (:mod:`mdlc_constructs.data_layer`): the engines,
#: the Arrow and NumPy they run on, and Powertools with its two dependencies.
DATA_LAYER_PACKAGES = ("numpy", "pyarrow", "duckdb", "sqlglot", "aws-lambda-powertools",
                       "jmespath", "typing-extensions")
#: The versions the assets and the layer carry, the ones the repository's
#: tests run. Bumping one: edit it here and in constraints.txt, then ``make
#: lambda-wheels``.
PINS = {"numpy": "2.4.6", "pyarrow": "26.0.1", "duckdb": "2.0.1", "sqlglot": "30.31.0",
        "aws-lambda-powertools": "3.37.0", "jmespath": "1.1.0", "typing-extensions": "4.16.0"}
#: Lambda's unzipped limit for a function's code and layers together, bytes.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


@dataclass(frozen=True)
class Target:
    """A platform wheels are installed for: CPython ``python`` on ``manylinux``."""

    python: str  # "3.14"
    architecture: str  # "x86_64" | "aarch64"
    #: glibc 2.28 fits Amazon Linux 2023 (glibc 2.34), under the 3.12+ runtimes;
    #: DuckDB 2 publishes no manylinux2014 wheel.
    glibc: str = "2_28"

    @property
    def platform(self) -> str:
        return f"manylinux_{self.glibc}_{self.architecture}"


#: The Processing runner's image (``processing.FRAMEWORK``: scikit-learn
#: 1.4-2-py312, Ubuntu 24.04, CPython 3.12, x86_64 only): its DuckDB wheel is
#: CPython-version specific, so it is not the functions' wheel.
PROCESSING_TARGET = Target("3.12", "x86_64")


class WheelhouseError(RuntimeError):
    """Synthesis needs wheels the wheelhouse does not hold."""


def lambda_target(runtime_name: str, architecture_name: str) -> Target:
    """The :class:`Target` of a Lambda runtime (``python3.14``) and architecture
    (``x86_64`` | ``arm64``)."""
    if not runtime_name.startswith("python"):
        raise ValueError(f"not a Python runtime: {runtime_name!r}")
    arch = {"x86_64": "x86_64", "arm64": "aarch64"}.get(architecture_name)
    if arch is None:
        raise ValueError(f"unknown Lambda architecture {architecture_name!r}")
    return Target(runtime_name.removeprefix("python"), arch)


def wheelhouse() -> Path:
    """The wheelhouse folder: ``$MDLC_LAMBDA_WHEELHOUSE``, else ``build/lambda-wheels``
    of the checkout this package runs from (``make lambda-wheels``), else, for an
    installed library, of the folder synthesis runs in (the CDK app's)."""
    configured = os.environ.get(WHEELHOUSE_ENV)
    if configured:
        return Path(configured).resolve()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "Makefile").is_file():
        return checkout / "build" / "lambda-wheels"
    return Path.cwd() / "build" / "lambda-wheels"


def _how_to_build(house: Path) -> str:
    return (f"run `{MAKE_TARGET}` in a checkout of the library, or `python -m "
            f"mdlc_constructs.wheels {house}` once where the library is installed (or "
            f"point {WHEELHOUSE_ENV} at a folder of those wheels)")


def pinned(packages: Sequence[str]) -> list[str]:
    """``name==version`` of each package, from :data:`PINS`."""
    unknown = [name for name in packages if name not in PINS]
    if unknown:
        raise ValueError(f"no pinned version of {unknown} for Lambda assets (wheels.PINS)")
    return [f"{name}=={PINS[name]}" for name in packages]


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                           *args], capture_output=True, text=True, check=False)


#: Where a layer's packages go inside its folder: Lambda puts ``/opt/python``
#: on ``sys.path``.
LAYER_SITE = Path("layer") / "python"


def _recipe() -> str:
    """What a layer's trimming removes, so a changed rule re-installs it."""
    from . import layer_trim

    return json.dumps([[r.package, r.pattern] for r in layer_trim.RULES]
                      + [list(layer_trim.STRIPPED_PACKAGES)])


def content_hash(folder: Path) -> str:
    """SHA-256 of the relative paths and bytes of every file under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def installed(packages: Sequence[str], target: Target, house: Path | None = None, *,
              layer: bool = False) -> Path:
    """A folder with ``packages`` installed for ``target`` from the wheelhouse.

    Installed once per (requirements, target, wheels) and kept under
    ``<wheelhouse>/installed/``; concurrent syntheses (test workers) each
    install into a fresh folder and rename it into place. Raises
    :class:`WheelhouseError` naming :data:`MAKE_TARGET` when the wheelhouse is
    missing or lacks a wheel.

    ``layer``: install under :data:`LAYER_SITE` and trim the tree
    (:func:`mdlc_constructs.layer_trim.trim`); the manifest then also holds
    the tree's unzipped ``bytes`` and its ``sha256`` (:func:`content_hash`),
    computed once here so that a synthesis neither walks nor hashes 200 MB.
    """
    from . import layer_trim

    house = house or wheelhouse()
    requirements = pinned(packages)
    wheels = sorted(house.glob("*.whl")) if house.is_dir() else []
    if not wheels:
        raise WheelhouseError(
            f"the Lambda wheelhouse {house} has no wheels; the data functions' packages "
            f"({', '.join(requirements)}) are installed from it at synthesis: "
            f"{_how_to_build(house)}")
    key = hashlib.sha256(json.dumps(
        [requirements, target.platform, target.python,
         [(w.name, w.stat().st_size) for w in wheels]]
        + ([_recipe()] if layer else [])).encode()).hexdigest()[:16]
    folder = house / "installed" / key
    if (folder / MANIFEST_NAME).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    site = scratch / LAYER_SITE if layer else scratch
    try:
        result = _pip("install", "--quiet", "--no-index", "--find-links", str(house),
                      "--only-binary=:all:", "--platform", target.platform,
                      "--python-version", target.python, "--implementation", "cp",
                      "--no-compile", "--no-deps", "--target", str(site), *requirements)
        if result.returncode:
            raise WheelhouseError(
                f"the Lambda wheelhouse {house} lacks a wheel of {', '.join(requirements)} "
                f"for CPython {target.python} on {target.platform}: {_how_to_build(house)} "
                f"(pip said: {result.stderr.strip().splitlines()[-1:]})")
        manifest: dict[str, object] = {
            "packages": requirements, "platform": target.platform, "python": target.python,
            "modules": sorted(_top_level(site))}
        if layer:
            try:
                manifest["removed"] = layer_trim.trim(site)
            except layer_trim.TrimError as error:
                raise WheelhouseError(str(error)) from error
            manifest["bytes"] = folder_size(scratch / LAYER_SITE.parent)
            manifest["sha256"] = content_hash(scratch / LAYER_SITE.parent)
        (scratch / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
        try:
            scratch.rename(folder)
        except OSError:  # another process installed it meanwhile
            if not (folder / MANIFEST_NAME).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def _top_level(folder: Path) -> set[str]:
    """The importable top-level names pip put in ``folder``."""
    names = set()
    for path in folder.iterdir():
        if path.name.endswith((".dist-info", ".data")) or path.name == MANIFEST_NAME:
            continue
        names.add(path.name.split(".")[0] if path.is_file() else path.name)
    return names


def vendor_into(code: Path, packages: Sequence[str], target: Target) -> None:
    """Put ``packages`` for ``target`` at the root of the asset folder ``code``
    (hard links into the wheelhouse's install where the file system allows)."""
    source = installed(packages, target)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    for path in source.iterdir():
        destination = code / path.name
        if destination.exists():
            raise ValueError(f"the asset already has {path.name}; it cannot also vendor it")
        if path.is_dir():
            shutil.copytree(path, destination, copy_function=link)
        else:
            link(str(path), str(destination))


def folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (what Lambda counts unzipped)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def download(house: Path, targets: Sequence[Target], packages: Sequence[str]) -> None:
    """``make lambda-wheels``: download the wheels of ``packages`` (at their
    :data:`PINS`) for every target into ``house``."""
    house.mkdir(parents=True, exist_ok=True)
    requirements = pinned(packages)
    for target in targets:
        result = _pip("download", "--quiet", "--only-binary=:all:", "--no-deps",
                      "--platform", target.platform, "--python-version", target.python,
                      "--implementation", "cp", "--dest", str(house), *requirements)
        if result.returncode:
            raise SystemExit(f"pip download of {requirements} for {target}: {result.stderr}")
    print(f"{house}: {', '.join(sorted(p.name for p in house.glob('*.whl')))}")


def _main(argv: list[str]) -> None:
    """``python -m mdlc_constructs.wheels DIR``: the wheelhouse for the library's
    functions (their runtime and architecture, from ``functions.py``) and for
    the Processing runner's image (:data:`PROCESSING_TARGET`)."""
    from .functions import ARCHITECTURE, RUNTIME

    if len(argv) != 1:
        raise SystemExit("usage: python -m mdlc_constructs.wheels WHEELHOUSE_DIR")
    house = Path(argv[0])
    functions = lambda_target(RUNTIME.name, ARCHITECTURE.name)
    download(house, [functions], DATA_LAYER_PACKAGES)
    download(house, [PROCESSING_TARGET], DUCKDB_PACKAGES)
    # Trimmed once here, so that no synthesis pays for it.
    layer = installed(DATA_LAYER_PACKAGES, functions, house, layer=True)
    size = json.loads((layer / MANIFEST_NAME).read_text())["bytes"]
    print(f"{layer}: the data layer, {size:,} bytes unzipped")


if __name__ == "__main__":
    _main(sys.argv[1:])
