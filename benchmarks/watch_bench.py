"""Same-day watch benchmark: what a quiet tick costs (requests, seconds) on a large account, how a busy tick's
cost follows its events, and how long an urgent event takes to reach Slack. A script that prints figures.

    .venv/bin/python benchmarks/watch_bench.py [--customers 6000] [--ticks 20] [--db sqlite|postgres]

The account is the generated sample company served by the local Stripe-compatible server
(worker/demo/stripe_server.py), fully synced and rebuilt first as the nightly leaves it; Slack is a local
webhook that records when each message arrives. A tick's own time is measured; the wait for the next tick
is at most RETENTION_WATCH_EVERY, so event-to-Slack is at most the interval plus one tick.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("RETENTION_HOME", tempfile.mkdtemp(prefix="watch-bench-"))
os.environ.setdefault("RETENTION_SECRET_KEY", Fernet.generate_key().decode())

from benchmarks.scratch import scratch_database  # noqa: E402
from metrics.calendar import utc_now  # noqa: E402
from worker.db import session_scope  # noqa: E402
from worker.demo.loopback import LoopbackServer, QuietHandler  # noqa: E402
from worker.demo.sample import build_sample_world  # noqa: E402
from worker.demo.stripe_server import FakeStripe, StripeWorld  # noqa: E402
from worker.models import Account  # noqa: E402
from worker.mrr_queries import mrr_at  # noqa: E402
from worker.rebuild import rebuild_account  # noqa: E402
from worker.secrets import Secret, encrypt  # noqa: E402
from worker.settings import get_settings  # noqa: E402
from worker.syncing import run_sync  # noqa: E402
from worker.watch import TickResult, run_tick  # noqa: E402

KEY = "sk_test_123"


class Webhook(LoopbackServer):
    """A Slack incoming webhook that notes when each post arrived."""

    def __init__(self) -> None:
        self.arrived: list[float] = []

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.arrived.append(time.time())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        return Handler


def connect(engine: Engine, stripe: FakeStripe, slack: Webhook) -> Account:
    settings = get_settings()
    with session_scope(engine) as session:
        account = Account(
            name="bench",
            api_base=stripe.url,
            rps=0,
            key_encrypted=encrypt(settings, Secret(KEY)),
            key_mask="sk_test_...t_123",
            slack_webhook_encrypted=encrypt(settings, Secret(f"{slack.base_url}/services/x")),
        )
        session.add(account)
        session.flush()
        session.refresh(account)
        session.expunge(account)
    return account


def largest_live(world: StripeWorld, paying: list[str]) -> list[str]:
    """Live, not yet cancelling subscriptions of the paying customers, largest MRR first."""
    subs = [
        s
        for s in world.collections["subscription"].by_id.values()
        if s["status"] == "active" and not s["cancel_at_period_end"] and not s["cancel_at"]
    ]
    by_customer = {s["customer"]: s["id"] for s in subs}
    return [by_customer[c] for c in paying if c in by_customer]


def cancel(world: StripeWorld, sub_ids: list[str]) -> None:
    at = int(time.time())
    for sub_id in sub_ids:
        world.change(
            "subscription",
            sub_id,
            "customer.subscription.updated",
            at,
            cancel_at_period_end=True,
            canceled_at=at,
        )


def line(label: str, result: TickResult) -> str:
    return (
        f"{label}: {result.outcome}, {result.events} events, {result.customers} customers judged, "
        f"{result.requests} requests, {result.alerts} alerts, {result.seconds * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    started = time.monotonic()
    world = build_sample_world(customers=args.customers)
    print(f"sample world: {args.customers:,} customers built in {time.monotonic() - started:.1f} s")
    with (
        scratch_database(args.db, "watch_bench") as (engine, _),
        FakeStripe(world, cache_json=True) as stripe,
        Webhook() as slack,
    ):
        account = connect(engine, stripe, slack)
        settings = get_settings()
        t = time.monotonic()
        assert run_sync(engine, settings, account, full=True).ok
        rebuild_account(engine, account)
        print(f"full sync + rebuild (the nightly's state): {time.monotonic() - t:.1f} s")
        with engine.connect() as conn:
            paying = [c.customer_id for c in mrr_at(conn, account.id or 0, utc_now())]
        print(f"paying customers now: {len(paying):,}")

        quiet = [run_tick(engine, settings, account, pause=0) for _ in range(args.ticks)]
        assert all(r.outcome == "quiet" for r in quiet), {r.outcome for r in quiet}
        seconds = sorted(r.seconds for r in quiet)
        print(
            f"quiet tick x{args.ticks}: requests {max(r.requests for r in quiet)} (max), "
            f"median {statistics.median(seconds) * 1000:.0f} ms, max {seconds[-1] * 1000:.0f} ms"
        )
        live = largest_live(world, paying)  # all within the top fifth: every one is urgent
        for n in (1, 10, 50):
            subs, live = live[:n], live[n:]
            event_at = time.time()
            cancel(world, subs)
            before = len(slack.arrived)
            result = run_tick(engine, settings, account, pause=0)
            print(line(f"busy tick, {n} cancellations", result))
            if n == 1 and len(slack.arrived) > before:
                took = slack.arrived[-1] - event_at
                print(f"  event -> Slack once the tick starts: {took:.2f} s (plus the wait for the tick)")
        print(line("quiet tick after", run_tick(engine, settings, account, pause=0)))


if __name__ == "__main__":
    main()
