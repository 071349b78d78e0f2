"""What the sections of ``bench_engines.py`` share: engines, timing, memory, Spark, output.

Each section (quality here in ``bench_engines.py``, ``engines_features.py``,
``engines_monitoring.py``) runs every engine in a subprocess of its own
(:func:`run_engine`), so each engine's peak resident memory is its own. In
that subprocess :func:`measure` times ``repeat`` runs of one piece of work
from the loaded tables to the answer and records:

- ``seconds``: every run's wall time (the best decides the ratios; the
  spread, min-max, is printed beside it so one noisy run on a shared machine
  cannot decide a ratio);
- ``peak_mib``: the high-water mark of resident memory (VmHWM, reset just
  before the first run; DuckDB and the JVM allocate outside Python, where
  tracemalloc sees nothing) above what the process held before (the loaded
  tables). For Spark the JVM is a child process of the engine's process
  (PySpark starts it; :class:`Spark` checks its parent pid), with a
  high-water mark of its own: Spark's peak is the driver's peak above the
  loaded tables **plus the JVM's whole high-water mark** (reset after the
  warm-up), the sum of two maxima, so at most what both needed at once;
- ``spill_mib``: the largest size the engine's scratch folder reached during
  the runs (sampled every 50 ms): DuckDB's ``temp_directory``, Spark's
  ``spark.local.dir`` (its shuffle files and spills, and the Arrow batches
  PySpark stages there on their way into the JVM).

Spark's start-up (the JVM, the session) and one warm-up run of the same work
on a small slice are not part of any run's time; :class:`Spark` reports both.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: The issue's target: the compiled SQL within 1.2x of the hand-written DuckDB query.
TARGET = 1.2
#: Every engine a section may offer, in the order they print. ``ours`` is the
#: compiled SQL on DuckDB, the engine every runner uses (the hand-written
#: pyarrow/NumPy engines are retired, issue #18), and the answer every other
#: engine must agree with.
ENGINES = ("ours", "hand", "polars", "spark", "parquet")
#: What each engine is, for the headers.
TITLES = {
    "ours": "the spec compiled to SQL (sqlglot), on DuckDB",
    "hand": "idiomatic DuckDB SQL written by hand",
    "polars": "polars, idiomatically",
    "spark": "the same compiled SQL, Spark dialect, on local PySpark",
    "parquet": "ours with DuckDB scanning the Parquet files itself (quality only)",
}
#: What runs without ``--engines``: every engine.
DEFAULT_ENGINES = ENGINES
DEFAULT_REPEAT = 3
#: ``--spark-repeat``: Spark's runs per size when not ``--repeat`` (None: the same).
SPARK_REPEAT: int | None = None

#: DuckDB's memory limit for ours and the hand-written SQL;
#: ``BENCH_MEMORY_LIMIT=256MB`` shows the spilling (the peak stays near the
#: limit, the time grows, the spill folder fills).
MEMORY_LIMIT = os.environ.get("BENCH_MEMORY_LIMIT", "2GB")
#: The local Spark driver's heap (``spark.driver.memory``, the JVM's -Xmx:
#: local mode runs the executors in the driver). The JVM grows its heap
#: towards it before collecting, so Spark's peak reflects this cap as much as
#: the work's need. 3g ran out of heap collecting the 10M-row per-event answer
#: (``collectAsArrowToPython``); 4g keeps the engine's process (driver + JVM)
#: near 6 GiB at 10M rows.
SPARK_MEMORY = os.environ.get("BENCH_SPARK_MEMORY", "4g")
#: Rows of the warm-up run Spark gets before the timed ones.
WARM_UP_ROWS = 10_000


# --- memory of this process and of the JVM ------------------------------------------------


def status_mib(field: str, pid: int | str = "self") -> float:
    """One ``VmRSS:``/``VmHWM:`` field of ``/proc/<pid>/status``, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"/proc/{pid}/status has no {field} (the benchmark needs Linux)")


def reset_peak(pid: int | str = "self") -> None:
    """Reset a process's resident-memory high-water mark to its current RSS
    (Linux 4.0+: ``clear_refs`` 5; allowed for one's own processes)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def folder_mib(folder: Path) -> float:
    """The size of every file under ``folder`` (gone files skipped), in MiB."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with suppress(FileNotFoundError):  # deleted while walking
                total += os.stat(os.path.join(root, name)).st_size
    return total / 2**20


