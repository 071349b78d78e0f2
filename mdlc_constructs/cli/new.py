"""``mdlc new NAME [--from SPEC] [--dir models]``: scaffold a spec for a new model.

The new spec is a copy of an existing one (by default the example fraud
spec) with ``name`` replaced; it is validated before it is written, and an
existing file is never overwritten.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mdlc_constructs.spec import SpecError, load_spec, parse_spec
from mdlc_constructs.spec.base import NAME_PATTERN
from mdlc_constructs.spec.loader import load_yaml

from . import EXIT_OK, UsageError

_PACKAGE = Path(__file__).resolve().parents[1]
#: Where the example spec is: inside an installed distribution, else the checkout.
EXAMPLE_SPECS = (_PACKAGE / "examples" / "fraud.yaml", _PACKAGE.parent / "models" / "fraud.yaml")
_NAME_LINE = re.compile(r"^name:[^\n]*$", re.MULTILINE)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "new", help="scaffold a spec for a new model", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME",
                        help="model name: 1-20 lower-case letters, digits or '-'")
    parser.add_argument("--from", dest="source", metavar="SPEC", type=Path, default=None,
                        help="the spec to copy (default: the example fraud spec)")
    parser.add_argument("--dir", dest="directory", metavar="DIR", type=Path,
                        default=Path("models"), help="where to write NAME.yaml (default: models)")
    parser.add_argument("--owner", default=None,
                        help="the owning team (snake_case); default: the copied spec's owner")
    parser.set_defaults(run=run)


def _example() -> Path:
    for path in EXAMPLE_SPECS:
        if path.is_file():
            return path
    raise UsageError("the example spec is not installed; pass --from SPEC")


def scaffold(name: str, source: Path, owner: str | None = None) -> str:
    """The text of a spec for ``name`` copied from ``source``, validated.

    Comments and layout of ``source`` are kept: only the top-level ``name``
    (and ``owner``) lines change.

    Raises:
        UsageError: a bad name, an unreadable or invalid source, a source
            without a top-level ``name:`` line.
    """
    if not NAME_PATTERN.match(name):
        raise UsageError(
            f"invalid NAME {name!r}: expected 1-20 lower-case letters, digits or '-', "
            "starting with a letter (it becomes part of AWS resource names)"
        )
    try:
        original = load_spec(source)
    except SpecError as error:
        raise UsageError(
            f"--from {source} is not a valid spec:\n" + "\n".join(error.problems)
        ) from None
    text = source.read_text(encoding="utf-8")
    if len(_NAME_LINE.findall(text)) != 1:
        raise UsageError(f"--from {source}: expected exactly one top-level 'name:' line")
    text = _NAME_LINE.sub(f"name: {name}", text, count=1)
    if owner is not None:
        text, count = re.subn(r"^owner:[^\n]*$", f"owner: {owner}", text, count=1,
                              flags=re.MULTILINE)
        if not count:
            raise UsageError(f"--from {source}: expected a top-level 'owner:' line")
    if original.description:
        text = re.sub(r"^description:[^\n]*$", f'description: "Describe what {name} predicts."',
                      text, count=1, flags=re.MULTILINE)
    # Valid by construction: the file we write passes the same validator as `mdlc validate`.
    try:
        parse_spec(load_yaml(text, f"{name}.yaml"), f"{name}.yaml")
    except SpecError as error:
        raise UsageError(
            "the scaffolded spec is invalid:\n" + "\n".join(error.problems)
        ) from None
    return text


def run(args: argparse.Namespace) -> int:
    source = args.source or _example()
    target = args.directory / f"{args.name}.yaml"
    text = scaffold(args.name, source, args.owner)
    if target.exists():
        raise UsageError(f"{target} exists; not overwriting it (choose another NAME or --dir)")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # 'x': fail rather than overwrite a file created since the check above.
        with target.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise UsageError(f"{target} exists; not overwriting it") from None
    print(f"{target}: created from {source} (model {args.name!r}); "
          f"edit it, then run `mdlc validate {target}`")
    return EXIT_OK
