"""Benchmark: full metrics recompute, 100,000 customers with 36 months of month-start snapshots.

Inserts MrrSnapshot rows directly (bulk: executemany on SQLite, COPY on PostgreSQL), marks the days computed
so ensure_snapshots keeps them, then times worker.metrics_run.compute_metrics: both windows, every segment, 36
months of movements and storing the run. Goal: <= 10 s on each database, peak memory <= 500 MB (maxrss of the
whole process, generation and insertion included, so rows are generated and written in chunks).

    .venv/bin/python benchmarks/metrics_bench.py [--customers N] [--months M] [--only sqlite|postgres]
                                                 [--breakdown]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
from sqlalchemy import insert
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scratch import make_account, scratch_database  # noqa: E402
from metrics.calendar import month_starts_between, months_back  # noqa: E402
from metrics.cohort_sql import first_snapshot_day, month_movements, window_groups  # noqa: E402
from metrics.cohorts import windows_for  # noqa: E402
from metrics.ledger import SnapshotDay  # noqa: E402
from metrics.segments import DEFAULT_SIZE_BANDS  # noqa: E402
from metrics.tables import table_of  # noqa: E402
from worker.metrics_run import compute_metrics  # noqa: E402
from worker.models import Account  # noqa: E402

PLANS = ["Starter", "Growth", "Pro", "Business", "Enterprise"]
CHUNK = 50_000
Row = tuple[int, str, date, int, int, str]


def month_days(end: date, months: int) -> list[date]:
    return [months_back(end, months - 1 - i) for i in range(months)]


def rows(account_id: int, customers: int, days: list[date], seed: int = 1) -> Iterator[Row]:
    """Customers mostly present from the first month; monthly churn, expansion, contraction, a few returns."""
    rng = random.Random(seed)
    for i in range(customers):
        cid = f"cus_{i:07d}"
        start = 0 if rng.random() < 0.7 else rng.randrange(len(days))
        plan = PLANS[min(4, int(rng.expovariate(0.8)))]
        mrr = int(rng.lognormvariate(10.5, 1.3))  # cents: median about $360 a month
        paying = True
        for k in range(start, len(days)):
            r = rng.random()
            if paying:
                if r < 0.015:
                    paying = False
                elif r < 0.05:
                    mrr = int(mrr * rng.uniform(1.05, 1.6))
                elif r < 0.07:
                    mrr = max(100, int(mrr * rng.uniform(0.5, 0.95)))
            elif r < 0.02:
                paying = True
            if paying:
                one_time = 50_000 if rng.random() < 0.01 else 0
                yield account_id, cid, days[k], mrr, one_time, plan


def chunks(it: Iterator[Row]) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in it:
        batch.append(row)
        if len(batch) >= CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def mark_days(engine: Engine, account_id: int, days: list[date]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(table_of(SnapshotDay)),
            [{"account_id": account_id, "day": d} for d in days],
        )


def load_sqlite(engine: Engine, data: Iterator[Row]) -> int:
    n = 0
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for batch in chunks(data):
            cur.executemany(
                "INSERT INTO mrr_snapshot (account_id, customer_id, day, mrr, one_time, plan) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(a, c, d.isoformat(), m, o, p) for a, c, d, m, o, p in batch],
            )
            n += len(batch)
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return n


def load_postgres(url: str, data: Iterator[Row]) -> int:
    n = 0
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY mrr_snapshot (account_id, customer_id, day, mrr, one_time, plan) FROM STDIN"
            ) as copy,
        ):
            for row in data:
                copy.write_row(row)
                n += 1
        conn.execute("ANALYZE mrr_snapshot")
    return n


def run(label: str, engine: Engine, load: object, customers: int, months: int, breakdown: bool) -> float:
    account = make_account(engine)
    days = month_days(date(2026, 11, 1), months)
    started = time.perf_counter()
    n = load(rows(account.id or 0, customers, days))  # type: ignore[operator]
    mark_days(engine, account.id or 0, days)
    print(f"{label}: inserted {n:,} snapshot rows in {time.perf_counter() - started:.1f} s")
    started, cpu = time.perf_counter(), time.process_time()
    payload = compute_metrics(engine, account, datetime(2026, 11, 1, tzinfo=UTC), store=True)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    t12m = payload["t12m"]
    print(
        f"{label}: full recompute {elapsed:.2f} s wall, {cpu:.2f} s CPU in this process "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(
        f"{label}: (T12M NRR {t12m['nrr']}, GRR {t12m['grr']}, "
        f"logos {t12m['logo_retention']}, {t12m['customers']:,} customers; "
        f"{sum(len(v) for v in payload['segments'].values())} segments; "
        f"{len(payload['movements'])} months)"
    )
    if breakdown:
        print_breakdown(label, engine, account)
    return elapsed


def print_breakdown(label: str, engine: Engine, account: Account) -> None:
    """Where the time goes: each query of the recompute on its own (wall and this process's CPU)."""
    t12m, monthly = windows_for(date(2026, 11, 1))
    edges = DEFAULT_SIZE_BANDS.minor_edges("usd")
    account_id = account.id or 0
    with engine.connect() as conn:
        first = first_snapshot_day(conn, account_id) or t12m.t0
        steps = {
            "T12M window": lambda: window_groups(conn, account_id, t12m, edges),
            "monthly window": lambda: window_groups(conn, account_id, monthly, edges),
            "movements": lambda: month_movements(conn, account_id, month_starts_between(first, t12m.t1)),
        }
        for name, step in steps.items():
            started, cpu = time.perf_counter(), time.process_time()
            step()
            print(
                f"{label}:   {name}: {time.perf_counter() - started:.2f} s wall, "
                f"{time.process_time() - cpu:.2f} s CPU"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--breakdown", action="store_true", help="also time each query on its own")
    args = parser.parse_args()
    results = {}
    loaders = {
        "sqlite": lambda engine, url: lambda data: load_sqlite(engine, data),
        "postgres": lambda engine, url: lambda data: load_postgres(url, data),
    }
    for kind in ("sqlite", "postgres"):
        if args.only in (None, kind):
            with scratch_database(kind, "rt_bench") as (engine, url):
                results[kind] = run(
                    kind, engine, loaders[kind](engine, url), args.customers, args.months, args.breakdown
                )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(f"peak memory (maxrss): {peak_mb:.0f} MB")
    ok = all(t <= 10 for t in results.values()) and peak_mb <= 500
    print("goal (<= 10 s per database, <= 500 MB):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
