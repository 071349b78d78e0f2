"""The ``mdlc`` command line: the same engines the Lambda handlers run.

Each sub-command lives in its own module with a ``register(subparsers)``
function. Exit codes are shared by every command: 0 all good, 1 a check
found violations (or an alarm threshold was crossed), 2 unusable input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2

# Module names under mdlc_constructs.cli, in the order `mdlc --help` lists them.
COMMANDS = (
    "validate", "quality", "baseline", "features", "decide", "monitor", "new", "sample",
    "simulate",
)


class UsageError(Exception):
    """Unusable input: printed as 'mdlc <command>: <message>' with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdlc", description="Model Development Life Cycle tools for mdlc-constructs specs."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as error:
        print(f"mdlc {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
