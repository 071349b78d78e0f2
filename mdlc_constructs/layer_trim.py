"""Cut what the data functions never load out of an installed layer tree.

The data layer (:mod:`mdlc_constructs.data_layer`) carries NumPy, PyArrow,
DuckDB, sqlglot and Powertools. Installed as pip leaves them they take about
290 MB against Lambda's 262,144,000 bytes for a function's code and layers
together, because the wheels ship what only a developer or another feature
needs: test suites, C++ headers and Cython sources, Arrow Flight (RPC) and the
S3 file system (the handlers use boto3), three copies of each of PyArrow's
versioned libraries (a wheel cannot hold symbolic links), and the static
symbol tables of PyArrow's and NumPy's shared objects. :func:`trim` removes those,
which is what the AWS SDK for pandas layer's own build does, and leaves about
210 MB.

Each removal is a rule naming its reason, so a reviewer can check it against
what the handlers import; the data layer's tests import every module the
handlers do from a trimmed tree and run the engines there. Written here
because no packaging tool trims a ``pip --target`` tree for Lambda.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    """Remove what ``pattern`` (a glob under ``package``) matches, because ``why``."""

    package: str
    pattern: str
    why: str


RULES: tuple[Rule, ...] = (
    Rule("pyarrow", "tests", "PyArrow's own test suite"),
    Rule("pyarrow", "_pyarrow_cpp_tests*", "PyArrow's C++ test runner"),
    Rule("pyarrow", "include", "C++ headers, for building extensions"),
    Rule("pyarrow", "includes", "Cython declarations, for building extensions"),
    Rule("pyarrow", "src", "C++ sources of the Python bindings"),
    Rule("pyarrow", "*.pyx", "Cython sources"),
    Rule("pyarrow", "*.pxd", "Cython declarations"),
    Rule("pyarrow", "*.pxi", "Cython includes"),
    Rule("pyarrow", "libarrow_flight.so*", "Arrow Flight RPC: no handler serves or calls it"),
    Rule("pyarrow", "libarrow_python_flight.so*", "Arrow Flight's Python bindings"),
    Rule("pyarrow", "_flight.*", "Arrow Flight's extension module"),
    Rule("pyarrow", "libarrow_s3.so*", "Arrow's S3 file system: the handlers read S3 with "
         "boto3; pyarrow.fs leaves S3FileSystem out when it is missing"),
    Rule("numpy", "**/tests", "NumPy's test suites"),
    Rule("numpy", "_core/include", "C headers, for building extensions"),
    Rule("numpy", "**/*.pyi", "type stubs"),
)

#: ``libarrow.so``, ``libarrow.so.2600`` and ``libarrow.so.2600.1.0``: the
#: dynamic loader asks for the one-number soname only.
_VERSIONED = re.compile(r"^(?P<base>lib[^/]+\.so)(?P<soname>\.\d+)?(?P<full>(\.\d+)+)?$")

ELF_MAGIC = b"\x7fELF"

#: The packages whose shared objects are stripped. PyArrow ships its libraries
#: as it built them (found through ``$ORIGIN``); NumPy's were rewritten by
#: auditwheel's patchelf, and ``strip`` on a patchelf-rewritten object breaks
#: its load commands ("ELF load command address/offset not page-aligned"; the
#: data layer's import test caught it). NumPy's tables are small anyway.
STRIPPED_PACKAGES = ("pyarrow",)


class TrimError(RuntimeError):
    """The tree could not be trimmed (a missing tool, a binary ``strip`` rejects)."""


def _matches(root: Path, rule: Rule) -> Iterator[Path]:
    package = root / rule.package
    if package.is_dir():
        yield from sorted(package.glob(rule.pattern), reverse=True)


def _remove(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path)
        return size
    if path.exists():
        size = path.stat().st_size
        path.unlink()
        return size
    return 0


def duplicate_libraries(folder: Path) -> list[Path]:
    """The copies of a versioned library beside its soname (``lib*.so.N``) in
    ``folder``: the loader never opens ``lib*.so`` or ``lib*.so.N.M.K``."""
    by_base: dict[str, list[tuple[Path, bool]]] = {}
    for path in folder.iterdir():
        match = _VERSIONED.match(path.name)
        if match and path.is_file():
            is_soname = bool(match["soname"]) and not match["full"]
            by_base.setdefault(match["base"], []).append((path, is_soname))
    extra = []
    for copies in by_base.values():
        if any(is_soname for _, is_soname in copies):
            extra.extend(path for path, is_soname in copies if not is_soname)
    return sorted(extra)


def elf_files(root: Path) -> list[Path]:
    """Every ELF object under ``root`` (extension modules and bundled libraries)."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and ".so" in path.name:
            with path.open("rb") as handle:
                if handle.read(4) == ELF_MAGIC:
                    found.append(path)
    return found


def strip_symbols(paths: list[Path], strip: str | None = None) -> None:
    """Drop the static symbol tables and debug sections (``strip --strip-unneeded``,
    as distributions ship shared objects): the dynamic symbols the loader
    links against stay, so loading and linking are unchanged."""
    tool = strip or shutil.which("strip")
    if tool is None:
        raise TrimError(
            "the data layer needs binutils' `strip` to fit Lambda's 250 MiB limit (it drops "
            "the symbol tables of PyArrow's and NumPy's libraries): install binutils "
            "(apt-get install binutils, dnf install binutils, or Xcode's command line tools)")
    for start in range(0, len(paths), 64):
        batch = [str(p) for p in paths[start:start + 64]]
        result = subprocess.run([tool, "--strip-unneeded", *batch], capture_output=True,
                                text=True, check=False)
        if result.returncode:
            raise TrimError(f"{tool} --strip-unneeded failed: {result.stderr.strip()}")


def trim(root: Path, *, strip: bool = True) -> dict[str, int]:
    """Apply :data:`RULES`, drop duplicate libraries and symbol tables under the
    site folder ``root``; returns the bytes removed per reason."""
    removed: dict[str, int] = {}
    for rule in RULES:
        for path in _matches(root, rule):
            removed[rule.why] = removed.get(rule.why, 0) + _remove(path)
    for folder in {p.parent for p in root.rglob("lib*.so*")}:
        for path in duplicate_libraries(folder):
            removed["copies of a versioned library"] = (
                removed.get("copies of a versioned library", 0) + _remove(path))
    if strip:
        objects = [path for package in STRIPPED_PACKAGES if (root / package).is_dir()
                   for path in elf_files(root / package)]
        before = sum(p.stat().st_size for p in objects)
        strip_symbols(objects)
        removed["symbol tables"] = before - sum(p.stat().st_size for p in objects)
    return removed
