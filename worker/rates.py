"""Exchange rates as the product uses them: the repository of fx_rate and rate_source, and the services behind
`retention rates import/update/list`, the nightly's daily refresh and the report's rate-source line.

Where the ECB history lives: in the database (table rate_source), not in a file of the home, so the command
line and every worker on every machine convert with the same rates and a backup of the database holds them.
Without a stored history the copy shipped with the installation serves (integrations/rates/ecb.py). Imported
rates are keyed by reporting currency (fx_rate). A change of either is stamped (imported_at, fetched_at) so
that a ledger built before it is stale and restated on the next rebuild.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from integrations.rates.ecb import (
    FetchError,
    bundled_history,
    fetch_history,
    history_text,
    public_url,
    zipped,
)
from metrics.ledger import FxRate, RateSource
from metrics.rates import EcbHistory, Rate, RatesError, RateTable, parse_ecb_csv, parse_rates_csv
from metrics.tables import table_of

log = logging.getLogger(__name__)

R = table_of(FxRate)
SRC = table_of(RateSource)
ECB = "ecb"
STALE_AFTER_DAYS = 4
RETRY_AFTER = 20 * 3600  # the nightly's daily try: at most one an installation per 20 hours
_cache: dict[tuple[Any, ...], EcbHistory] = {}

__all__ = ["FetchError", "RatesError"]


# -- the ECB history -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EcbState:
    """What is known of the stored history without reading it."""

    first_day: date | None
    last_day: date | None
    fetched_at: int | None
    digest: str | None
    url: str | None
    attempted_at: int | None
    last_error: str | None


def _state(conn: Connection) -> EcbState | None:
    row = conn.execute(
        select(
            SRC.c.first_day,
            SRC.c.last_day,
            SRC.c.fetched_at,
            SRC.c.digest,
            SRC.c.url,
            SRC.c.attempted_at,
            SRC.c.last_error,
        ).where(SRC.c.name == ECB)
    ).first()
    return None if row is None else EcbState(*row)


def ecb_history(conn: Connection) -> tuple[EcbHistory, bool]:
    """The history in force (the stored download, else the bundled copy) and whether it was downloaded.

    Parsed once per process and version: a rebuild reads two or three currencies of it.
    """
    state = _state(conn)
    if state is not None and state.fetched_at is not None:
        key: tuple[Any, ...] = ("stored", state.digest)
        if key not in _cache:
            data = conn.execute(select(SRC.c.data).where(SRC.c.name == ECB)).scalar_one()
            _remember(key, parse_ecb_csv(history_text(data)))
        return _cache[key], True
    key = ("bundled",)
    if key not in _cache:
        _remember(key, parse_ecb_csv(history_text(bundled_history())))
    return _cache[key], False


def _remember(key: tuple[Any, ...], history: EcbHistory) -> None:
    if len(_cache) >= 4:
        _cache.clear()
    _cache[key] = history


# -- imported rates ------------------------------------------------------------------------------------------
def load_rates(conn: Connection, reporting: str) -> RateTable:
    """The rates a rebuild converts with: this reporting currency's imports over the ECB's crossed rates."""
    query = select(R.c.day, R.c.currency, R.c.rate).where(R.c.reporting_currency == reporting.lower())
    imported = [Rate(day, currency, rate) for day, currency, rate in conn.execute(query)]
    history, _ = ecb_history(conn)
    return RateTable(imported, reporting, history)


def import_rates(engine: Engine, text: str, reporting: str, now: int | None = None) -> int:
    """Upsert every rate of a CSV for one reporting currency (RatesError on a bad file, nothing stored).

    The whole file is parsed and checked (codes, positive, plausible against the ECB) before anything is
    written, so a bad line leaves the table as it was.
    """
    reporting = reporting.lower()
    with engine.connect() as conn:
        reference = RateTable((), reporting, ecb_history(conn)[0])
    rates = parse_rates_csv(text, reporting, reference)
    stamp = int(time.time()) if now is None else now
    rows = [
        {
            "reporting_currency": reporting,
            "currency": r.currency,
            "day": r.day,
            "rate": r.rate,
            "imported_at": stamp,
        }
        for r in rates
    ]
    stmt = _dialect(engine).insert(R)
    stmt = stmt.on_conflict_do_update(
        index_elements=["reporting_currency", "currency", "day"],
        set_={"rate": stmt.excluded.rate, "imported_at": stmt.excluded.imported_at},
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)
    return len(rows)


def _dialect(engine: Engine) -> Any:
    return postgresql if engine.dialect.name == "postgresql" else sqlite


def imported_spans(conn: Connection, reporting: str | None = None) -> list[tuple[str, str, date, date]]:
    """(reporting currency, currency, first day, last day) of every imported currency."""
    query = (
        select(R.c.reporting_currency, R.c.currency, func.min(R.c.day), func.max(R.c.day))
        .group_by(R.c.reporting_currency, R.c.currency)
        .order_by(R.c.reporting_currency, R.c.currency)
    )
    if reporting is not None:
        query = query.where(R.c.reporting_currency == reporting.lower())
    return [(rep, cur, _day(first), _day(last)) for rep, cur, first, last in conn.execute(query)]


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def imports_changed_at(conn: Connection, reporting: str) -> int | None:
    """When rates were last imported for this reporting currency (None: never)."""
    found = conn.execute(
        select(func.max(R.c.imported_at)).where(R.c.reporting_currency == reporting.lower())
    ).scalar()
    return None if found is None else int(found)


def ecb_key(conn: Connection) -> str:
    """Which ECB history is in force: the stored download's digest, or the bundled copy's mark."""
    state = _state(conn)
    return state.digest if state is not None and state.fetched_at is not None and state.digest else "bundled"


def rates_changed_at(conn: Connection, reporting: str) -> int | None:
    """When the rates this reporting currency converts with last changed (an import or a download)."""
    state = _state(conn)
    fetched = state.fetched_at if state is not None else None
    stamps = [int(s) for s in (imports_changed_at(conn, reporting), fetched) if s is not None]
    return max(stamps) if stamps else None


# -- `retention rates update` --------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpdateResult:
    updated: bool
    last_day: date
    previous_last_day: date

    def describe(self) -> str:
        if not self.updated:
            return f"ECB reference rates already up to date (to {self.last_day.isoformat()})"
        return (
            f"ECB reference rates updated to {self.last_day.isoformat()} "
            f"(were to {self.previous_last_day.isoformat()})"
        )


def update_rates(engine: Engine, url: str, now: int | None = None) -> UpdateResult:
    """Fetch the history at `url`, check it parses and is not older than what is in force, and store it.

    Raises FetchError (unreachable) or RatesError (does not parse, older): nothing is replaced then. The same
    last day with different content (the ECB corrected a day) replaces the stored history.
    """
    stamp = int(time.time()) if now is None else now
    try:
        text = history_text(fetch_history(url))
        fresh = parse_ecb_csv(text, strict=True)
        with engine.connect() as conn:
            current, downloaded = ecb_history(conn)
            stored_text = _stored_text(conn) if downloaded else history_text(bundled_history())
        if fresh.last_day < current.last_day:
            raise RatesError(
                f"the file's rates end {fresh.last_day.isoformat()}, older than the rates in force "
                f"(to {current.last_day.isoformat()})"
            )
        changed = fresh.last_day > current.last_day or text.strip() != stored_text.strip()
        if changed:
            _store(engine, fresh, zipped(text), url, stamp)
        else:
            _record_attempt(engine, stamp, None)
    except (FetchError, RatesError) as exc:
        _record_attempt(engine, stamp, str(exc))
        raise
    return UpdateResult(changed, fresh.last_day, current.last_day)


def _stored_text(conn: Connection) -> str:
    data = conn.execute(select(SRC.c.data).where(SRC.c.name == ECB)).scalar_one()
    return history_text(data)


def _store(engine: Engine, history: EcbHistory, data: bytes, url: str, stamp: int) -> None:
    values = {
        "data": data,
        "digest": hashlib.sha256(data).hexdigest(),
        "first_day": history.first_day,
        "last_day": history.last_day,
        "fetched_at": stamp,
        "url": public_url(url)[:1000],  # never a mirror's token
        "attempted_at": stamp,
        "last_error": None,
    }
    stmt = _dialect(engine).insert(SRC).values(name=ECB, **values)
    with engine.begin() as conn:
        conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))


def _record_attempt(engine: Engine, stamp: int, error: str | None) -> None:
    values = {"attempted_at": stamp, "last_error": None if error is None else error[:500]}
    stmt = _dialect(engine).insert(SRC).values(name=ECB, **values)
    with engine.begin() as conn:
        conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))


# -- the nightly's daily refresh -----------------------------------------------------------------------------
def _claim_daily_try(engine: Engine, stamp: int) -> bool:
    """True for the one caller (of all workers' nights) that tries the download in this 20-hour window.

    RETURNING, not rowcount: the PostgreSQL driver does not report a row count for these statements.
    """
    with engine.begin() as conn:
        inserted = conn.execute(
            _dialect(engine)
            .insert(SRC)
            .values(name=ECB, attempted_at=stamp)
            .on_conflict_do_nothing()
            .returning(SRC.c.name)
        ).first()
        if inserted is not None:
            return True
        claimed = conn.execute(
            update(SRC)
            .where(
                SRC.c.name == ECB,
                (SRC.c.attempted_at.is_(None)) | (SRC.c.attempted_at <= stamp - RETRY_AFTER),
            )
            .values(attempted_at=stamp)
            .returning(SRC.c.name)
        ).first()
        return claimed is not None


def daily_refresh(engine: Engine, url: str, today: date, now: int | None = None) -> dict[str, Any]:
    """Tries `rates update` once a day (never raises: a night is not failed over rates) and says how old
    the newest rate is; `url` empty turns the download off. The summary goes into the nightly's run log."""
    stamp = int(time.time()) if now is None else now
    out: dict[str, Any] = {"tried": False}
    if url and _claim_daily_try(engine, stamp):
        out["tried"] = True
        try:
            out["updated"] = update_rates(engine, url, stamp).updated
        except (FetchError, RatesError) as exc:
            out["error"] = f"rates update: {exc}"
            log.warning(
                "rates update failed; the night carries on with the rates it has", extra={"error": str(exc)}
            )
        except Exception as exc:  # a night never fails over rates: anything else is recorded too
            out["error"] = f"rates update: {type(exc).__name__}"
            log.warning("rates update failed", extra={"error": type(exc).__name__})
    with engine.connect() as conn:
        last_day = ecb_history(conn)[0].last_day
    out["newest"] = last_day.isoformat()
    age = (today - last_day).days
    if age > STALE_AFTER_DAYS:
        out["warning"] = (
            f"the newest ECB exchange rate is {age} days old ({last_day.isoformat()}): "
            "check `retention rates update` (RETENTION_RATES_URL)"
        )
        log.warning("exchange rates are stale", extra={"age_days": age, "newest": last_day.isoformat()})
    return out


# -- `retention rates list` and the report's line ------------------------------------------------------------
def rates_listing(engine: Engine) -> dict[str, Any]:
    """Each currency's source and first/last date: the ECB's (crossed through EUR) and every import."""
    with engine.connect() as conn:
        history, downloaded = ecb_history(conn)
        state = _state(conn)
        spans = imported_spans(conn)
    currencies: list[dict[str, Any]] = []
    for code in history.currencies():
        span = history.span(code)
        if span is not None:
            currencies.append(
                {
                    "currency": code.upper(),
                    "source": "ecb",
                    "reporting_currency": None,
                    "first": span[0],
                    "last": span[1],
                }
            )
    for reporting, code, first, last in spans:
        currencies.append(
            {
                "currency": code.upper(),
                "source": "imported",
                "reporting_currency": reporting.upper(),
                "first": first,
                "last": last,
            }
        )
    for c in currencies:
        c["first"], c["last"] = c["first"].isoformat(), c["last"].isoformat()
    return {
        "ecb": {
            "origin": "downloaded" if downloaded else "bundled",
            "url": state.url if state is not None and downloaded else None,
            "first": history.first_day.isoformat(),
            "last": history.last_day.isoformat(),
            "last_error": state.last_error if state is not None else None,
        },
        "currencies": currencies,
    }


def source_line(conn: Connection, reporting: str) -> str:
    """The report's one line on where its rates come from, e.g. "ECB reference rates to 2026-10-30;
    imported: none"."""
    history, _ = ecb_history(conn)
    spans = imported_spans(conn, reporting)
    imported = ", ".join(
        f"{cur.upper()} {first.isoformat()} to {last.isoformat()}" for _, cur, first, last in spans
    )
    return f"ECB reference rates to {history.last_day.isoformat()}; imported: {imported or 'none'}"


def reporting_currency_for_import(option: str | None, reporting_currencies: Sequence[str]) -> str:
    """The reporting currency an import is for: the option, else the one all connected accounts share."""
    if option:
        return option.strip().lower()
    distinct = sorted({c.lower() for c in reporting_currencies})
    if len(distinct) == 1:
        return distinct[0]
    if not distinct:
        raise RatesError(
            "no account is connected: say which reporting currency the rates are for (--reporting-currency)"
        )
    listed = ", ".join(c.upper() for c in distinct)
    raise RatesError(f"accounts report in {listed}: say which one the rates are for (--reporting-currency)")
