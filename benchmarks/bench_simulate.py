"""The 28-day fraud simulation (``make simulate``): time, per day, and where it goes.

Synthesizes the example stack once, then runs the lifecycle on generated
orders (``mdlc sample``, seed 1) and prints, from the same run:

* synthesis seconds and simulation seconds (deploy included), against the
  60 s target for the simulation (the ratio);
* seconds per simulated day, and per stream event;
* the baseline measured in the same run: the time spent inside the stream
  functions' handlers (feature update and consumer, as the invocation
  records time them), against the whole run's time per event, so the ratio
  shows what the local cloud (moto, the interpreter, the clock) adds over
  the handlers' own work.

    .venv/bin/python benchmarks/bench_simulate.py [--days 28] [--rows 500]

It takes minutes; not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # jsii's banner
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mdlc_constructs.local.simulation import simulate, synthesize  # noqa: E402
from mdlc_constructs.sampling import sample, write_csv  # noqa: E402
from mdlc_constructs.spec import load_spec  # noqa: E402

TARGET_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--rows", type=int, default=500, help="orders per day")
    args = parser.parse_args()
    spec = load_spec(ROOT / "models" / "fraud.yaml")
    work = Path(tempfile.mkdtemp(prefix="bench-simulate-"))
    orders = work / "orders.csv"
    write_csv(spec, sample(spec, days=args.days, start=date(2026, 11, 1),
                           rows_per_day=args.rows, seed=1), orders)

    started = time.perf_counter()
    stack = synthesize(spec, work / "cdk.out")
    synthesis = time.perf_counter() - started

    started = time.perf_counter()
    run = simulate(spec, orders, assembly=work / "cdk.out", stack=stack, scratch=work / "run")
    seconds = time.perf_counter() - started
    report = run.report
    events = report["decisions"]["stream"]["total"]
    failed = [e for e in report["executions"] if e["status"] != "SUCCEEDED"]
    stream_seconds = sum(m.seconds for m in run.cloud.lambdas.history
                         if "Consumer" in m.function or "Update" in m.function)

    print(f"synthesis: {synthesis:.1f} s")
    print(f"simulation: {seconds:.1f} s for {args.days} days ({args.rows} orders a day), "
          f"{seconds / args.days:.2f} s per day; target {TARGET_SECONDS:.0f} s, "
          f"ratio {seconds / TARGET_SECONDS:.2f}")
    print(f"executions: {len(report['executions'])}, failed {len(failed)}; versions "
          f"{len(report['model_versions'])}; stream decisions {events}; batch decisions "
          f"{report['decisions']['batch']['total']}")
    # Where the time goes: the functions that took the most, in the handlers.
    slowest = sorted(report["functions"].items(), key=lambda kv: -kv[1]["seconds"])[:8]
    print("functions: " + "; ".join(
        f"{name} {entry['seconds']:.1f} s / {entry['invocations']}" for name, entry in slowest))
    if events:
        print(f"stream: {1000 * stream_seconds / events:.2f} ms per event inside the handlers "
              f"(feature update + consumer), {1000 * seconds / events:.2f} ms per event "
              f"for the whole simulation; whole / handlers "
              f"{seconds / stream_seconds:.2f}")


if __name__ == "__main__":
    main()
