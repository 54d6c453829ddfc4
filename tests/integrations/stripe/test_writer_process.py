"""The separate writer process of a SQLite full sync (integrations/stripe/writer_process.py): the same rows as
writing in the sync's own process, transactions kept, and its failures reported, never lost."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from integrations.stripe import store as store_module
from integrations.stripe import sync as sync_module
from integrations.stripe import writer_process
from integrations.stripe.models import StripeCustomer, StripeInvoice, SyncState
from integrations.stripe.writer_process import SeparateWriter, WriterFailed, driver_sql
from metrics.tables import table_of
from tests.integrations.stripe.test_sync import (
    assert_everything_stored,
    assert_held_until_due,
    assert_resumes_to_a_clean_sync,
    new_account,
    syncer,
)
from tests.support.stripe_world import add_account, counts, snapshot
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.errors import transient

CUSTOMERS = table_of(StripeCustomer)
STATE = table_of(SyncState)


def started(monkeypatch: pytest.MonkeyPatch) -> list[SeparateWriter]:
    """The separate writers the syncs below start."""
    writers: list[SeparateWriter] = []
    init = SeparateWriter.__init__

    def noting(self: SeparateWriter, engine: Engine) -> None:
        init(self, engine)
        writers.append(self)

    monkeypatch.setattr(SeparateWriter, "__init__", noting)
    return writers


def customer_rows(engine: Engine, account_id: int) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        query = select(CUSTOMERS.c.id, CUSTOMERS.c.deleted).where(CUSTOMERS.c.account_id == account_id)
        return [tuple(r) for r in conn.execute(query.order_by(CUSTOMERS.c.id))]


def test_a_full_sync_into_sqlite_writes_from_a_separate_process_the_rows_of_one_that_does_not(
    sqlite_engine: Engine, server: FakeStripe, world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers = started(monkeypatch)
    separate = new_account(sqlite_engine, server, name="separate")
    syncer(sqlite_engine, separate, server).run()
    assert len(writers) == 1 and writers[0]._child.returncode == 0  # it ran, and ended
    usage = writers[0].usage  # as the child reported it when it closed
    assert usage is not None and usage.cpu > 0 and (usage.peak_mb is None or 5 < usage.peak_mb < 200)
    inline = new_account(sqlite_engine, server, name="inline")
    syncer(sqlite_engine, inline, server, separate_writer=False).run()
    assert len(writers) == 1
    assert_everything_stored(sqlite_engine, separate, world)
    assert snapshot(sqlite_engine, separate) == snapshot(sqlite_engine, inline)
    with sqlite_engine.connect() as conn:  # the checkpoint it committed last, then cleared
        states = dict(conn.execute(select(STATE.c.account_id, STATE.c.checkpoint)).all())
    assert states == {separate: {}, inline: {}}


def test_postgresql_and_memory_databases_write_in_the_syncs_own_process(
    pg_engine: Engine, server: FakeStripe, world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers = started(monkeypatch)
    account_id = new_account(pg_engine, server)
    sync = syncer(pg_engine, account_id, server)
    assert not sync.separate_writer
    sync.run()
    assert writers == []
    assert_everything_stored(pg_engine, account_id, world)


def test_core_statements_reach_the_child_as_sqlalchemy_would_execute_them(sqlite_engine: Engine) -> None:
    """JSON through the engine's own serializer, booleans as 0/1, IN lists one placeholder per value: a state
    and customers written through the writer read back as written."""
    account = add_account(sqlite_engine, "http://127.0.0.1:9", name="acme").id
    checkpoint = {"full": {"segments": {"invoices:0": {"after": "in_9", "done": False}}, "rejected": []}}
    with sqlite_engine.begin() as conn:
        conn.execute(STATE.insert().values(account_id=account, checkpoint={}, rejected=[], requests=0))
        for customer in ("cus_a", "cus_b"):
            conn.execute(CUSTOMERS.insert().values(account_id=account, id=customer, deleted=True, raw={}))
    statement = update(CUSTOMERS).where(CUSTOMERS.c.id.in_(["cus_a", "cus_b"])).values(deleted=False)
    sql, params = driver_sql(statement, sqlite_engine.dialect)
    assert sql.count("?") == len(params) == 3 and params[0] == 0

    writer = SeparateWriter(sqlite_engine)
    try:
        writer.execute(update(STATE).where(STATE.c.account_id == account).values(checkpoint=checkpoint))
        store_module.touch_listed(writer, "customers", account, ["cus_a", "cus_b"], 7)
        writer.commit()
        writer.settle()
    finally:
        writer.close()
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(STATE.c.checkpoint)).scalar_one() == checkpoint
        query = select(CUSTOMERS.c.id, CUSTOMERS.c.deleted, CUSTOMERS.c.listed_at).order_by(CUSTOMERS.c.id)
        assert [tuple(r) for r in conn.execute(query)] == [("cus_a", False, 7), ("cus_b", False, 7)]


def scratch_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(
            "CREATE TABLE child (id TEXT PRIMARY KEY, parent_id INTEGER REFERENCES parent (id))"
        )


def stored(engine: Engine, table: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.exec_driver_sql(f"SELECT id FROM {table} ORDER BY id").scalars())  # noqa: S608


def test_a_failed_statement_voids_its_transaction_and_its_commit_reports_it(sqlite_engine: Engine) -> None:
    """The connection's settings reach the child (foreign keys are checked there too); a statement that fails
    drops its whole transaction, the commit before it stays, and the failure names SQLite's error."""
    scratch_tables(sqlite_engine)
    insert = "INSERT INTO child (id, parent_id) VALUES (?, ?)"
    writer = SeparateWriter(sqlite_engine)
    done: list[str] = []
    try:
        writer.exec_driver_sql("INSERT INTO parent (id) VALUES (1)")
        writer.exec_driver_sql(insert, [("kept", 1)])
        writer.commit(lambda: done.append("first"))
        writer.exec_driver_sql(insert, [("lost", 1)])
        writer.exec_driver_sql(insert, [("orphan", 99)])  # no parent 99: a foreign key failure
        writer.exec_driver_sql(insert, [("after", 1)])
        writer.commit(lambda: done.append("second"))
        with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"):
            writer.settle()
    finally:
        writer.close()
    assert done == ["first"]
    assert stored(sqlite_engine, "child") == ["kept"]


