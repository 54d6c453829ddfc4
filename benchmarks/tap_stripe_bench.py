"""Our full sync against singer-io's tap-stripe 3.3.0 on the same account, both end to end, wall and CPU time.
A script that prints figures, not a test.

    python3 -m venv /tmp/tap-stripe && /tmp/tap-stripe/bin/pip install tap-stripe==3.3.0
    .venv/bin/python benchmarks/tap_stripe_bench.py --tap-python /tmp/tap-stripe/bin/python [--customers 3000]
        [--repeat 5] [--worlds /tmp/worlds --months 36]

The sample account (worker/demo/sample.py) is served by the local Stripe-compatible server in its own process,
as in benchmarks/sync_bench.py. tap-stripe runs in its own virtualenv (it pins an old stripe SDK) through
benchmarks/tap_stripe_run.py, which points the SDK at that server. Both read the same objects: customers,
prices (the tap's `plans` stream) and products, subscriptions with their items, invoices with all their
lines. With --worlds, the account is the saved one nightly_bench.py serves (generated there the first
time; `--months`, 36 by default, as the issue's 100,000-customer account), so the comparison can be made on
that account too. Ours also parses and stores them in SQLite; the tap only extracts (its records go to a file,
what a Singer target would then load), so the comparison leaves the tap's loading out, in its favour. The
tap's `start_date` is the day before the account's oldest object: no empty date windows before it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import requests
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nightly_bench  # noqa: E402
from sync_bench import KEY, fresh_account, server_process  # noqa: E402

from integrations.stripe.client import StripeConfig, StripeReader  # noqa: E402
from integrations.stripe.repository.counts import object_counts  # noqa: E402
from integrations.stripe.repository.sync_state import customer_created_times  # noqa: E402
from integrations.stripe.sync import Syncer  # noqa: E402
from metrics.dbapi import reader_of  # noqa: E402

HERE = Path(__file__).resolve().parent
# tap-stripe's streams for what our full sync reads (its `plans` stream reads the prices, see tap_stripe_run)
STREAMS = (
    "customers",
    "plans",
    "products",
    "subscriptions",
    "subscription_items",
    "invoices",
    "invoice_line_items",
)
# our stored kinds (retention status) beside the tap's streams
OURS = {
    "customers": "customers",
    "plans": "prices",
    "products": "products",
    "subscriptions": "subscriptions",
    "subscription_items": None,
    "invoices": "invoices",
    "invoice_line_items": "line_items",
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tap_command(tap_python: str, url: str, config: Path, *args: str) -> list[str]:
    """The tap, run by our wrapper that points it at the local server."""
    return [tap_python, str(HERE / "tap_stripe_run.py"), "--api-base", url, "--config", str(config), *args]


def selected_catalog(tap_python: str, url: str, config: Path, out: Path) -> None:
    """The tap's discovered catalog with our streams selected (every field of them: the tap's default)."""
    found = subprocess.run(
        tap_command(tap_python, url, config, "--discover"),
        check=True,
        capture_output=True,
    )
    catalog = json.loads(found.stdout)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] in STREAMS
    out.write_text(json.dumps(catalog))


def run_tap(
    tap_python: str, url: str, config: Path, catalog: Path, work: Path
) -> tuple[float, float, Counter[str], str]:
    """One sync of the tap (records to a file): wall and CPU seconds, records per stream, requests."""
    records = work / "records.jsonl"
    cpu = children_cpu()
    start = time.perf_counter()
    with records.open("wb") as out, (work / "tap.log").open("wb") as log:
        subprocess.run(
            tap_command(tap_python, url, config, "--catalog", str(catalog)),
            check=True,
            stdout=out,
            stderr=log,
        )
    wall = time.perf_counter() - start
    cpu = children_cpu() - cpu
    counts: Counter[str] = Counter()
    with records.open("rb") as lines:
        for line in lines:
            message = json.loads(line)
            if message.get("type") == "RECORD":
                counts[message["stream"]] += 1
    asked = [
        line for line in (work / "tap.log").read_text().splitlines() if line.startswith("tap-stripe requests")
    ]
    return wall, cpu, counts, asked[-1].split(": ")[1] if asked else "?"


def start_date(url: str, engine: Engine, account_id: int) -> str:
    """The tap's start_date: the day before the account's oldest customer, product or price (the tap skips the
    lines of invoices created exactly at its start), so no empty date windows come before it."""
    with engine.connect() as conn:
        oldest = customer_created_times(reader_of(conn), account_id)[0]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"
    for name in ("products", "prices"):
        after = None
        while True:
            params = {"limit": 100, **({"starting_after": after} if after else {})}
            body = session.get(f"{url}/v1/{name}", params=params, timeout=30).json()
            oldest = min([oldest, *(o["created"] for o in body["data"])])
            if not body["has_more"]:
                break
            after = body["data"][-1]["id"]
    day = datetime.fromtimestamp(oldest - 86400, UTC).replace(hour=0, minute=0, second=0)
    return day.strftime("%Y-%m-%dT%H:%M:%SZ")


def ours(url: str, label: str) -> tuple[float, float, int, Engine, int]:
    """Our full sync into a fresh SQLite database, budget unlimited: wall and CPU seconds (ours and our
    writer process's), requests."""
    engine, account_id = fresh_account(label)
    reader = StripeReader(StripeConfig(api_key=KEY, api_base=url, rps=0, account_label=label))
    cpu, start = own_cpu() + children_cpu(), time.perf_counter()
    outcome = Syncer(engine, account_id, reader).run(full=True)
    # with the CPU of the sync's separate writer process (integrations/stripe/writer_process.py)
    seconds, cpu = time.perf_counter() - start, own_cpu() + children_cpu() - cpu
    assert not outcome.rejected, outcome.rejected[:3]
    return seconds, cpu, reader.requests, engine, account_id


Timing = tuple[float, float]  # wall and CPU seconds of one run


def compared(ours_runs: list[Timing], tap_runs: list[Timing]) -> str:
    """How much faster ours is: the ratio of the median times (wall, then CPU) and, over several runs, the
    spread of the ratios of the runs taken side by side. Both sides are CPU-bound and vary by a fifth or more
    from one run to the next on a shared machine, so one pair of runs can land either side of a goal."""
    wall = statistics.median(t[0] for t in tap_runs) / statistics.median(o[0] for o in ours_runs)
    cpu = statistics.median(t[1] for t in tap_runs) / statistics.median(o[1] for o in ours_runs)
    line = f"ours: {wall:.1f}x faster in wall time, {cpu:.1f}x in CPU time"
    if len(ours_runs) > 1:
        pairs = [t[0] / o[0] for o, t in zip(ours_runs, tap_runs, strict=True)]
        line += f" (medians of {len(ours_runs)} runs each; run by run {min(pairs):.1f}-{max(pairs):.1f}x)"
    return line + " (goal >= 8x)"


@contextmanager
def served(customers: int, worlds: str | None, months: int) -> Iterator[str]:
    """The account's URL: the sample generated in the server's process, or with `worlds` the saved account
    of that size and length nightly_bench.py serves (generating large ones in memory takes gigabytes)."""
    if worlds is None:
        with server_process(customers) as url:
            yield url
        return
    path = nightly_bench.saved_world(Path(worlds), customers, months)
    with nightly_bench.server_process(path) as server:
        yield server.recv()


def dropped(engine: Engine) -> None:
    """A run's scratch database (benchmarks/sync_bench.py fresh_account: a folder of its own) removed once
    read: at 100,000 customers each is 3 GB, and a run of the bench makes one per timed sync and warm-up."""
    engine.dispose()
    shutil.rmtree(Path(str(engine.url.database)).parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--tap-python", required=True, help="the Python of a virtualenv holding tap-stripe")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each side, taken in turns; the ratio is of the medians"
    )
    parser.add_argument("--worlds", help="serve the saved account of nightly_bench.py from this folder")
    parser.add_argument("--months", type=int, default=36, help="with --worlds: the account's months")
    args = parser.parse_args()
    if args.repeat < 1:
        raise SystemExit("--repeat: at least 1")
    print(f"machine: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (figures scale with it)")
    # the tap's records go in a folder removed at the end: 1.4 GB at 100,000 customers
    with tempfile.TemporaryDirectory(prefix="tap-stripe-bench-") as work:
        compare(args, Path(work))


def compare(args: argparse.Namespace, work: Path) -> None:
    """Both sides --repeat times in turns on the account, then each stream's counts and the ratio."""
    ours_runs: list[Timing] = []
    tap_runs: list[Timing] = []
    with served(args.customers, args.worlds, args.months) as url:
        # the server renders each object once: every timed run gets its cached JSON
        dropped(ours(url, "warm-up")[3])
        config = work / "config.json"
        catalog = work / "catalog.json"
        for run in range(args.repeat):
            sync_s, sync_cpu, sync_requests, engine, account_id = ours(url, f"ours-{run}")
            if run == 0:
                config.write_text(
                    json.dumps(
                        {
                            "client_secret": KEY,
                            "account_id": "acct_sample",
                            "start_date": start_date(url, engine, account_id),
                        }
                    )
                )
                selected_catalog(args.tap_python, url, config, catalog)
                with engine.connect() as conn:
                    stored = object_counts(reader_of(conn), account_id)
            dropped(engine)
            tap_s, tap_cpu, tap_counts, tap_requests = run_tap(args.tap_python, url, config, catalog, work)
            ours_runs.append((sync_s, sync_cpu))
            tap_runs.append((tap_s, tap_cpu))
            print(
                f"run {run + 1}: our full sync (parse + store in SQLite) {sync_s:.2f}s wall, "
                f"{sync_cpu:.2f}s CPU, {sync_requests} requests; tap-stripe 3.3.0 (extract only, records to "
                f"a file) {tap_s:.2f}s wall, {tap_cpu:.2f}s CPU, {tap_requests} requests: "
                f"{tap_s / sync_s:.1f}x",
                flush=True,
            )
    account = f"the saved account, {args.months} months" if args.worlds else "the sample, 24 months"
    since = json.loads(config.read_text())["start_date"]
    print(f"{args.customers} customers ({account}); tap-stripe start_date {since}")
    for stream in STREAMS:
        kind = OURS[stream]
        mine = stored.get(kind, "-") if kind else "-"
        print(f"  {stream}: tap-stripe {tap_counts.get(stream, 0)} records, ours {mine}")
    print(compared(ours_runs, tap_runs))


if __name__ == "__main__":
    main()
