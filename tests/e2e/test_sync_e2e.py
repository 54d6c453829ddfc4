"""Whole syncs as they run in production: a separate process killed with SIGKILL mid-way, then run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from integrations.stripe.models import SyncState
from metrics.tables import table_of
from tests.support.stripe_world import add_account, build_world, counts, snapshot, world_totals
from worker.db import ensure_schema
from worker.demo.stripe_server import FakeStripe, Fault
from worker.settings import get_settings
from worker.syncing import run_sync

ROOT = Path(__file__).resolve().parents[2]


def test_a_sync_killed_mid_way_resumes_to_exactly_the_data_of_a_clean_sync() -> None:
    world = build_world(customers=120, months=8)
    settings = get_settings()
    engine = ensure_schema(settings.database_url)
    with FakeStripe(world, latency=0.01) as fake:
        killed = add_account(engine, fake.url, name="killed")
        clean = add_account(engine, fake.url, name="clean")
        assert killed.id is not None and clean.id is not None
        proc = subprocess.Popen(
            [sys.executable, "-c", "from worker.cli.main import main; main()", "sync", "killed"],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                if counts(engine, killed.id)["invoices"] >= 100:  # some invoice pages committed, not all
                    break
                time.sleep(0.02)
            assert proc.poll() is None, "the sync finished before it could be killed: make the world larger"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        stored_when_killed = counts(engine, killed.id)
        with engine.connect() as conn:
            checkpoint = conn.execute(
                select(table_of(SyncState).c.checkpoint).where(table_of(SyncState).c.account_id == killed.id)
            ).scalar()
        assert checkpoint.get("full"), "killed after the end: nothing to resume"
        assert 0 < stored_when_killed["invoices"] < world_totals(world)["invoices"]

        resumed = run_sync(engine, settings, killed)
        assert resumed.ok and resumed.resumed and resumed.mode == "full"
        done = run_sync(engine, settings, clean)
        assert done.ok and not done.resumed
    assert fake.writes == []
    assert counts(engine, killed.id) == world_totals(world)
    assert snapshot(engine, killed.id) == snapshot(engine, clean.id)


def test_cli_sync_rides_out_faults_and_latency_with_a_small_budget() -> None:
    world = build_world(customers=20, months=4)
    settings = get_settings()
    engine = ensure_schema(settings.database_url)
    with FakeStripe(world, latency=0.02) as fake:
        account = add_account(engine, fake.url, name="acme", rps=25)
        fake.inject(
            Fault(status=429),
            Fault(status=500, path_prefix="/v1/invoices"),
            Fault(drop=True),
            Fault(status=502, path_prefix="/v1/subscriptions"),
        )
        started = time.monotonic()
        result = run_sync(engine, settings, account)
        elapsed = time.monotonic() - started
    assert result.ok, result.error
    assert fake.faults == []
    assert counts(engine, account.id or 0) == world_totals(world)
    # the budget holds: never more than 25 requests a second (first one free), retries included
    assert len(fake.requests) <= 1 + 25 * elapsed
