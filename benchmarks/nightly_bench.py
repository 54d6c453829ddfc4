"""Nightly benchmark: what each step of a night costs, in time and peak memory, on a generated account.

The sample company (worker/demo/sample.py) is served by the local Stripe-compatible server in its own process
(worker/demo/stripe_server.py), as Stripe would be. The world is generated once per size, packed (each object
held as the JSON it is served as), and saved to a file that every database's server loads (in a temporary
directory, or in --worlds DIR to keep them for the next run). Three nights run against it on SQLite and on
PostgreSQL (a database of its own, dropped afterwards):

- first: a full sync, then rebuild, metrics, at-risk, backtest (reusing and storing what it judged, as the
  nightly does), Slack digest (dry run, nothing posted) and the HTML report;
- unchanged: nothing changed in Stripe (an incremental sync, then the same steps a day later);
- 1% changed: 1% of the customers changed through the events Stripe would send (a customer edited, a seat
  change, a cancellation scheduled or an invoice voided, in turn), a day later again.

Each step runs in a process of its own (forked from this small one), so its peak memory (maxrss) is its own:
the figure includes the interpreter and the imported libraries (about 90 MB). Prints one table per database
and size: seconds and peak MB per step and night. With --repeat, a size's nights run that many times (each on
a new database, the server loading the saved world again) and the table holds each step's median time and its
highest peak: single runs at a few thousand customers vary by as much as the growth the sizes are compared
for. Last, each step's growth from one size to the next, beside the customers'.

    .venv/bin/python benchmarks/nightly_bench.py [--customers 1500,6000] [--months 36]
                                                 [--only sqlite|postgres] [--steps sync,rebuild,...]
                                                 [--worlds DIR] [--repeat 5,5,1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy.engine import Engine
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("RETENTION_HOME", tempfile.mkdtemp(prefix="nightly-bench-"))
os.environ.setdefault("RETENTION_SECRET_KEY", Fernet.generate_key().decode())

from benchmarks.scratch import make_account, scratch_database  # noqa: E402
from integrations.stripe.writer_process import SeparateWriter, WriterUsage  # noqa: E402
from worker.alerts import run_alerts  # noqa: E402
from worker.backtest import compute_backtest  # noqa: E402
from worker.backtest_store import save_backtest  # noqa: E402
from worker.db import get_engine  # noqa: E402
from worker.demo import builders as b  # noqa: E402
from worker.demo.sample import build_sample_world  # noqa: E402
from worker.demo.stripe_server import FakeStripe, StripeWorld  # noqa: E402
from worker.metrics_run import compute_metrics  # noqa: E402
from worker.models import Account  # noqa: E402
from worker.rebuild import rebuild_account  # noqa: E402
from worker.report.loader import write_report  # noqa: E402
from worker.risk import at_risk  # noqa: E402
from worker.secrets import Secret, encrypt  # noqa: E402
from worker.settings import get_settings  # noqa: E402
from worker.syncing import run_sync  # noqa: E402

KEY = "sk_test_123"
NIGHTS = ("first", "unchanged", "1% changed")
Step = Callable[[Engine, Account, datetime, str], str]
Table = dict[str, dict[str, tuple[float, float, str]]]  # step -> night -> (seconds, peak MB, note)


# -- the server, in its own process ---------------------------------------------------------------------
def change_customers(world: StripeWorld, fraction: float, seed: int = 1) -> int:
    """Change `fraction` of the customers, each through one object and the event Stripe would send."""
    rng = random.Random(seed)
    now = int(time.time())
    customers = sorted(c for c, o in world.collections["customer"].by_id.items() if not o.get("deleted"))
    chosen = set(rng.sample(customers, max(1, int(len(customers) * fraction))))
    subs: dict[str, list[dict[str, Any]]] = {}
    for s in world.collections["subscription"].by_id.values():  # a packed world decodes each in turn
        if s["customer"] in chosen:
            subs.setdefault(s["customer"], []).append(s)
    invoices: dict[str, dict[str, Any]] = {}
    for inv in world.collections["invoice"].by_id.values():
        if inv["customer"] in chosen and inv["status"] == "paid":
            newest = invoices.get(inv["customer"])
            if newest is None or inv["created"] > newest["created"]:
                invoices[inv["customer"]] = inv
    for n, customer in enumerate(sorted(chosen)):
        kind = n % 4
        sub = subs[customer][0] if customer in subs else None
        paid = invoices.get(customer)
        if kind == 1 and sub is not None:
            items = [
                {**i, "quantity": (i.get("quantity") or 1) + 1} for i in world.subscription_items[sub["id"]]
            ]
            obj = world.add({**sub, "items": {**sub["items"], "data": items[:10]}, "_all_items": items})
            event = "customer.subscription.updated"
        elif kind == 2 and sub is not None:
            obj, event = world.add({**sub, "cancel_at_period_end": True}), "customer.subscription.updated"
        elif kind == 3 and paid is not None:
            obj = world.add({**paid, "status": "void", "_all_lines": world.invoice_lines[paid["id"]]})
            event = "invoice.voided"
        else:
            customer_obj = world.collections["customer"].by_id[customer]
            obj, event = world.add({**customer_obj, "email": "changed@example.com"}), "customer.updated"
        world.add(b.event(f"evt_bench_{n}", event, obj, now))
    return len(chosen)


def _generate(customers: int, months: int, path: Path) -> None:
    build_sample_world(customers=customers, months=months, packed=True).save(str(path))


def saved_world(worlds: Path, customers: int, months: int) -> Path:
    """The sample account's file for this size (and this month: the sample ends at the current month),
    generated in a process of its own the first time it is asked for (the folder made if need be)."""
    worlds.mkdir(parents=True, exist_ok=True)
    path = worlds / f"sample-{customers}x{months}-{date.today():%Y-%m}.world"
    if not path.exists():
        started = time.perf_counter()
        proc = multiprocessing.get_context("fork").Process(
            target=_generate, args=(customers, months, path.with_suffix(".part"))
        )
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"generating {customers:,} customers failed (exit {proc.exitcode})")
        path.with_suffix(".part").rename(path)
        print(
            f"world of {customers:,} customers generated in {time.perf_counter() - started:.0f} s "
            f"({path.stat().st_size / 1e6:,.0f} MB)",
            flush=True,
        )
    return path


def _serve(conn: Connection, path: Path) -> None:
    world = StripeWorld.load(str(path))
    with FakeStripe(world) as fake:
        conn.send(fake.url)
        while (message := conn.recv()) != "stop":
            if message == "cpu":  # the server's CPU seconds so far (what serving a sync cost it)
                usage = resource.getrusage(resource.RUSAGE_SELF)
                conn.send(usage.ru_utime + usage.ru_stime)
            else:
                conn.send(change_customers(world, message))


@contextmanager
def server_process(path: Path) -> Iterator[Connection]:
    """The saved account served from its own process; first message: its URL; send a fraction to change."""
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_serve, args=(theirs, path))
    proc.start()
    try:
        yield ours
    finally:
        ours.send("stop")
        proc.join(60)


# -- the steps, each in its own process -------------------------------------------------------------------
def sync_step(engine: Engine, account: Account, as_of: datetime, api_base: str) -> str:
    """As the nightly syncs (worker/syncing.py run_sync: the outcome recorded, so the next steps read the
    last sync's time instead of asking the invoices for their newest)."""
    result = run_sync(engine, get_settings(), account)
    assert result.ok, result.error
    return f"{result.mode}, {result.requests} requests"


def connected(engine: Engine, account: Account, api_base: str) -> Account:
    """The bench's account pointed at the local server with its (encrypted) key, unthrottled."""
    with Session(engine, expire_on_commit=False) as session:
        stored = session.get(Account, account.id)
        assert stored is not None
        stored.api_base, stored.rps = api_base, 0
        stored.key_encrypted = encrypt(get_settings(), Secret(KEY))
        session.add(stored)
        session.commit()
        session.refresh(stored)
    return stored


def rebuild_step(engine: Engine, account: Account, as_of: datetime, _: str) -> str:
    result = rebuild_account(engine, account, today=as_of.date())
    mode, customers = getattr(result, "mode", "full"), getattr(result, "customers", "?")
    return f"{mode}, {customers} customers, {result.lines} lines"


def metrics_step(engine: Engine, account: Account, as_of: datetime, _: str) -> str:
    payload = compute_metrics(engine, account, as_of, store=True)
    return f"NRR {payload['t12m']['nrr']}"


def at_risk_step(engine: Engine, account: Account, as_of: datetime, _: str) -> str:
    return f"{len(at_risk(engine, account, as_of).get('accounts', []))} at risk"


def backtest_step(engine: Engine, account: Account, as_of: datetime, _: str) -> str:
    """As the nightly runs it (worker/nightly_steps.py): what was judged before is reused, the result kept."""
    result = compute_backtest(engine, account, as_of, reuse=True)
    save_backtest(engine, account, result)
    return f"{result.flags} flags"


def digest_step(engine: Engine, account: Account, as_of: datetime, _: str) -> str:
    result = run_alerts(engine, get_settings(), account, as_of, dry_run=True, pause=0)
    return f"{len(result.payloads)} messages"


def report_step(engine: Engine, account: Account, as_of: datetime, _: str) -> str:
    out = Path(tempfile.mkdtemp(prefix="nightly-report-")) / "report.html"
    write_report(engine, account, as_of, out)
    return f"{out.stat().st_size / 1e6:.2f} MB"


STEPS: dict[str, Step] = {
    "sync": sync_step,
    "rebuild": rebuild_step,
    "metrics": metrics_step,
    "at-risk": at_risk_step,
    "backtest": backtest_step,
    "digest": digest_step,
    "report": report_step,
}


def _run_step(
    conn: Connection, name: str, url: str, account: Account, as_of: datetime, api_base: str
) -> None:
    engine = get_engine(url)
    writers = _writers_noted()
    started, cpu = time.perf_counter(), time.process_time()
    note = STEPS[name](engine, account, as_of, api_base)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if writers:  # a SQLite full sync's writer process: its CPU counts, and its peak as if at ours
        cpu += sum(w.cpu for w in writers)
        peak += max(w.peak_mb or 0.0 for w in writers)
        note += f" (its writer process: peak {max(w.peak_mb or 0.0 for w in writers):.0f} MB)"
    note += f"; {cpu:.1f} s of CPU"
    conn.send((elapsed, peak, note))


def _writers_noted() -> list[WriterUsage]:
    """What the separate writer processes started in this (forked) process report as they close."""
    noted: list[WriterUsage] = []
    close = SeparateWriter.close

    def noting(writer: SeparateWriter) -> None:
        close(writer)
        if writer.usage is not None:
            noted.append(writer.usage)

    SeparateWriter.close = noting  # type: ignore[method-assign]
    return noted


def in_child(
    name: str, url: str, account: Account, as_of: datetime, api_base: str
) -> tuple[float, float, str]:
    """One step in a forked process: (seconds, peak MB of that process, a note on what it did)."""
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    args = (theirs, name, url, account, as_of, api_base)
    proc = multiprocessing.get_context("fork").Process(target=_run_step, args=args)
    proc.start()
    try:
        found: tuple[float, float, str] = ours.recv()
    except EOFError:
        found = (float("nan"), float("nan"), f"failed (exit {proc.exitcode})")
    proc.join()
    return found


def _server_cpu(server: Connection) -> float:
    server.send("cpu")
    seconds: float = server.recv()
    return seconds


# -- the nights -----------------------------------------------------------------------------------------
def nights(kind: str, customers: int, world: Path, only: list[str] | None = None) -> Table:
    """Every step of every night for one database and size: step -> night -> (seconds, peak MB, note)."""
    steps = [s for s in STEPS if only is None or s in only]
    table: Table = {s: {} for s in steps}
    started = time.perf_counter()
    with (
        server_process(world) as server,
        scratch_database(kind, "rt_nightly_bench") as (engine, url),
    ):
        api_base = server.recv()
        print(f"{kind} {customers:,}: server up in {time.perf_counter() - started:.0f} s", flush=True)
        account = connected(engine, make_account(engine), api_base)
        engine.dispose()
        first_day = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
        for n, night in enumerate(NIGHTS):
            if night == "1% changed":
                server.send(0.01)
                print(f"{kind} {customers:,}: {server.recv()} customers changed", flush=True)
            as_of = first_day + timedelta(days=n)
            for step in steps:
                served = _server_cpu(server) if step == "sync" else 0.0
                table[step][night] = in_child(step, url, account, as_of, api_base)
                seconds, peak, note = table[step][night]
                if step == "sync":  # the two share this machine's cores: what serving the sync cost
                    note += f" (the server's: {_server_cpu(server) - served:.1f} s)"
                print(f"  {night:<10} {step:<9} {seconds:8.2f} s {peak:7.0f} MB  {note}", flush=True)
    return table


def print_header() -> None:
    """The head of a table with a column per night (the step table and the growth table)."""
    print("| step | " + " | ".join(NIGHTS) + " |")
    print("|---|" + "---|" * len(NIGHTS))


def print_table(kind: str, customers: int, months: int, table: Table, runs: int = 1) -> None:
    over = f", medians of {runs} runs" if runs > 1 else ""
    print(
        f"\n{kind}, {customers:,} customers x {months} months{over} (load average {os.getloadavg()[0]:.1f}):"
    )
    print_header()
    for step, by_night in table.items():
        cells = [f"{by_night[n][0]:.1f} s, {by_night[n][1]:.0f} MB" for n in NIGHTS]
        print(f"| {step} | " + " | ".join(cells) + " |")
    totals = [sum(by_night[n][0] for by_night in table.values()) for n in NIGHTS]
    peaks = [max(by_night[n][1] for by_night in table.values()) for n in NIGHTS]
    print(
        "| **night** | "
        + " | ".join(f"**{t:.1f} s, {p:.0f} MB**" for t, p in zip(totals, peaks, strict=True))
        + " |"
    )


NOISE = 0.5  # seconds: a step this short at the smaller size is timer and scheduling noise, not growth


def median_table(runs: list[Table]) -> Table:
    """The runs of one database and size as one table: each cell's median time and its highest peak (memory
    is a bound, so the worst run counts); the note of the median run."""
    merged: Table = {}
    for step in runs[0]:
        merged[step] = {}
        for night in NIGHTS:
            cells = sorted((run[step][night] for run in runs), key=lambda cell: cell[0])
            seconds = statistics.median(cell[0] for cell in cells)
            peak = max(cell[1] for cell in cells)
            merged[step][night] = (seconds, peak, cells[len(cells) // 2][2])
    return merged


def print_spread(runs: list[Table]) -> None:
    """Each step's first-night times over the runs (min-max), since single small runs vary by as much as the
    growth the table is read for."""
    if len(runs) < 2:
        return
    parts = []
    for step in runs[0]:
        times = [run[step]["first"][0] for run in runs]
        parts.append(f"{step} {min(times):.1f}-{max(times):.1f} s")
    print(f"first night over {len(runs)} runs (min-max): " + ", ".join(parts))


def print_growth(kind: str, sizes: list[int], tables: dict[int, Table]) -> None:
    """Each step's time at one size over its time at the size before, beside the growth in customers:
    linear or better means a ratio at or under the customers' (cells under NOISE seconds at the smaller size
    are shown as -)."""
    for small, large in zip(sizes, sizes[1:], strict=False):
        print(f"\n{kind}, growth {small:,} -> {large:,} customers ({large / small:.1f}x):")
        print_header()
        for step in tables[small]:
            cells = []
            for night in NIGHTS:
                before, after = tables[small][step][night][0], tables[large][step][night][0]
                cells.append("-" if before < NOISE else f"{after / before:.1f}x")
            print(f"| {step} | " + " | ".join(cells) + " |")


def repeats(spec: str, sizes: list[int]) -> list[int]:
    """`--repeat`: one count for every size, or one per size in the order of --customers."""
    counts = [int(c) for c in spec.split(",")]
    if len(counts) == 1:
        counts *= len(sizes)
    if len(counts) != len(sizes) or min(counts) < 1:
        raise SystemExit("--repeat: one count >= 1, or one per size of --customers")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default="1500,6000", help="comma-separated sizes")
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--steps", help=f"comma-separated steps to run (default all: {','.join(STEPS)})")
    parser.add_argument("--worlds", type=Path, help="keep the generated accounts here (default: a temp dir)")
    parser.add_argument(
        "--repeat",
        default="1",
        help="runs of the nights per size, each on a new database and a freshly loaded server: one count, "
        "or one per size (e.g. 5,5,1); the table shows each step's median time and highest peak",
    )
    args = parser.parse_args()
    steps = args.steps.split(",") if args.steps else None
    sizes = [int(c) for c in args.customers.split(",")]
    counts = repeats(args.repeat, sizes)
    worlds = args.worlds or Path(tempfile.mkdtemp(prefix="nightly-worlds-"))
    print(f"machine: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; today {date.today()}")
    kinds = [kind for kind in ("sqlite", "postgres") if args.only in (None, kind)]
    tables: dict[str, dict[int, Table]] = {kind: {} for kind in kinds}
    try:
        for customers, count in zip(sizes, counts, strict=True):
            world = saved_world(worlds, customers, args.months)
            for kind in kinds:
                runs = [nights(kind, customers, world, steps) for _ in range(count)]
                tables[kind][customers] = median_table(runs)
                print_table(kind, customers, args.months, tables[kind][customers], len(runs))
                print_spread(runs)
        for kind in kinds:
            print_growth(kind, sizes, tables[kind])
    finally:
        if args.worlds is None:
            shutil.rmtree(worlds, ignore_errors=True)


if __name__ == "__main__":
    main()
