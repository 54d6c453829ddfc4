"""What a sync reads back, on SQLite and PostgreSQL (`engine` runs both)."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from integrations.stripe.models import SyncState
from integrations.stripe.repository import sync_state as repo
from metrics.dbapi import reader_of
from tests.support.stripe_rows import make_account, store
from worker.demo import builders as b


def test_sync_state_is_none_before_the_first_sync_then_its_row(engine: Engine) -> None:
    account = make_account(engine)
    aid = account.id or 0
    with engine.connect() as conn:
        assert repo.sync_state(reader_of(conn), aid) is None
        assert repo.last_sync_at(reader_of(conn), aid) is None
    with Session(engine) as s:
        s.add(
            SyncState(
                account_id=aid,
                mode="incremental",
                events_cursor_created=1_700_000_000,
                checkpoint={"full": {"started": 5}},
                rejected=[{"id": "cus_bad", "object": "customer", "error": "no created"}],
                last_sync_at=1_700_000_100,
            )
        )
        s.commit()
    with engine.connect() as conn:
        assert repo.sync_state(reader_of(conn), aid) == repo.StoredSyncState(
            mode="incremental",
            events_cursor=None,
            events_cursor_created=1_700_000_000,
            checkpoint={"full": {"started": 5}},
            rejected=[{"id": "cus_bad", "object": "customer", "error": "no created"}],
            last_sync_at=1_700_000_100,
        )
        assert repo.last_sync_at(reader_of(conn), aid) == 1_700_000_100
        assert repo.sync_state(reader_of(conn), aid + 1) is None


def test_customer_created_times_are_sorted_and_leave_out_deleted_customers(engine: Engine) -> None:
    account = make_account(engine)
    other = make_account(engine, name="other")
    store(
        engine,
        account,
        [
            b.customer("cus_c", created=300),
            b.customer("cus_a", created=100),
            b.customer("cus_gone", created=200),
        ],
    )
    store(engine, account, [b.customer("cus_gone", deleted=True)])  # deleted later: the row keeps `created`
    store(engine, other, [b.customer("cus_x", created=50)])
    with engine.connect() as conn:
        assert repo.customer_created_times(reader_of(conn), account.id or 0) == [100, 300]
