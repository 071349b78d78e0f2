"""``mdlc validate SPEC...``: check spec files without synthesizing anything."""

from __future__ import annotations

import argparse
import sys

from mdlc_constructs.spec import SpecError, load_spec

from . import EXIT_OK, EXIT_USAGE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate", help="validate model spec files", description=__doc__
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="spec YAML files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    failed = False
    for path in args.specs:
        try:
            spec = load_spec(path)
        except SpecError as error:
            failed = True
            for problem in error.problems:
                print(problem, file=sys.stderr)
        else:
            print(f"{path}: ok (model {spec.name!r})")
    return EXIT_USAGE if failed else EXIT_OK
