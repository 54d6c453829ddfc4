"""Sync benchmark: full sync vs a bare fetch of the same data, requests vs the floor, rate under latency, the
nightly incremental's cost, and peak memory against account size. A script that prints figures, not a test.

    .venv/bin/python benchmarks/sync_bench.py [--customers 3000] [--skip-memory] [--postgres]

Everything runs against the local Stripe-compatible server (worker/demo/stripe_server.py) on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import requests
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("RETENTION_HOME", tempfile.mkdtemp(prefix="sync-bench-"))
os.environ.setdefault("RETENTION_SECRET_KEY", Fernet.generate_key().decode())

import integrations.stripe.sync as sync_module  # noqa: E402
from benchmarks.scratch import make_account, scratch_database  # noqa: E402
from integrations.stripe.client import StripeConfig, StripeReader, parse_body  # noqa: E402
from integrations.stripe.pages import Page  # noqa: E402
from integrations.stripe.sync import BATCH, LISTS, TX_SECONDS, Syncer, _FullRun  # noqa: E402
from metrics.cycles import without_cycle_collection  # noqa: E402
from worker.db import ensure_schema, session_scope  # noqa: E402
from worker.demo import builders as b  # noqa: E402
from worker.demo.sample import build_sample_world  # noqa: E402
from worker.demo.stripe_server import FakeStripe, StripeWorld  # noqa: E402
from worker.models import Account  # noqa: E402

KEY = "sk_test_123"


def _serve(conn: Connection, customers: int, latency: float) -> None:
    world = build_sample_world(customers=customers, packed=True)  # held as the JSON it serves
    with FakeStripe(world, latency=latency) as fake:
        conn.send(fake.url)
        conn.recv()


@contextmanager
def server_process(customers: int, latency: float = 0.0) -> Iterator[str]:
    """The sample account served from its own process, as Stripe is: its work does not share our GIL."""
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_serve, args=(theirs, customers, latency))
    proc.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        proc.join(30)


def fresh_account(label: str) -> tuple[Any, int]:
    engine = ensure_schema(f"sqlite:///{tempfile.mkdtemp(prefix='bench-db-')}/{label}.db")
    with session_scope(engine) as session:
        account = Account(name=label, key_encrypted="unused", rps=0)
        session.add(account)
        session.flush()
        assert account.id is not None
        return engine, account.id


def bare_fetch(url: str) -> tuple[float, int, list[dict[str, Any]]]:
    """The floor: page every list with limit=100 (and every long invoice's lines) and parse the JSON."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"
    count = 0
    invoice_pages: list[dict[str, Any]] = []
    start = time.perf_counter()
    for name, extra in LISTS.items():
        after = None
        while True:
            params = {"limit": 100, **extra, **({"starting_after": after} if after else {})}
            body = session.get(f"{url}/v1/{name}", params=params, timeout=30).json()
            count += 1
            for obj in body["data"]:
                lines = obj.get("lines") if name == "invoices" else None
                last = lines["data"][-1]["id"] if lines and lines["has_more"] else None
                while last:
                    more = session.get(
                        f"{url}/v1/invoices/{obj['id']}/lines",
                        params={"limit": 100, "starting_after": last},
                        timeout=30,
                    ).json()
                    count += 1
                    lines["data"].extend(more["data"])
                    last = more["data"][-1]["id"] if more["has_more"] else None
            if name == "invoices":
                invoice_pages.append(body)
            if not body["has_more"]:
                break
            after = body["data"][-1]["id"]
    return time.perf_counter() - start, count, invoice_pages


def full_sync(url: str, rps: float, label: str) -> tuple[float, int, int]:
    engine, account_id = fresh_account(label)
    reader = StripeReader(StripeConfig(api_key=KEY, api_base=url, rps=rps, account_label=label))
    start = time.perf_counter()
    outcome = Syncer(engine, account_id, reader).run(full=True)
    elapsed = time.perf_counter() - start
    assert not outcome.rejected, outcome.rejected[:3]
    return elapsed, reader.requests, account_id


def processing_rate(
    invoice_pages: list[dict[str, Any]], engine: Any = None, behind: bool = True
) -> tuple[float, float, int]:
    """Our own work per invoice without any HTTP: the full sync's writer (`_FullRun`: parse, bulk upsert,
    the segments' cursors saved with the pages, commit) fed the invoice pages. Invoices per second of wall
    time and of this process's CPU time (on PostgreSQL the server's work is in its own processes).

    behind=True is the writer behind the fetchers, the only time its speed bounds the sync: it takes the
    queued pages BATCH at a time and commits as the sync does, every TX_SECONDS. behind=False is the
    writer waiting for each page, committed on its own (the most commits it can make). Each page starts as
    the bytes of a response body (encoded before the clock starts: producing the body is the server's work)
    and is parsed as StripeReader parses it, so the figure includes the JSON parse; the collector is paused
    as the sync pauses it. On SQLite the clock stops once the write-ahead log is copied into the database
    file (a checkpoint left for later would flatter the figure).
    """
    if engine is None:
        engine, account_id = fresh_account("processing")
    else:
        account_id = make_account(engine).id
    syncer = Syncer(engine, account_id, reader=None)  # type: ignore[arg-type]  # the writer reads nothing
    syncer.state()
    now = int(time.time())
    segment = {"list": "invoices", "gte": None, "lt": None, "after": None, "done": False}
    checkpoint = {"started": now, "listing": now, "segments": {"invoices": segment}, "rejected": []}
    writer = _FullRun(syncer, checkpoint)
    bodies = [orjson.dumps(page["data"]) for page in invoice_pages]
    n = 0
    start, cpu = time.perf_counter(), time.process_time()
    batch = BATCH if behind else 1
    with without_cycle_collection():
        for first in range(0, len(bodies), batch):
            pages = []
            for body in bodies[first : first + batch]:
                objects = parse_body(body)  # fresh dicts, as each sync gets them
                pages.append(("invoices", Page(objects, objects[-1]["id"] if objects else None, True)))
                n += len(objects)
            writer._write(pages)
            if not behind:
                writer._commit()
        writer._commit()
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu), n


