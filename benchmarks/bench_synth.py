"""Synthesis time for many models: 1, 50 and 200 generated specs on a shared platform.

Prints seconds per model and jsii round trips per model (every create, get,
set and invoke the Python side sends to the jsii kernel) for each size, and
the ratio against a baseline built in the same run: a plain aws-cdk-lib stack
with the same resources (types, counts and properties) as one model stack (no
mdlc-constructs code, no cdk-nag), synthesized the same number of times. A
ratio near 1 means the library adds little over writing the same stacks by
hand; seconds per model staying flat from 50 to 200 models means synthesis
grows linearly. Each size also prints the unacknowledged cdk-nag findings
(0 expected) and the hard limit with the least headroom
(``mdlc_constructs.quotas``; issue #12 asks for 20% at 200 models).

    .venv/bin/python benchmarks/bench_synth.py [--sizes 1,50,200] [--no-nag] [--pipeline]

``--pipeline`` synthesizes instead the documented pipeline (shared platform,
staging and production in their own accounts, cdk-nag on) over the same
specs: every model twice, so about twice the time. It prints the pipeline's
stages, its largest stage, its template size and the tightest hard limit over
every stack of both stages and the pipeline's own.

It takes minutes (jsii synthesis is about a second per stack); not part of the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # jsii's banner
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aws_cdk as cdk  # noqa: E402
import jsii  # noqa: E402
from aws_cdk import CfnResource  # noqa: E402

from mdlc_constructs.compliance import read_findings  # noqa: E402
from mdlc_constructs.platform import build_app  # noqa: E402
from mdlc_constructs.quotas import limits  # noqa: E402
from mdlc_constructs.testing import make_app  # noqa: E402

#: jsii's module-level calls, the ones generated bindings make for every
#: constructor, property and method; each is a round trip to the node process.
_KERNEL_CALLS = ("create", "get", "set", "invoke", "sinvoke", "sget", "sset",
                 "ainvoke", "sainvoke")
JSII_CALLS: Counter[str] = Counter()


def _counting(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        JSII_CALLS[name] += 1
        return call(*args, **kwargs)
    return counted


for _name in _KERNEL_CALLS:
    setattr(jsii, _name, _counting(_name, getattr(jsii, _name)))


def generate_specs(folder: Path, count: int) -> Path:
    text = (ROOT / "models" / "fraud.yaml").read_text()
    for index in range(count):
        name = f"fraud-{index:03d}"
        (folder / f"{name}.yaml").write_text(text.replace("name: fraud\n", f"name: {name}\n", 1))
    return folder


def synth_library(count: int, nag: bool) -> tuple[float, int, dict[str, dict], int]:
    """Seconds, jsii calls, the templates by file name, and unacknowledged findings."""
    with tempfile.TemporaryDirectory() as specs, tempfile.TemporaryDirectory() as out:
        JSII_CALLS.clear()
        start = time.perf_counter()
        app = make_app(outdir=out, compliance=nag)
        build_app(app, generate_specs(Path(specs), count), shared_platform=True)
        with contextlib.suppress(Exception):  # findings: counted from the report below
            app.synth()
        elapsed = time.perf_counter() - start
        templates = {path.name: json.loads(path.read_text())
                     for path in Path(out).glob("*.template.json")}
        findings = len(read_findings(out))
    return elapsed, sum(JSII_CALLS.values()), templates, findings


def synth_pipeline(count: int, nag: bool) -> tuple[float, dict[str, dict], int]:
    """Seconds, the templates by path in the assembly, and unacknowledged findings."""
    from mdlc_constructs.pipeline import DeploymentTarget, MdlcPipelineStack, PipelineConfig

    config = PipelineConfig(
        repository="mdlc-models", account="111111111111", region="eu-west-1",
        staging=DeploymentTarget("222222222222", "eu-west-1"),
        production=DeploymentTarget("333333333333", "eu-west-1"), shared_platform=True)
    with tempfile.TemporaryDirectory() as specs, tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        app = make_app(outdir=out, compliance=nag)
        MdlcPipelineStack(app, "MdlcPipeline", config=config,
                          models_dir=generate_specs(Path(specs), count))
        with contextlib.suppress(Exception):  # findings: counted from the report below
            app.synth()
        elapsed = time.perf_counter() - start
        templates = {str(path.relative_to(out)): json.loads(path.read_text())
                     for path in Path(out).rglob("*.template.json")}
        findings = len(read_findings(out))
    return elapsed, templates, findings


def pipeline_main(sizes: list[int], nag: bool) -> None:
    print(f"{'models':>6} {'seconds':>8} {'s/model':>8} {'stages':>6} {'most actions':>12} "
          f"{'template KB':>11} {'findings':>8}  tightest hard limit")
    for count in sizes:
        elapsed, templates, findings = synth_pipeline(count, nag)
        pipeline = templates["MdlcPipeline.template.json"]
        (code_pipeline,) = [r for r in pipeline["Resources"].values()
                            if r["Type"] == "AWS::CodePipeline::Pipeline"]
        stages = code_pipeline["Properties"]["Stages"]
        tightest = min(limits(templates), key=lambda use: use.headroom)
        size = len(json.dumps(pipeline, indent=1)) / 1000
        print(f"{count:>6} {elapsed:>8.1f} {elapsed / count:>8.2f} {len(stages):>6} "
              f"{max(len(s['Actions']) for s in stages):>12} {size:>11.0f} {findings:>8}  "
              f"{tightest.limit.name} {tightest.used}/{tightest.limit.limit} "
              f"({tightest.headroom:.0%} left, {tightest.where})", flush=True)


def synth_baseline(shape: list[tuple[str, dict]], platform: list[tuple[str, dict]],
                   count: int) -> float:
    """The same resources, types and properties, written as plain CfnResources."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        app = cdk.App(outdir=out, analytics_reporting=False)
        for name, resources in [("Platform", platform), *[(f"M{i}", shape) for i in range(count)]]:
            stack = cdk.Stack(app, f"Plain-{name}")
            for logical_id, resource in resources:
                if resource["Type"] == "AWS::CDK::Metadata":
                    continue
                CfnResource(stack, logical_id, type=resource["Type"],
                            properties=resource.get("Properties")).override_logical_id(logical_id)
        app.synth()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,50,200")
    parser.add_argument("--no-nag", action="store_true", help="skip the cdk-nag packs")
    parser.add_argument("--pipeline", action="store_true",
                        help="synthesize the two-stage pipeline over the specs instead")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.pipeline:
        pipeline_main(sizes, nag=not args.no_nag)
        return
    print(f"{'models':>6} {'library s':>10} {'s/model':>8} {'jsii/model':>10} "
          f"{'baseline s':>10} {'ratio':>6} {'findings':>8}  tightest hard limit")
    for count in sizes:
        elapsed, calls, templates, findings = synth_library(count, nag=not args.no_nag)
        tightest = min(limits(templates), key=lambda use: use.headroom)
        platform = list(templates.pop("Mdlc-Platform.template.json")["Resources"].items())
        shape = list(next(iter(templates.values()))["Resources"].items())
        baseline = synth_baseline(shape, platform, count)
        print(f"{count:>6} {elapsed:>10.1f} {elapsed / count:>8.2f} {calls / count:>10.0f} "
              f"{baseline:>10.1f} {elapsed / baseline:>6.1f} {findings:>8}  "
              f"{tightest.limit.name} {tightest.used}/{tightest.limit.limit} "
              f"({tightest.headroom:.0%} left, {tightest.where})", flush=True)
    kinds = Counter(r["Type"] for _, r in shape)
    print(f"(one model stack: {len(shape)} resources of {len(kinds)} types; the baseline "
          "writes the same resources and properties as plain CfnResources)")


if __name__ == "__main__":
    main()
