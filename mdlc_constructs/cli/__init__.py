"""The ``mdlc`` command line: the same engines the Lambda handlers run.

Each sub-command lives in its own module with a ``register(subparsers)``
function. Exit codes are shared by every command: 0 all good, 1 a check
found violations (or an alarm threshold was crossed), 2 unusable input, 141
the output's reader went away (a closed pipe, ``| head``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2

# Module names under mdlc_constructs.cli, in the order `mdlc --help` lists them.
COMMANDS = (
    "validate", "quality", "baseline", "features", "decide", "monitor", "new", "sample",
    "simulate", "lineage", "quotas",
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


#: The exit code of a command whose reader closed its output early (`mdlc
#: features ... | head -3`): what a process killed by SIGPIPE reports (128 + 13),
#: as the coreutils do, so `set -o pipefail` sees the same as for them.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except UsageError as error:
        print(f"mdlc {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    return code


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what is
    still buffered does not fail again (the recipe of Python's ``signal``
    docs, "Note on SIGPIPE")."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file (a test's captured output): nothing is flushed later
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
