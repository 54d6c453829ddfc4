"""What the rebuild reads for a batch of customers (worker/ledger/read.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from integrations.stripe.repository import billing
from tests.support.rebuild_worlds import monthly_world
from tests.support.sql_capture import capture_sql
from tests.support.stripe_rows import make_account, store
from worker.ledger import read


def test_every_read_of_a_batch_searches_an_index_on_sqlite(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's reads must look its customers (or their subscriptions) up, never walk a table or an index
    range of the whole account: done once per batch, that grows with the square of the customers. The
    current items were read through a join that SQLite drove from the account's items (9 s of a 100,000
    customer rebuild, 70x the time at 6,000)."""
    account = make_account(sqlite_engine)
    store(sqlite_engine, account, monthly_world())
    with sqlite_engine.connect() as conn:
        common = read.shared(conn, account.id or 0)
        sql = capture_sql(monkeypatch, billing)
        batch = read.read_batch(conn, account.id or 0, ["cus_a", "cus_b"], common)
        plans = {q: [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + q)] for q in sql}
    assert batch.lines and batch.subscriptions and batch.items  # the batch holds each kind of object
    assert len(plans) == 4  # the invoices, the lines, the subscriptions, their items
    tables = [step for steps in plans.values() for step in steps if step.startswith(("SCAN", "SEARCH"))]
    walks = [step for step in tables if "(account_id=? AND " not in step]  # the whole account's rows
    assert len(tables) >= 5 and walks == []


@pytest.mark.parametrize("size", [1, 2, 4_000])
def test_a_full_read_gives_each_batch_what_reading_it_alone_gives(
    sqlite_engine: Engine, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_batches(whole=True), the full rebuild's (on SQLite the lines in two sorted scans), batch for batch
    equal to the incremental rebuild's reads through the customer index."""
    engine = sqlite_engine
    monkeypatch.setattr(read, "BATCH_CUSTOMERS", size)
    account = make_account(engine)
    store(engine, account, monthly_world())
    aid = account.id or 0
    with engine.connect() as conn:
        common = read.shared(conn, aid)
        customers = billing.customer_ids(conn, aid)
        whole = list(read.read_batches(conn, aid, customers, common, whole=True))
        each = list(read.read_batches(conn, aid, customers, common))
    assert len(whole) == -(-len(customers) // size) and all(batch.lines for _, batch in whole)
    assert whole == each
