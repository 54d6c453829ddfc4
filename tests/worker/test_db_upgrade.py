"""A database the first version created (schema 0001, with data in it) upgrades to today's schema losing
nothing, and ends up exactly as a new database would be.

Users run the worker for months before they upgrade it; `ensure_schema` then finds their database at 0001 and
must bring it to head, not take it for current (which left the new tables missing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import worker.tables  # noqa: F401  (the whole schema)
from tests.support.pg import create_database, drop_database
from worker.db import alembic_config, ensure_schema, get_engine


@pytest.fixture(params=["sqlite", "postgres"])
def first_version_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated to 0001 only (the first version's schema)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        request.getfixturevalue("pg_database_url")  # fails in CI / skips elsewhere when PostgreSQL is down
        url = create_database("rt_upgrade")
    _migrate(url, command.upgrade, "0001")
    yield url
    if request.param == "postgres":
        drop_database(url)


def _migrate(url: str, step: Callable[[Config, str], None], revision: str) -> None:
    """Run an Alembic command on this database's own connection, as ensure_schema does."""
    cfg = alembic_config(url)
    with get_engine(url).begin() as connection:
        cfg.attributes["connection"] = connection
        step(cfg, revision)


def _first_version_rows(engine: Engine) -> None:
    """Rows as the first version wrote them, in the tables 0002 changes."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO account (id, name, display_name, stripe_account, api_base, reporting_currency,"
                " livemode, key_encrypted, key_mask, created_at) VALUES (1, 'acme', '', 'acct_1',"
                " 'https://api.stripe.com', 'eur', false, 'k', 'sk_test_...abcd', :now)"
            ),
            {"now": "2026-11-20 00:00:00"},
        )
        conn.execute(text("INSERT INTO fx_rate (currency, day, rate) VALUES ('usd', '2026-01-01', 0.9)"))
        conn.execute(
            text(
                "INSERT INTO alert_state (account_id, customer_id, fingerprint, status, mrr, first_seen,"
                " updated_at) VALUES (1, 'cus_1', 'f', 'open', 5000, :now, :now)"
            ),
            {"now": "2026-11-20 00:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO stripe_subscription (account_id, id, customer_id, status, cancel_at_period_end,"
                " raw) VALUES (1, 'sub_1', 'cus_1', 'active', false, '{}')"
            )
        )


def _schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))


def test_first_version_database_upgrades_to_the_current_schema(first_version_url: str) -> None:
    old = get_engine(first_version_url)
    try:
        _first_version_rows(old)
    except Exception as exc:  # the 0001 columns changed: the fixture no longer writes what 0001 holds
        pytest.fail(f"the first version's rows no longer fit schema 0001: {exc}")
    assert _schema_differences(old) != []  # the comparison below can tell an old schema from the current

    engine = ensure_schema(first_version_url)

    assert _schema_differences(engine) == []
    with engine.connect() as conn:
        rates = conn.execute(
            text("SELECT reporting_currency, currency, rate, imported_at FROM fx_rate")
        ).all()
        via = conn.execute(text("SELECT via FROM alert_state")).scalar_one()
        deleted = conn.execute(text("SELECT deleted FROM stripe_subscription")).scalar_one()
    assert [(r[0], r[1], float(r[2]), r[3]) for r in rates] == [("eur", "usd", 0.9, 0)]
    assert via == "digest"
    assert deleted in (False, 0)


def test_a_database_stamped_0001_with_the_newer_schema_upgrades(first_version_url: str) -> None:
    """An earlier build of this version shipped 0002's schema inside 0001: its databases say 0001 but hold
    every table 0002 adds. The upgrade takes them as they are."""
    engine = get_engine(first_version_url)
    _migrate(first_version_url, command.upgrade, "0002")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))

    ensure_schema(first_version_url)

    assert _schema_differences(engine) == []


def test_the_upgrade_can_be_undone(first_version_url: str) -> None:
    engine = get_engine(first_version_url)
    _first_version_rows(engine)
    _migrate(first_version_url, command.upgrade, "head")
    _migrate(first_version_url, command.downgrade, "0001")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT currency, day FROM fx_rate")).all() != []
    _migrate(first_version_url, command.upgrade, "head")
    assert _schema_differences(engine) == []
