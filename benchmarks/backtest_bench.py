"""Benchmark: the 12-point backtest of a large account against one `at-risk` run (default 6,000 customers).

Builds the sample company (worker/demo/sample.py) at scale, stores it as a sync does and rebuilds its ledger
(benchmarks/rebuild_bench.py helpers), then times `worker.risk.at_risk` (one at-risk run as of the sample's
"now") and `worker.backtest.compute_backtest` (twelve points, one pass over the history) on a scratch
database. Prints both times, their ratio (the aim: the backtest at most 3x one at-risk run), the backtest's
figures on the sample and the peak memory.

    .venv/bin/python benchmarks/backtest_bench.py [--customers N] [--months M] [--only sqlite|postgres]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rebuild_bench import END, parsed, store_rows  # noqa: E402
from benchmarks.scratch import make_account, scratch_database  # noqa: E402
from worker.backtest import backtest_line, compute_backtest  # noqa: E402
from worker.rebuild import rebuild_account  # noqa: E402
from worker.risk import at_risk  # noqa: E402

AS_OF = datetime(END.year, END.month, END.day, tzinfo=UTC)


def timed(run: object) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()  # type: ignore[operator]
    return time.perf_counter() - started, result


def bench(kind: str, customers: int, months: int) -> float:
    rows = parsed(customers, months)
    with scratch_database(kind, "backtest_bench") as (engine, _url):
        account = make_account(engine)
        store_rows(engine, account.id or 0, rows)
        rebuild_account(engine, account, today=END)
        at_risk_s, payload = timed(lambda: at_risk(engine, account, AS_OF))
        backtest_s, result = timed(lambda: compute_backtest(engine, account, AS_OF))
    ratio = backtest_s / at_risk_s
    flagged = len(payload["accounts"])  # type: ignore[index]
    print(
        f"{kind}: {customers:,} customers x {months} months: at-risk {at_risk_s:.2f}s ({flagged} flagged), "
        f"12-point backtest {backtest_s:.2f}s = {ratio:.2f}x one at-risk run"
    )
    print(f"  {backtest_line(result)}")  # type: ignore[arg-type]
    print(f"  peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["sqlite", "postgres"]
    worst = max(bench(kind, args.customers, args.months) for kind in kinds)
    if worst > 3:
        raise SystemExit(f"the backtest took {worst:.2f}x one at-risk run (the aim is at most 3x)")


if __name__ == "__main__":
    main()