@contextmanager
def spill_sampler(folder: Path | None) -> Iterator[list[float]]:
    """Sample ``folder``'s size every 50 ms while the block runs; the list
    holds the largest seen (0 without a folder) once the block is done."""
    largest = [0.0]
    if folder is None:
        yield largest
        return
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            largest[0] = max(largest[0], folder_mib(folder))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield largest
    finally:
        done.set()
        thread.join()
        largest[0] = max(largest[0], folder_mib(folder))


# --- local Spark ------------------------------------------------------------------------------


class Spark:
    """A local PySpark session started for one engine process, with its JVM's pid.

    The driver heap is :data:`SPARK_MEMORY` and ``spark.local.dir`` a folder of
    its own (whose size is the Spark engine's spill figure): both must be set
    before the JVM starts, hence ``PYSPARK_SUBMIT_ARGS``. Threads: as many as
    cores (``local[N]``), as DuckDB and polars use.
    """

    def __init__(self, local_dir: Path) -> None:
        self.local_dir = local_dir
        os.environ["PYSPARK_SUBMIT_ARGS"] = (
            f"--driver-memory {SPARK_MEMORY} --conf spark.local.dir={local_dir} pyspark-shell")
        started = time.perf_counter()
        from mdlc_core import spark_job

        self.session = spark_job.local_session("bench-engines", threads=os.cpu_count() or 1)
        self.session.sparkContext.setLogLevel("ERROR")
        self.startup_seconds = time.perf_counter() - started
        self.warm_up_seconds = 0.0
        self.jvm_pid = int(self.session._jvm.java.lang.ProcessHandle.current().pid())
        parent = next(int(line.split()[1]) for line in
                      Path(f"/proc/{self.jvm_pid}/status").read_text().splitlines()
                      if line.startswith("PPid:"))
        self.jvm_is_child = parent == os.getpid()

    def warm_up(self, work: Callable[[], Any]) -> None:
        """Run ``work`` once, untimed (class loading, code generation); add its time."""
        started = time.perf_counter()
        work()
        self.warm_up_seconds += time.perf_counter() - started

    def info(self) -> dict[str, Any]:
        return {"startup_seconds": self.startup_seconds, "warm_up_seconds": self.warm_up_seconds,
                "jvm_pid": self.jvm_pid, "jvm_is_child": self.jvm_is_child,
                "driver_memory": SPARK_MEMORY, "jvm_rss_after_warm_up_mib":
                status_mib("VmRSS:", self.jvm_pid)}


# --- one piece of work, timed -----------------------------------------------------------------


def cpu_seconds(spark: Spark | None) -> float:
    """CPU time of this process's threads, plus the JVM's (a child process)."""
    total = time.process_time()
    if spark is not None:
        fields = Path(f"/proc/{spark.jvm_pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def measure(work: Callable[[Path | None], Any], repeat: int, *, scratch: Path | None,
            spark: Spark | None = None,
            finish: Callable[[Any], Any] = lambda answer: answer) -> dict[str, Any]:
    """Run ``work(scratch)`` ``repeat`` times: every run's wall and CPU seconds
    (every thread, the JVM's included: steadier than wall time on a shared
    machine), the peak memory above what this process holds now (plus the
    JVM's), the largest spill, the 1-minute load average when it started, and
    the last answer, reduced by ``finish`` after its run's clock stopped (a
    digest costs every engine the same, so it must not pull the ratios to 1).

    ``scratch`` is the engine's spill folder (emptied between runs by the
    engines themselves; None for engines that do not spill); for Spark it is
    ``spark.local.dir``.
    """
    loaded = status_mib("VmRSS:")
    reset_peak()
    if spark is not None:
        reset_peak(spark.jvm_pid)
    seconds: list[float] = []
    cpu: list[float] = []
    answer: Any = None
    load = os.getloadavg()[0]
    with spill_sampler(spark.local_dir if spark is not None else scratch) as spill:
        for _ in range(repeat):
            started, started_cpu = time.perf_counter(), cpu_seconds(spark)
            result = work(scratch)
            seconds.append(time.perf_counter() - started)
            cpu.append(cpu_seconds(spark) - started_cpu)
            answer = finish(result)
            del result
    # The reset leaves the mark at the current RSS, which may be a little
    # below ``loaded`` (pages freed in between): not a negative peak.
    driver = max(status_mib("VmHWM:") - loaded, 0.0)
    out = {"seconds": seconds, "cpu": cpu, "peak_mib": driver, "loaded_mib": loaded,
           "spill_mib": spill[0], "load": load, "answer": answer}
    if spark is not None:
        jvm = status_mib("VmHWM:", spark.jvm_pid)
        out.update(peak_mib=driver + jvm, driver_peak_mib=driver, jvm_peak_mib=jvm)
    return out


