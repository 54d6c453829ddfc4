"""What a failure may say about itself: the step, the account and the exception class, never the data.

SQLAlchemy's `DBAPIError` renders as the SQL statement with its bound parameters (customer ids, amounts, raw
invoice JSON), a psycopg error may quote a row, and a Redis error may carry the URL: none of that belongs in a
terminal, a log line or `last_error`. So a failure is described by its class and, for the database, the
driver's class and whether the connection was lost; only exceptions whose text this project writes itself
(`SafeMessage` subclasses, Stripe read errors, a file path the user gave) show their message.

`transient()` is the one decision of what is worth retrying: a dropped or refused connection to the database
or to Redis, which a later attempt may not meet; a wrong query or a bug would fail the same way again.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from integrations.stripe.client import StripeReadError

_WHERE = "_retention_where"


class SafeMessage(Exception):
    """An exception whose message this project wrote (names and ids only), so it may be shown as it is."""


class Transient(SafeMessage):
    """A failure of this project's own making that a later attempt may not meet (a store unreachable)."""


def _shows_message(exc: BaseException) -> bool:
    return isinstance(exc, SafeMessage | StripeReadError)


def describe(exc: BaseException) -> str:
    """One short, data-free phrase for `exc`: `OperationalError (database connection lost)`, ..."""
    name = type(exc).__name__
    if isinstance(exc, DBAPIError):
        driver = type(exc.orig).__name__ if exc.orig is not None else "unknown"
        lost = ", connection lost" if exc.connection_invalidated else ""
        return f"{name} (database: {driver}{lost})"
    if isinstance(exc, SQLAlchemyError):
        return f"{name} (database)"
    if isinstance(exc, redis.exceptions.RedisError | BrokerError):
        return f"{name} (Redis)"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{name}: {exc.strerror or 'cannot use'}: {exc.filename}"
    if _shows_message(exc) and str(exc):
        return f"{name}: {exc}"
    return name


def transient(exc: BaseException) -> bool:
    """True for a failure a retry may not meet again: a lost or refused database or Redis connection."""
    if isinstance(exc, Transient):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        OperationalError
        | InterfaceError
        | redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | BrokerError,
    )


def mark(exc: BaseException, account: str, step: str) -> None:
    """Remembers on `exc` where it happened (the innermost place wins), for the command's one line."""
    if getattr(exc, _WHERE, None) is None:
        setattr(exc, _WHERE, (account, step))


def where(exc: BaseException) -> tuple[str, str] | None:
    """(account, step) set by `mark`, or None."""
    found: Any = getattr(exc, _WHERE, None)
    return found if isinstance(found, tuple) else None


def failure_line(exc: BaseException) -> str:
    """`sync of account 'acme' failed: OperationalError (database: AdminShutdown, connection lost)`."""
    place = where(exc)
    if place is None:
        return f"failed: {describe(exc)}"
    account, step = place
    return f"{step} of account {account!r} failed: {describe(exc)}"
