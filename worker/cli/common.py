"""What every command shares: opening the database, choosing accounts, refusing bad input, JSON output.

Exit status (docs/interface.md): 0 done, 1 the run failed (recorded on the account), 2 refused (one clear
line on stderr, nothing stored).
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from typing import Any, NoReturn

import typer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from metrics.calendar import day_start, utc_now
from worker.accounts import find_accounts
from worker.db import ensure_schema
from worker.models import Account
from worker.settings import Settings, get_settings

EXIT_FAILED = 1
EXIT_REFUSED = 2


def refuse(message: str) -> NoReturn:
    """Exit 2 with one line saying what happened and what to do."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_REFUSED)


def open_db(settings: Settings | None = None) -> Engine:
    """The database, migrated to the newest schema."""
    settings = settings or get_settings()
    try:
        return ensure_schema(settings.database_url)
    except Exception as exc:  # a wrong URL or a database that is down: say which, not a traceback
        refuse(f"cannot open the database ({type(exc).__name__}): check RETENTION_DATABASE_URL")


def select_accounts(session: Session, name: str | None) -> list[Account]:
    """The named account, or every connected account when NAME is left out (docs/interface.md); refuses
    when there is none, so a command never runs over nothing."""
    accounts = find_accounts(session, name)
    if not accounts and name is None:
        refuse("no account is connected yet: run `retention connect NAME` first")
    if not accounts:
        refuse(f"no account named {name!r}: see `retention accounts`")
    return accounts


def accounts_to_run(engine: Engine, name: str | None, job: str) -> list[Account]:
    """The accounts a job (`sync`, `nightly`) runs over. Without NAME and with no account connected there is
    nothing to do, which is not a failure: a fresh install's scheduled nightly (or one right after
    `retention demo`, which keeps its own home) exits 0 with a note instead of failing every night."""
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
    with Session(engine, expire_on_commit=False) as session:
        return select_accounts(session, name)


def parse_as_of(value: str | None) -> datetime:
    """`YYYY-MM-DD` means 00:00 UTC that day; nothing means now."""
    if value is None:
        return utc_now()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        refuse(f"--as-of {value!r} is not a date: use YYYY-MM-DD")
    return day_start(day)


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_payloads(payloads: list[dict[str, Any]]) -> None:
    """One account's payload as it is; several as `{"accounts": [...]}` (an addition the README documents)."""
    print_json(payloads[0] if len(payloads) == 1 else {"accounts": payloads})
