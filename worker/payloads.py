"""Per-account payloads of the read-only risk commands (`retention at-risk`, `retention churned`).

Each payload is named by its account, so the `{"accounts": [...]}` of a command over several accounts says
whose each one is. An account connected but never rebuilt gets its ledger first: a fresh install answers
rather than reporting nothing for want of a rebuild.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from worker.models import Account
from worker.rebuild import ensure_ledger

PayloadFn = Callable[[Engine, Account, datetime], dict[str, Any]]


def named_payloads(
    engine: Engine, accounts: Iterable[Account], as_of: datetime, build: PayloadFn
) -> Iterator[tuple[Account, dict[str, Any]]]:
    """`build`'s payload of each account in turn, with the account's name first.

    A generator, so a command prints each account as soon as it is done rather than after the slowest.
    """
    for account in accounts:
        ensure_ledger(engine, account)
        yield account, {"account": account.name, **build(engine, account, as_of)}
