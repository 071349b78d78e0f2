"""``mdlc baseline SPEC DATA``: suggest quality rules from a reference snapshot.

Prints per-column statistics and a ``quality.rules`` list as YAML, to paste
into the spec and edit (tighten or loosen the bounds, drop what does not
matter). Exit 0, or 2 on unusable input.
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml
from mdlc_core import quality_baseline

from . import EXIT_OK
from .quality import load_spec_or_fail, read_or_fail


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "baseline",
        help="suggest data quality rules from a reference snapshot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="model spec YAML file")
    parser.add_argument("data", metavar="DATA", help="CSV or Parquet file, or a snapshot folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec_or_fail(args.spec)
    table = read_or_fail(args.data, spec)
    baseline = quality_baseline.suggest_baseline(table, spec.as_config())
    print(format_baseline(baseline, args.data))
    return EXIT_OK


class _Dumper(yaml.SafeDumper):
    pass


def _flow_rule(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True)


class _Rule(dict):  # type: ignore[type-arg]
    """A rule printed on one line, like the rules in models/*.yaml."""


_Dumper.add_representer(_Rule, _flow_rule)


def format_baseline(baseline: dict[str, Any], source: str) -> str:
    header = (
        f"# Baseline suggested by `mdlc baseline` from {source} ({baseline['rows']} rows).\n"
        "# Paste `quality:` into the spec and edit: these bounds only describe this snapshot.\n"
    )
    document = {
        "statistics": baseline["statistics"],
        "quality": {"rules": [_Rule(rule) for rule in baseline["quality"]["rules"]]},
    }
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return header + body.rstrip("\n")
