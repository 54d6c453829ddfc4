"""What every command shares: opening the database, choosing accounts, refusing bad input, JSON output.

Exit status (docs/interface.md): 0 done, 1 the run failed (recorded on the account), 2 refused (one clear
line on stderr, nothing stored).

Every command module imports this one, and `retention --help` imports every command module, so nothing heavy
(SQLAlchemy, SQLModel, Alembic, Celery, the Stripe SDK) is imported at the top here: each function imports
what it needs when it runs (README: start-up time).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from metrics.calendar import day_start, utc_now

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from metrics.dbapi import Reader
    from worker.account_views import AccountRow
    from worker.models import Account
    from worker.settings import Settings

_A = TypeVar("_A")

EXIT_FAILED = 1
EXIT_REFUSED = 2


def refuse(message: str) -> NoReturn:
    """Exit 2 with one line saying what happened and what to do."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_REFUSED)


def open_db(settings: Settings | None = None) -> Engine:
    """The database, migrated to the newest schema."""
    from worker.db import ensure_schema
    from worker.settings import get_settings

    settings = settings or get_settings()
    try:
        return ensure_schema(settings.database_url)
    except Exception as exc:  # a wrong URL or a database that is down: say which, not a traceback
        refuse(f"cannot open the database ({type(exc).__name__}): check RETENTION_DATABASE_URL")


@contextmanager
def read_db(settings: Settings | None = None) -> Iterator[Reader]:
    """The database for a command that only reads (`accounts`, `status`): a plain DB-API connection, without
    importing SQLAlchemy when the schema is current (worker/fast_db.py), else the engine's after migrating;
    refused like `open_db` when it cannot be opened."""
    from worker.fast_db import open_reader
    from worker.settings import get_settings

    settings = settings or get_settings()
    try:
        reader = open_reader(settings.database_url)
    except Exception as exc:  # a database that is down: say which, not a traceback
        refuse(f"cannot open the database ({type(exc).__name__}): check RETENTION_DATABASE_URL")
    if reader is None:  # a schema to migrate, a URL form only the engine handles
        from metrics.dbapi import reader_of

        with open_db(settings).connect() as conn:
            yield reader_of(conn)
        return
    try:
        yield reader
    finally:
        reader.close()


def select_accounts(session: Session, name: str | None) -> list[Account]:
    """The named account, or every connected account when NAME is left out (docs/interface.md); refuses
    when there is none, so a command never runs over nothing."""
    from worker.accounts import find_accounts

    return _found(find_accounts(session, name), name)


def select_account_rows(db: Reader, name: str | None) -> list[AccountRow]:
    """`select_accounts` for a command that only reads (worker/account_views.py)."""
    from worker.account_views import account_rows

    return _found(account_rows(db, name), name)


def _found(accounts: list[_A], name: str | None) -> list[_A]:
    if not accounts and name is None:
        refuse("no account is connected yet: run `retention connect NAME` first")
    if not accounts:
        refuse(f"no account named {name!r}: see `retention accounts`")
    return accounts


def accounts_to_run(engine: Engine, name: str | None, job: str) -> list[Account]:
    """The accounts a job (`sync`, `nightly`) runs over. Without NAME and with no account connected there is
    nothing to do, which is not a failure: a fresh install's scheduled nightly (or one right after
    `retention demo`, which keeps its own home) exits 0 with a note instead of failing every night."""
    from sqlmodel import Session

    from worker.accounts import find_accounts

    with Session(engine, expire_on_commit=False) as session:
        accounts = find_accounts(session, name)
    if not accounts and name is None:
        typer.echo(f"No account is connected yet: nothing to {job} (`retention connect NAME`).", err=True)
        return []
    if not accounts:
        refuse(f"no account named {name!r}: see `retention accounts`")
    return accounts


def load_accounts(engine: Engine, name: str | None) -> list[Account]:
    """`select_accounts` in a session of its own; the rows stay readable after it closes."""
    from sqlmodel import Session

    with Session(engine, expire_on_commit=False) as session:
        return select_accounts(session, name)


def parse_as_of(value: str | None) -> datetime:
    """`YYYY-MM-DD` means 00:00 UTC that day; nothing means now. A day after today is refused: there are no
    figures for it yet, and a run "as of" it would record zeros as if they were real."""
    if value is None:
        return utc_now()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        refuse(f"--as-of {value!r} is not a date: use YYYY-MM-DD")
    today = utc_now().date()
    if day > today:
        refuse(f"--as-of {value} is in the future (today is {today} UTC): give today or an earlier date")
    return day_start(day)


def history_warning(engine: Engine, account: Account, when: datetime) -> dict[str, str] | None:
    """A `before_first_invoice` warning when `when` comes before the account's first recurring revenue, so
    $0.00 is explained instead of looking like a real figure."""
    from metrics.calendar import moment_ts, utc_day
    from worker.mrr_queries import first_counted_start

    with engine.connect() as conn:
        first = first_counted_start(conn, account.id or 0)
    # nothing counted at all (no sync yet, or every line waits for a rate) is said by other warnings
    if first is None or moment_ts(when) >= first:
        return None
    message = (
        f"{account.name}: {when.date().isoformat()} is before the first invoiced subscription period "
        f"({utc_day(first).isoformat()}): there is no revenue to measure yet, so the figures are zero"
    )
    return {"code": "before_first_invoice", "message": message}


def add_history_warning(engine: Engine, account: Account, when: datetime, payload: dict[str, Any]) -> None:
    """Adds the `before_first_invoice` warning to a payload's `warnings` when it applies."""
    found = history_warning(engine, account, when)
    if found:
        payload["warnings"] = [found, *payload.get("warnings", [])]


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_payloads(payloads: list[dict[str, Any]]) -> None:
    """One account's payload as it is; several as `{"accounts": [...]}` (an addition the README documents)."""
    print_json(payloads[0] if len(payloads) == 1 else {"accounts": payloads})
