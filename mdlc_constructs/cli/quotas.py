"""``mdlc quotas MODELS_DIR``: what the specs' stacks use of AWS's quotas and hard limits.

Synthesizes every spec in the folder (as ``app.py`` does: a shared platform by
default, ``--self-contained`` for one stack per model; no AWS account, no
cdk-nag) and prints, per account and Region, each quota's use against AWS's
default, and the largest use of each hard limit with its headroom
(``mdlc_constructs.quotas``). Exit 1 when a hard limit has less than
``--min-headroom`` left or a quota's default is exceeded.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from mdlc_constructs.spec import SpecError

from . import EXIT_OK, EXIT_VIOLATIONS, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quotas", help="what the specs' stacks use of AWS quotas and hard limits",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models_dir", metavar="MODELS_DIR", type=Path,
                        help="the folder of spec YAML files (e.g. models/)")
    parser.add_argument("--self-contained", action="store_true",
                        help="one stack per model, each with its own data lake "
                        "(default: one shared platform stack, as app.py builds)")
    parser.add_argument("--min-headroom", type=float, default=0.2, metavar="SHARE",
                        help="fail when a hard limit has less than this share left "
                        "(default 0.2)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mdlc_constructs import quotas
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.testing import make_app

    if not args.models_dir.is_dir():
        raise UsageError(f"{args.models_dir}: not a folder of spec files")
    if not 0 <= args.min_headroom < 1:
        raise UsageError(f"--min-headroom: expected a share in [0, 1), got {args.min_headroom}")
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    with tempfile.TemporaryDirectory(prefix="mdlc-quotas-") as out:
        app = make_app(outdir=out, compliance=False)
        try:
            built = build_app(app, args.models_dir, shared_platform=not args.self_contained)
        except SpecError as error:
            raise UsageError("\n".join(error.problems)) from None
        app.synth()
        templates = {path.name.removesuffix(".template.json"): json.loads(path.read_text())
                     for path in sorted(Path(out).glob("*.template.json"))}
    stacks = [stack.stack_name for stack in built.models.values()]
    print(quotas.format_report(templates, model_stacks=stacks))
    short = [use for use in quotas.limits(templates) if use.headroom < args.min_headroom]
    over = [use for use in quotas.usage(templates) if use.used > use.quota.default]
    for use in short:
        print(f"hard limit: {use.limit.name}: {use.used} of {use.limit.limit} at {use.where} "
              f"leaves {use.headroom:.0%}, below {args.min_headroom:.0%}")
    for use in over:
        print(f"quota: {use.quota.name}: {use.used} over the default {use.quota.default}; "
              "request an increase in Service Quotas before deploying")
    return EXIT_VIOLATIONS if short or over else EXIT_OK