def test_a_rollback_drops_what_was_sent_since_the_last_commit(sqlite_engine: Engine) -> None:
    scratch_tables(sqlite_engine)
    insert = "INSERT INTO parent (id) VALUES (?)"
    writer = SeparateWriter(sqlite_engine)
    try:
        writer.exec_driver_sql(insert, (1,))
        writer.commit()
        writer.exec_driver_sql(insert, (2,))
        writer.rollback()
        writer.exec_driver_sql(insert, (3,))
        writer.commit()
        writer.settle()
        writer.exec_driver_sql(insert, (4,))  # never committed: closing rolls it back
    finally:
        writer.close()
    assert stored(sqlite_engine, "parent") == [1, 3]


def test_a_writer_process_that_dies_is_reported_not_waited_for(sqlite_engine: Engine) -> None:
    writer = SeparateWriter(sqlite_engine)
    try:
        os.kill(writer._child.pid, signal.SIGKILL)
        writer._child.wait()
        writer.exec_driver_sql("SELECT 1")
        with pytest.raises(WriterFailed, match="writer process"):
            writer.commit()
            writer.settle()
    finally:
        writer.close()  # never raises
    assert writer._child.returncode == -signal.SIGKILL


def test_a_sync_whose_writer_process_fails_keeps_a_consistent_checkpoint_and_the_next_run_resumes(
    sqlite_engine: Engine, server: FakeStripe, world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure inside the child (here, every invoice page's statement refused by SQLite) stops the run at
    the next commit with SQLite's error, as SQLAlchemy raises it in one process (an OperationalError, which a
    night retries as transient); the transaction it voided goes with the cursors committed with it, so a list
    has rows exactly when its cursor moved, and the next run resumes to exactly a clean sync's rows."""
    monkeypatch.setattr(sync_module, "TX_SECONDS", 3600.0)  # commits only as lists end
    upsert = sync_module.upsert

    def refused(conn: Any, table: Any, rows: list[Any], account_id: int) -> None:
        if table.name == "stripe_invoice" and isinstance(conn, SeparateWriter):
            conn.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")
        upsert(conn, table, rows, account_id)

    monkeypatch.setattr(sync_module, "upsert", refused)
    account_id = new_account(sqlite_engine, server)
    with pytest.raises(OperationalError, match="no such table: no_such_table") as raised:
        syncer(sqlite_engine, account_id, server, workers=2).run()
    assert transient(raised.value)
    with sqlite_engine.connect() as conn:
        segments = conn.execute(select(STATE.c.checkpoint)).scalar()["full"]["segments"]
        invoices = conn.execute(select(table_of(StripeInvoice).c.id)).all()
    assert invoices == [] and {s["after"] for s in segments.values() if s["list"] == "invoices"} == {None}
    stored = counts(sqlite_engine, account_id)
    assert (stored["customers"] > 0) == (segments["customers"]["after"] is not None)

    monkeypatch.setattr(sync_module, "upsert", upsert)
    assert_resumes_to_a_clean_sync(sqlite_engine, server, world, account_id)


def test_only_a_sqlite_file_can_have_a_separate_writer(sqlite_engine: Engine, pg_engine: Engine) -> None:
    assert writer_process.usable(sqlite_engine)
    assert not writer_process.usable(pg_engine)


def test_the_separate_writer_holds_pages_in_one_transaction_and_counts_them_once_committed(
    sqlite_engine: Engine, server: FakeStripe, world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in one process (test_sync.py): pages stay invisible to others until TX_SECONDS have passed, then
    commit with the cursor past them; here the commit is in flight until the writer is settled, and what it
    stored is counted then, not before."""
    assert_held_until_due(sqlite_engine, server, world, monkeypatch, separate=True)


def test_the_child_gets_no_environment_but_its_import_path(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's environment holds the key that decrypts the Stripe keys: the child, which needs none of
    it, does not inherit it."""
    if not Path("/proc/self/environ").exists():
        pytest.skip("reads a process's environment from Linux's /proc")
    monkeypatch.setenv("RETENTION_SECRET_KEY", "not for the child")
    writer = SeparateWriter(sqlite_engine)
    try:
        environ = Path(f"/proc/{writer._child.pid}/environ").read_bytes().split(b"\0")
    finally:
        writer.close()
    assert [v.split(b"=")[0] for v in environ if v] == [b"PYTHONPATH"]