# --- the parent's side ------------------------------------------------------------------------


def describe_machine() -> str:
    """Cores, memory, load and the engines' versions, for the run's first line."""
    from importlib.metadata import PackageNotFoundError, version

    memory = next((int(line.split()[1]) / 2**20 for line in
                   Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemAvailable:")), math.nan)
    versions = []
    for package in ("duckdb", "polars", "pyspark", "sqlglot"):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            versions.append(f"{package} missing")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {memory:.1f} GiB available, load average {load}; "
            + ", ".join(versions))


def run_engine(script: str | Path, args: Sequence[str]) -> dict[str, Any]:
    """``script --child ARGS`` (``SECTION ENGINE ...``) in a subprocess of its
    own: the JSON of its last line. An engine other than ours that fails (local
    Spark out of heap at 10M rows, say) is reported, ``{"failed": reason}``, and
    the run goes on; ours failing stops it (every answer is checked against it)."""
    done = subprocess.run([sys.executable, str(script), "--child", *args],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        if args[1] == "ours":
            raise SystemExit(f"{' '.join(args[:2])} failed (exit {done.returncode}):\n"
                             f"{done.stderr[-4000:]}")
        print(f"{' '.join(args[:2])} failed (exit {done.returncode}); its error output "
              f"ends:\n{done.stderr[-2000:]}", file=sys.stderr, flush=True)
        errors = [line.strip() for line in done.stderr.splitlines()
                  if "Error" in line or "Exception" in line]
        return {"failed": (errors[-1] if errors else f"exit {done.returncode}")[:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def failures(measured: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Take the engines that failed out of ``measured``; their reasons."""
    failed = {e: m["failed"] for e, m in measured.items() if "failed" in m}
    for engine in failed:
        del measured[engine]
    return failed


def check_agree(what: str, rows: int, results: dict[str, dict[str, Any]],
                same: Callable[[Any, Any], bool]) -> None:
    """Stop the run unless every engine's answer is ours (``same``)."""
    reference = results["ours"]["answer"]
    for engine, result in results.items():
        if not same(result["answer"], reference):
            raise SystemExit(f"{engine} disagrees with ours on {what} at {rows:,} rows:\n"
                             f"{json.dumps(result['answer'], default=str)}\n!= ours\n"
                             f"{json.dumps(reference, default=str)}")


HEADER = (f"{'rows':>11} {'work':<10} {'engine':<9} {'best s':>8} {'min-max s':>13} "
          f"{'CPU s':>7} {'peak MiB':>9} {'spill MiB':>9} {'load':>5}  (loaded MiB; notes)")


def print_engines(rows: int, work: str, results: dict[str, dict[str, Any]],
                  spark: dict[str, Any] | None = None,
                  failed: dict[str, str] | None = None) -> None:
    """One line per engine, then the ratios: ours/hand against the target."""
    for engine in ENGINES:
        if engine in (failed or {}):
            print(f"{rows:>11,} {work:<10} {engine:<9} FAILED: {(failed or {})[engine]}")
        if engine not in results:
            continue
        r = results[engine]
        s = r["seconds"]
        note = f"{r['loaded_mib']:.0f}"
        if engine == "spark":
            note += (f"; driver {r['driver_peak_mib']:.0f} + JVM {r['jvm_peak_mib']:.0f}")
        print(f"{rows:>11,} {work:<10} {engine:<9} {min(s):>8.2f} "
              f"{f'{min(s):.2f}-{max(s):.2f}':>13} {min(r['cpu']):>7.2f} {r['peak_mib']:>9.0f} "
              f"{r['spill_mib']:>9.0f} {r['load']:>5.1f}  ({note})")
    best = {engine: min(r["seconds"]) for engine, r in results.items()}
    parts = []
    if "hand" in best:
        ratio = best["ours"] / best["hand"]
        cpu = min(results["ours"]["cpu"]) / min(results["hand"]["cpu"])
        parts.append(f"ours/hand {ratio:.2f}x (target <= {TARGET}x: "
                     f"{'pass' if ratio <= TARGET else 'MISS'}; CPU {cpu:.2f}x)")
    for other, base in (("polars", "hand"), ("spark", "ours"), ("parquet", "ours")):
        if other in best and base in best:
            parts.append(f"{other}/{base} {best[other] / best[base]:.2f}x")
    print(f"{rows:>11,} {work:<10} ratios    {', '.join(parts) or 'none'}; all "
          f"{'that ran ' if failed else ''}agree")
    if spark is not None:
        print(f"{rows:>11,} {work:<10} spark     not timed: start-up "
              f"{spark['startup_seconds']:.1f} s, warm-up {spark['warm_up_seconds']:.1f} s "
              f"({WARM_UP_ROWS:,} rows); JVM pid {spark['jvm_pid']} is "
              f"{'a child' if spark['jvm_is_child'] else 'NOT a child'} of the engine's "
              f"process; driver heap {spark['driver_memory']}")


def summary_row(rows: int, work: str, results: dict[str, dict[str, Any]],
                spark: dict[str, Any] | None,
                failed: dict[str, str] | None = None) -> dict[str, Any]:
    """What the final table keeps of one (size, work)."""
    return {"rows": rows, "work": work, "spark": spark, "failed": failed or {},
            "engines": {e: {"best": min(r["seconds"]), "min": min(r["seconds"]),
                            "max": max(r["seconds"]), "peak_mib": r["peak_mib"],
                            "spill_mib": r["spill_mib"], "load": r["load"]}
                        for e, r in results.items()}}


def print_summary(summary: list[dict[str, Any]], repeat: int,
                  spark_repeat: int | None = None) -> None:
    """The four rows at each size as one Markdown table (ready for docs/engines.md)."""
    if not summary:
        return
    shown = [e for e in ENGINES if any(e in row["engines"] or e in row["failed"]
                                       for row in summary)]
    spark_runs = f" (spark: {spark_repeat})" if spark_repeat else ""
    print(f"\nsummary: best of {repeat}{spark_runs} seconds (min-max), ours/hand against "
          f"{TARGET}x, peak MiB over the loaded data (spark: driver + JVM), DuckDB memory_limit "
          f"{MEMORY_LIMIT}, Spark driver heap {SPARK_MEMORY}, {os.cpu_count()} cores")
    print("| rows | work | " + " | ".join(f"{e} s" for e in shown)
          + " | ours/hand | target | " + " | ".join(f"{e} peak" for e in shown) + " |")
    print("|" + "---|" * (4 + 2 * len(shown)))
    for row in summary:
        engines = row["engines"]
        cells = [f"{row['rows']:,}", row["work"]]
        for e in shown:
            r = engines.get(e)
            cells.append(f"{r['best']:.2f} ({r['min']:.2f}-{r['max']:.2f})" if r else
                         f"failed: {row['failed'][e]}" if e in row["failed"] else "")
        if "hand" in engines:
            ratio = engines["ours"]["best"] / engines["hand"]["best"]
            cells += [f"{ratio:.2f}x", "pass" if ratio <= TARGET else "MISS"]
        else:
            cells += ["", ""]
        cells += [f"{engines[e]['peak_mib']:,.0f}" if e in engines else "" for e in shown]
        print("| " + " | ".join(cells) + " |")
    starts = [(row["rows"], row["work"], row["spark"]) for row in summary if row["spark"]]
    if starts:
        print("spark start-up (s, not in the times above): " + "; ".join(
            f"{w} {r:,}: {s['startup_seconds']:.1f} + warm-up {s['warm_up_seconds']:.1f}"
            for r, w, s in starts))
    misses = [f"{row['work']} {row['rows']:,}" for row in summary if "hand" in row["engines"]
              and row["engines"]["ours"]["best"] / row["engines"]["hand"]["best"] > TARGET]
    print(f"target {TARGET}x: " + ("met on every row" if not misses
                                   else "missed on " + ", ".join(misses)))


def close(a: Any, b: Any, rel: float = 1e-9, absolute: float = 1e-300) -> bool:
    """Equal answers: dicts and lists element-wise, floats to ``rel`` relative
    (or ``absolute``: sums the engines add in other orders may land near 0)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            close(a[k], b[k], rel, absolute) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(
            close(x, y, rel, absolute) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return (a is not None and b is not None
                and math.isclose(a, b, rel_tol=rel, abs_tol=absolute))
    return bool(a == b)
