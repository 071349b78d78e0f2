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
    names: dict[str, list[str]] = {}
    for path in args.specs:
        try:
            spec = load_spec(path)
        except SpecError as error:
            failed = True
            for problem in error.problems:
                print(problem, file=sys.stderr)
        else:
            names.setdefault(spec.name, []).append(path)
            print(f"{path}: ok (model {spec.name!r})")
    # The app builds one stack per model name: two files may not share one
    # (load_specs refuses such a folder at synthesis).
    for name, paths in sorted(names.items()):
        if len(paths) > 1:
            failed = True
            print(f"{paths[-1]}: name: {name!r} is also the name of {', '.join(paths[:-1])}",
                  file=sys.stderr)
    return EXIT_USAGE if failed else EXIT_OK
