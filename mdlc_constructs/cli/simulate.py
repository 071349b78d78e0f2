"""``mdlc simulate SPEC --orders FILE``: run the model's whole lifecycle locally.

Synthesizes the model's stack, deploys it on a local cloud (moto, the real
handlers in process, SageMaker stand-ins that really train and score) and
runs the simulated days; see docs/local.md. Exit 0 when every execution
succeeded and every stream decision scored its event's training row, 1 when
an execution failed or a decision's features differ (the report says which
and why), 2 for unusable input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

from mdlc_constructs.spec import SpecError, load_spec

from . import EXIT_OK, EXIT_VIOLATIONS, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="run a model's whole lifecycle locally, day by day",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", metavar="SPEC", help="the model spec (YAML)")
    parser.add_argument("--orders", required=True, metavar="FILE",
                        help="CSV with the spec's columns, label included (mdlc sample makes one)")
    parser.add_argument("--start", metavar="YYYY-MM-DD", help="first day (default: the file's)")
    parser.add_argument("--days", type=int, help="days to run (default: every day of the file)")
    parser.add_argument("--approve", choices=("auto", "never"), default="auto",
                        help="approve each registered version as a reviewer would (default)")
    parser.add_argument("--out", metavar="DIR", help="write report.json, decisions.jsonl, "
                        "the buckets' objects (s3/) and the functions' logs (logs/)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--stack-class", metavar="MODULE:CLASS",
                        help="a team's MdlcModelStack subclass to synthesize instead")
    parser.add_argument("--assembly", metavar="DIR",
                        help="run this synthesized cloud assembly (e.g. cdk.out from `cdk "
                        "synth`) instead of synthesizing the spec's stack")
    parser.add_argument("--stack", metavar="NAME",
                        help="the model's stack in --assembly (default: Mdlc-<model>)")
    parser.add_argument("--no-initial-training", action="store_true",
                        help="wait for the first scheduled training instead of starting one "
                        "after the first day")
    parser.set_defaults(run=run)


def _stack_class(text: str | None) -> type | None:
    if not text:
        return None
    module, _, name = text.partition(":")
    if not name:
        raise UsageError(f"--stack-class: expected MODULE:CLASS, got {text!r}")
    sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"--stack-class {text!r}: {error}") from error


def _parity_line(parity: dict | None) -> str:
    """Online/offline skew: stream decisions whose features differ from their
    event's training row (docs/features.md, "Online rows equal training rows")."""
    if not parity:
        return "feature parity: not checked"
    line = (f"feature parity: {parity['checked']} stream decisions checked against their "
            f"training rows, {parity['mismatches']} differ")
    if parity.get("missing_rows"):
        line += f", {parity['missing_rows']} without a training row"
    return line


def _summary(report: dict, metric: str) -> list[str]:
    lines = []
    for execution in report["executions"]:
        line = (f"  {execution['date'] or '-':10}  {execution['workflow']:16} "
                f"{execution['status']:9} by {execution['started_by']}")
        if execution["error"]:
            line += f"  {execution['error']}: {(execution['cause'] or '')[:160]}"
        lines.append(line)
    versions = ", ".join(
        f"v{v['version']} {v['approval']} {metric} {v['metrics'].get(metric, 'not reported')}"
        for v in report["model_versions"]) or "none"
    endpoint = report["endpoint"]
    lines += [
        f"model versions: {versions}",
        f"endpoint {endpoint['name']}: serving v{endpoint['serving_version']}; deployments "
        + ", ".join(f"v{d['version']} {d['outcome']}" for d in endpoint["deployments"]),
        f"decisions: stream {report['decisions']['stream']}, batch {report['decisions']['batch']}",
        _parity_line(report.get("feature_parity")),
        f"dead letters: {report['dead_letters']}; notifications: {len(report['notifications'])}; "
        f"denied calls: {len(report['denied_calls'])}",
        f"{report['days']} days in {report['seconds']} s",
    ]
    # Each distinct refusal once: the caller, what it was refused, and why.
    seen: set[tuple[str, str, str]] = set()
    for denied in report["denied_calls"]:
        key = (denied["principal"], denied["action"], denied["resource"])
        if key not in seen and len(seen) < 10:
            seen.add(key)
            lines.append(f"  denied: {denied['principal'].rsplit('/', 1)[-1]} "
                         f"{denied['action']} on {denied['resource']}: {denied['reason']}")
    return lines


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # jsii's banner
    from mdlc_constructs.local.simulation import SimulationInputError, simulate

    try:
        spec = load_spec(args.spec)
    except SpecError as error:
        raise UsageError("\n".join(error.problems)) from error
    try:
        start = date.fromisoformat(args.start) if args.start else None
    except ValueError as error:
        raise UsageError(f"--start: expected YYYY-MM-DD, got {args.start!r}") from error
    began = time.monotonic()

    def progress(text: str) -> None:
        if not args.json:
            print(f"[{time.monotonic() - began:6.1f}s] {text}", flush=True)

    try:
        assembly = Path(args.assembly) if args.assembly else None
        if assembly is not None and not (assembly / "manifest.json").is_file():
            raise UsageError(f"--assembly {args.assembly}: not a cloud assembly (no "
                             "manifest.json); run `cdk synth` first")
        result = simulate(spec, Path(args.orders), start=start, days=args.days,
                          approve=args.approve, stack_class=_stack_class(args.stack_class),
                          assembly=assembly, stack=args.stack,
                          initial_training=not args.no_initial_training, progress=progress,
                          out=Path(args.out) if args.out else None)
    except SimulationInputError as error:
        raise UsageError(str(error)) from error
    report = result.report
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print("\n".join(_summary(report, spec.training.evaluation.metric)))
    skewed = (report.get("feature_parity") or {}).get("mismatches", 0)
    return EXIT_VIOLATIONS if result.failed() or skewed else EXIT_OK
