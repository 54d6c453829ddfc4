"""Benchmark: worker.rebuild.rebuild_account for a large account (default 10,000 customers x 36 months).

Builds the sample company (worker/demo/sample.py) at scale, stores it the way a sync does (records.py
parsers + store.upsert, in bulk), then times rebuild_account on SQLite and on PostgreSQL (a database of its
own, dropped afterwards): a first build, a full rerun and an incremental rerun with nothing changed. Prints
lines/s, seconds per phase (classification = reading + classifying + upcoming lines; ledger write = deleting
the old ledger and inserting the new one; snapshots = per batch and the shared days), peak
memory (maxrss of the whole process, generation included) and a digest of every ledger_line and mrr_snapshot
row, so two runs (before / after a change) can be checked to give identical results.

    .venv/bin/python benchmarks/rebuild_bench.py [--customers N] [--months M] [--only sqlite|postgres]
                                                 [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import importlib
import inspect
import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import worker.rebuild as rebuild  # noqa: E402
from benchmarks.scratch import make_account, scratch_database  # noqa: E402
from integrations.stripe import records  # noqa: E402
from integrations.stripe.models import STRIPE_TABLES  # noqa: E402
from integrations.stripe.store import upsert  # noqa: E402
from metrics.tables import table_of  # noqa: E402
from worker.demo.sample import build_sample_world  # noqa: E402
from worker.models import Account  # noqa: E402

END = date(2026, 11, 1)  # the sample's "now"
TODAY = date(2026, 11, 15)  # the rebuild's today (fixed: digests comparable between runs)
CHUNK = 20_000


def parsed(customers: int, months: int) -> dict[str, list[dict[str, Any]]]:
    """The sample world's objects as stored rows, by table name (what a full sync would write)."""
    world = build_sample_world(customers=customers, months=months, end=END)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in world.collections["customer"].by_id.values():
        out["stripe_customer"].append(records.parse_customer(obj))
    for obj in world.collections["product"].by_id.values():
        out["stripe_product"].append(records.parse_product(obj))
    for obj in world.collections["price"].by_id.values():
        out["stripe_price"].append(records.parse_price(obj))
    for obj in world.collections["subscription"].by_id.values():
        row, items = records.parse_subscription(obj)
        out["stripe_subscription"].append(row)
        out["stripe_subscription_item"].extend(items)
    for inv_id, obj in world.collections["invoice"].by_id.items():
        full = dict(obj)
        full["lines"] = {**obj["lines"], "data": world.invoice_lines.get(inv_id) or obj["lines"]["data"]}
        row, lines, bad = records.parse_invoice(full)
        if bad:
            raise SystemExit(f"sample invoice {inv_id} did not parse: {bad}")
        out["stripe_invoice"].append(row)
        out["stripe_invoice_line"].extend(lines)
    return out


