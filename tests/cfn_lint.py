"""cfn-lint over every configuration the library documents, with its one known misfire.

``make cfn-lint`` runs this module: it synthesizes the example models as
self-contained stacks, on a shared platform, and as the two-stage pipeline of
docs/pipeline.md, then lints every template. The tests call :func:`lint` on
the templates they synthesize anyway, so ``make test`` checks the same.

cfn-lint's own ``--ignore-checks`` would drop a whole rule; a misfire is
ignored here by rule id *and* its exact message, each with the reason, so a
real finding of the same rule still fails.

    .venv/bin/python -m tests.cfn_lint [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: rule id -> (the misfire's exact message, why it is not a finding)
KNOWN_MISFIRES: dict[str, tuple[re.Pattern[str], str]] = {
    "E3703": (
        re.compile(r"Prefer using Fn::Sub over Fn::Join with an empty delimiter"),
        "cfn-lint 1.x (checked 1.58) reports the informational I1022 advice as the "
        "error E3703 inside CodePipeline action configuration; CDK Pipelines writes each "
        "stage's deploy RoleArn as an Fn::Join, which CloudFormation accepts",
    ),
}

_LINE = re.compile(r"^(?P<path>.+?):\d+:\d+:\d+:\d+:(?P<rule>[EWI]\d+):(?P<message>.*)$")


def lint(templates: Iterable[Path]) -> list[str]:
    """cfn-lint ``templates``; the error lines that are not known misfires."""
    paths = [str(p) for p in templates]
    if not paths:
        raise ValueError("no templates to lint")
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), "--format", "parseable", *paths],
                            capture_output=True, text=True, check=False)
    if result.returncode & 1 or (result.returncode and not result.stdout):
        # 1: cfn-lint itself failed (not a finding)
        raise RuntimeError(f"cfn-lint failed ({result.returncode}): {result.stderr}")
    errors = []
    for line in result.stdout.splitlines():
        match = _LINE.match(line)
        if match is None or not match["rule"].startswith("E"):
            continue
        misfire = KNOWN_MISFIRES.get(match["rule"])
        if misfire is not None and misfire[0].fullmatch(match["message"].strip()):
            continue
        errors.append(line)
    return errors


def documented_pipeline_context() -> str:
    """The ``mdlc:pipeline`` block docs/pipeline.md shows, as the JSON text that
    ``-c mdlc:pipeline='{...}'`` hands the app."""
    text = (ROOT / "docs" / "pipeline.md").read_text()
    block = text.split('"mdlc:pipeline": ', 1)[1].split("```", 1)[0]
    return json.dumps(json.loads(block))


def synthesize_configurations(outdir: Path, models_dir: Path = ROOT / "models") -> list[Path]:
    """Synthesize the three documented configurations under ``outdir``; their templates."""
    from mdlc_constructs.pipeline import build
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.testing import make_app

    for name, shared in (("self-contained", False), ("shared-platform", True)):
        app = make_app(outdir=str(outdir / name))
        build_app(app, models_dir, shared_platform=shared)
        app.synth()
    app = make_app(outdir=str(outdir / "pipeline"),
                   context={"mdlc:pipeline": documented_pipeline_context()})
    build(app, models_dir)
    app.synth()
    return sorted(outdir.rglob("*.template.json"))


def output_folder(description: str, prefix: str) -> Path:
    """The ``--out DIR`` of a template checker run as a module (a new temporary
    folder by default), with jsii's Node.js banner silenced."""
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    return args.out or Path(tempfile.mkdtemp(prefix=prefix))


def main() -> int:
    outdir = output_folder(__doc__.splitlines()[0], "cfn-lint-")
    templates = synthesize_configurations(outdir)
    errors = lint(templates)
    for line in errors:
        print(line)
    print(f"cfn-lint: {len(templates)} templates, {len(errors)} errors "
          f"(known misfires ignored: {', '.join(KNOWN_MISFIRES)})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
