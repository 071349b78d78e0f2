"""``mdlc sample SPEC --days N --out FILE``: write a synthetic dataset that fits the spec.

The CSV has the spec's columns (a header of their names) and N days of rows
from --start on; every day passes the spec's quality rules, and the label
carries a signal a model can learn. --anomaly COLUMN@DAY makes COLUMN break
its rule from DAY (an index from 0, or a date) on, for one entity: e.g.
``--anomaly account_tenure@3`` makes a customer's tenure jump back and stop
growing, which the consistency rule reports. The same arguments and --seed
always write the same file. Exit codes: 0 written, 2 unusable arguments.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta

from mdlc_constructs.sampling import (
    DEFAULT_ROWS_PER_DAY,
    SamplingError,
    parse_anomaly,
    sample,
    write_csv,
)

from . import EXIT_OK, UsageError
from .quality import load_spec_or_fail

_FLAGS = {"days": "--days", "rows_per_day": "--rows-per-day", "anomaly": "--anomaly",
          "start": "--start"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="write a synthetic dataset that passes the spec's quality rules",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="model spec YAML file")
    parser.add_argument("--days", metavar="N", type=_positive, required=True,
                        help="number of days to write")
    parser.add_argument("--out", metavar="FILE", required=True, help="the CSV file to write")
    parser.add_argument("--start", metavar="YYYY-MM-DD", type=_date, default=None,
                        help="the first day; default: N days before today (UTC), so the last "
                        "day is yesterday")
    parser.add_argument("--rows-per-day", metavar="R", type=_positive,
                        default=DEFAULT_ROWS_PER_DAY,
                        help=f"rows a day (default {DEFAULT_ROWS_PER_DAY})")
    parser.add_argument("--anomaly", metavar="COLUMN@DAY", action="append", default=[],
                        help="COLUMN breaks its quality rule from DAY on (repeatable)")
    parser.add_argument("--seed", metavar="S", type=int, default=0,
                        help="random seed (default 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec_or_fail(args.spec)
    start = args.start or datetime.now(UTC).date() - timedelta(days=args.days)
    try:
        anomalies = [parse_anomaly(text, start=start, days=args.days) for text in args.anomaly]
        days = sample(spec, days=args.days, start=start, rows_per_day=args.rows_per_day,
                      anomalies=anomalies, seed=args.seed)
    except SamplingError as error:
        flag = _FLAGS.get(error.argument or "")
        raise UsageError(f"{flag}: {error}" if flag else f"{args.spec}: {error}") from error
    try:
        rows = write_csv(spec, days, args.out)
    except OSError as error:
        raise UsageError(
            f"--out {args.out}: cannot write: {error.strerror}: {error.filename}"
        ) from error
    last = days[-1].date
    print(f"{spec.name}: wrote {rows} rows ({len(days)} day(s), {days[0].date} to {last}) "
          f"to {args.out}")
    for anomaly in anomalies:
        affected = next((d.affected.get(anomaly.column) for d in days[anomaly.day:]
                         if d.affected.get(anomaly.column)), [])
        print(f"anomaly: {anomaly.column} breaks its rule from "
              f"{start + timedelta(days=anomaly.day)} on"
              + (f" for {', '.join(map(str, affected))}" if affected else ""))
    return EXIT_OK


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None