def store_rows(engine: Engine, account_id: int, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Upsert the parsed rows as a sync does, parents before children."""
    with engine.begin() as conn:
        for model in STRIPE_TABLES:
            table = table_of(model)
            data = rows.get(table.name, [])
            for i in range(0, len(data), CHUNK):
                upsert(conn, table, data[i : i + CHUNK], account_id)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Phases:
    """Wall time per phase of rebuild_account, by wrapping the functions it calls (module attributes).

    Names of this and of earlier layouts (worker/rebuild.py before it was split into worker/ledger/): a name
    the code at hand lacks is skipped, so one bench compares before and after a change.
    """

    WRAPPED = {
        ("rebuild", "_ledger_rows"): "classification",  # reading + classifying + upcoming lines
        ("rebuild", "_classified"): "classification",
        ("rebuild", "_upcoming"): "classification",
        ("read", "read_batch"): "classification",
        ("rebuild", "ledger_rows"): "classification",
        ("rebuild", "_write_ledger"): "ledger write",
        (
            "rebuild",
            "bulk_insert",
        ): "ledger write",  # before _write_ledger existed: only bulk-inserts the ledger
        ("write", "clear_account"): "ledger write",
        ("write", "clear_customers"): "ledger write",
        ("write", "insert_ledger"): "ledger write",
        ("rebuild", "ensure_snapshots"): "snapshots",
        ("rebuild", "_write_snapshots"): "snapshots",
        ("write", "batch_snapshots"): "snapshots",
        ("write", "settle_days"): "snapshots",
    }
    # A function is not timed on its own where the function that calls it is (older versions of the module
    # lack the caller): its time is already in the caller's.
    SUPERSEDED = {"bulk_insert": "_write_ledger", "_classified": "_ledger_rows", "_upcoming": "_ledger_rows"}

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @staticmethod
    def _module(name: str) -> Any:
        if name == "rebuild":
            return rebuild
        try:
            return importlib.import_module(f"worker.ledger.{name}")
        except ImportError:
            return None

    @contextmanager
    def installed(self) -> Iterator[None]:
        saved = []
        for (where, name), phase in self.WRAPPED.items():
            module = self._module(where)
            original = getattr(module, name, None) if module is not None else None
            caller = self.SUPERSEDED.get(name)
            if original is None or (caller is not None and hasattr(rebuild, caller)):
                continue
            saved.append((module, name, original))
            setattr(module, name, self._wrap(original, phase))
        try:
            yield
        finally:
            for module, name, original in saved:
                setattr(module, name, original)

    def _wrap(self, fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - started

        return timed


def digest(engine: Engine, account_id: int) -> tuple[str, int, int]:
    """sha256 over the account's ledger_line and mrr_snapshot rows (in key order), and the row counts."""
    h = hashlib.sha256()
    counts = []
    with engine.connect() as conn:
        for table, order in (("ledger_line", "line_id"), ("mrr_snapshot", "customer_id, day")):
            n = 0
            # statements built from our own table and column names only
            names = conn.execute(text(f"SELECT * FROM {table} WHERE 1 = 0")).keys()  # noqa: S608
            cols = [c for c in names if c != "account_id"]
            query = f"SELECT {', '.join(cols)} FROM {table} WHERE account_id = :a ORDER BY {order}"  # noqa: S608
            for row in conn.execute(text(query), {"a": account_id}):
                norm = tuple(
                    v.isoformat() if isinstance(v, date) else (bool(v) if c == "counted" else v)
                    for c, v in zip(cols, row, strict=True)
                )
                h.update(repr(norm).encode())
                n += 1
            counts.append(n)
    return h.hexdigest()[:16], counts[0], counts[1]


def timed(label: str, attempt: str, engine: Engine, account: Account, profile: str | None) -> None:
    rss_before = maxrss_mb()
    phases = Phases()
    profiler = cProfile.Profile() if profile else None
    with phases.installed():
        started, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        if "full" in inspect.signature(rebuild.rebuild_account).parameters:
            result = rebuild.rebuild_account(engine, account, TODAY, full=attempt != "unchanged")
        else:  # before incremental rebuilds: every rebuild is full
            result = rebuild.rebuild_account(engine, account, TODAY)
        if profiler:
            profiler.disable()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if profiler and profile:
        profiler.dump_stats(f"{profile}.{label}.{attempt.split()[0]}")
    print(
        f"{label}: rebuild_account ({attempt}) {elapsed:.2f} s wall, {cpu:.2f} s CPU in this process; "
        f"{result.lines / elapsed:,.0f} lines/s ({result.lines:,} ledger lines, "
        f"{result.upcoming:,} of them upcoming; "
        f"{result.snapshot_days} snapshot days) (load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs)"
    )
    print(
        f"{label}:   peak memory (maxrss): {rss_before:.0f} MB before rebuild_account, "
        f"{maxrss_mb():.0f} MB after"
    )
    named = sum(phases.seconds.values())
    for phase in ("classification", "ledger write", "snapshots"):
        print(f"{label}:   {phase}: {phases.seconds.get(phase, 0.0):.2f} s")
    print(f"{label}:   other: {elapsed - named:.2f} s")


def run(label: str, engine: Engine, rows: dict[str, list[dict[str, Any]]], profile: str | None) -> None:
    account = make_account(engine)
    started = time.perf_counter()
    store_rows(engine, account.id or 0, rows)
    print(
        f"{label}: stored {len(rows['stripe_invoice_line']):,} lines, "
        f"{len(rows['stripe_invoice']):,} invoices, {len(rows['stripe_customer']):,} customers in "
        f"{time.perf_counter() - started:.1f} s"
    )
    # a nightly rebuild replaces an existing ledger (the rerun: full); "unchanged" is the default incremental
    # rebuild with no change noted since (the same as a full rebuild before incremental rebuilds existed)
    for attempt in ("first build", "rerun", "unchanged"):
        timed(label, attempt, engine, account, profile)
        sha, n_lines, n_snap = digest(engine, account.id or 0)
        print(f"{label}: result digest {sha} ({n_lines:,} ledger lines, {n_snap:,} snapshot rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--profile", help="write cProfile stats of rebuild_account to FILE.<database>")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = parsed(args.customers, args.months)
    print(
        f"generated {args.customers:,} customers x {args.months} months: "
        f"{len(rows['stripe_invoice_line']):,} lines in {time.perf_counter() - started:.1f} s "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    for kind in ("sqlite", "postgres"):
        if args.only in (None, kind):
            with scratch_database(kind, "rt_rebuild_bench") as (engine, _url):
                run(kind, engine, rows, args.profile)
    print(f"peak memory (maxrss): {maxrss_mb():.0f} MB (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