def fetch_only_rate(customers: int) -> tuple[float, int]:
    """The same sync with storing replaced by nothing: is the rate bound by fetching or by our writer?"""
    real = sync_module.store_page
    sync_module.store_page = lambda conn, account_id, name, objects, listed_at=None: (  # type: ignore[assignment]
        ({o["id"] for o in objects}, [])
        if name == "invoices"
        else real(conn, account_id, name, objects, listed_at)
    )
    try:
        with server_process(customers, latency=0.1) as url:
            seconds, requests_, _ = full_sync(url, 25, "fetch-only")
    finally:
        sync_module.store_page = real
    return seconds, requests_


def change_one_percent(world: StripeWorld, seed: int = 1) -> int:
    """Touch 1% of customers, subscriptions and invoices, each with the event Stripe would send."""
    rng = random.Random(seed)
    now = int(time.time())
    changed = 0
    for kind, event_type, edit in (
        ("customer", "customer.updated", lambda o: {**o, "email": "changed@example.com"}),
        ("subscription", "customer.subscription.updated", lambda o: {**o, "cancel_at_period_end": True}),
        ("invoice", "invoice.voided", lambda o: {**o, "status": "void"}),
    ):
        ids = sorted(world.collections[kind].by_id)
        for obj_id in rng.sample(ids, max(1, len(ids) // 100)):
            obj = edit(world.collections[kind].by_id[obj_id])
            world.add({**obj, "_all_lines": world.invoice_lines[obj_id]} if kind == "invoice" else obj)
            world.add(b.event(f"evt_bench_{changed}", event_type, obj, now))
            changed += 1
    return changed


def peak_memory(customers: int) -> float:
    """Peak traced memory (MiB) of a full sync, the served world excluded (it is built before tracing)."""
    world = build_sample_world(customers=customers)
    with FakeStripe(world) as fake:
        engine, account_id = fresh_account(f"mem{customers}")
        reader = StripeReader(StripeConfig(api_key=KEY, api_base=fake.url, rps=0))
        tracemalloc.start()
        Syncer(engine, account_id, reader).run(full=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20


def rate_figures(customers: int) -> None:
    with server_process(customers, latency=0.1) as url:
        slow_s, slow_requests, _ = full_sync(url, 25, "latency")
    print(
        f"100 ms latency, budget 25/s: {slow_requests} requests in {slow_s:.1f}s = "
        f"{slow_requests / slow_s:.1f} requests/s (goal >= 20/s)"
    )
    fetch_s, fetch_requests = fetch_only_rate(customers)
    print(f"  same, invoices not stored: {fetch_requests / fetch_s:.1f} requests/s (the fetchers alone)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--postgres", action="store_true", help="also the processing rate on PostgreSQL")
    parser.add_argument("--only-rate", action="store_true", help="only the 100 ms latency figures")
    args = parser.parse_args()
    print(f"machine: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (figures scale with it)")
    if args.only_rate:
        rate_figures(args.customers)
        return

    t = time.perf_counter()
    world = build_sample_world(customers=args.customers)
    invoices = len(world.collections["invoice"].by_id)
    lines = sum(len(v) for v in world.invoice_lines.values())
    print(
        f"world: {args.customers} customers, 24 months, {invoices} invoices, {lines} lines "
        f"(built in {time.perf_counter() - t:.1f}s); the server runs in its own process"
    )

    with server_process(args.customers) as url:
        bare_s, floor, invoice_pages = bare_fetch(url)
        sync_s, sync_requests, _ = full_sync(url, 0, "unlimited")
    print(f"bare fetch (sequential, parse JSON): {bare_s:.2f}s, {floor} requests (the floor)")
    print(f"full sync, budget unlimited: {sync_s:.2f}s = {sync_s / bare_s:.2f}x bare fetch (goal <= 2x)")
    print(f"requests: {sync_requests} = {sync_requests / floor:.3f}x the floor (goal <= 1.05x)")
    pages = len(invoice_pages)
    print(f"own processing (the sync's writer without HTTP: parse + upsert + commit), {pages} pages:")
    for behind, when in (
        (True, f"behind the fetchers, when it bounds the sync: a commit every {TX_SECONDS:g} s"),
        (False, "keeping up with them: a commit per page"),
    ):
        rate, cpu_rate, n = processing_rate(invoice_pages, behind=behind)
        print(
            f"  {when}: {rate:,.0f} invoices/s over {n} invoices "
            f"(goal >= 15,000/s); {cpu_rate:,.0f} invoices per CPU second"
        )
        if args.postgres:
            with scratch_database("postgres", "sync_bench") as (engine, _):
                rate, cpu_rate, n = processing_rate(invoice_pages, engine, behind)
            print(
                f"    same on PostgreSQL: {rate:,.0f} invoices/s; {cpu_rate:,.0f} invoices per CPU second of "
                "ours (the server's not counted)"
            )
    del invoice_pages
    rate_figures(args.customers)

    with FakeStripe(world, cache_json=True) as fake:  # in-process: the test changes the served world
        engine, account_id = fresh_account("nightly")
        Syncer(engine, account_id, StripeReader(StripeConfig(api_key=KEY, api_base=fake.url, rps=0))).run()
        quiet = StripeReader(StripeConfig(api_key=KEY, api_base=fake.url, rps=0))
        Syncer(engine, account_id, quiet).run()
        changed = change_one_percent(world)
        nightly = StripeReader(StripeConfig(api_key=KEY, api_base=fake.url, rps=0))
        outcome = Syncer(engine, account_id, nightly).run()
    print(f"nightly incremental, unchanged account: {quiet.requests} requests")
    print(
        f"nightly incremental, {changed} objects changed (1%): {nightly.requests} requests ({outcome.mode})"
    )

    if not args.skip_memory:
        small, large = max(100, args.customers // 4), args.customers
        print(
            f"peak memory of a full sync: {peak_memory(small):.1f} MiB at {small} customers, "
            f"{peak_memory(large):.1f} MiB at {large} customers (goal: flat)"
        )


if __name__ == "__main__":
    main()
