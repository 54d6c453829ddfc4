"""The queries over ledger_line: MRR per customer at instants, snapshots, and the `missing_rate` warnings.

Snapshots stream the account's counted lines once, in customer order (the (account, customer) index), and each
customer's lines are spread over the sorted instants by bisection (metrics/mrr.py customer_snapshots): cost
grows with lines + rows written, not lines x instants as a range join would. Rows are written with COPY on
PostgreSQL and a plain executemany on SQLite. `mrr_at` (one instant) goes through the same code, so the figure
of `retention mrr` and a stored snapshot can never disagree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.engine import Connection, Engine

from integrations.stripe.models import StripeProduct
from metrics.classify import ONE_TIME, RECURRING
from metrics.ledger import ClassifiedLine, MrrSnapshot, SnapshotDay
from metrics.money import fmt
from metrics.mrr import LedgerEntry, Point, customer_snapshots
from worker.models import Account

L = ClassifiedLine.__table__  # type: ignore[attr-defined]
P = StripeProduct.__table__  # type: ignore[attr-defined]
S = MrrSnapshot.__table__  # type: ignore[attr-defined]
D = SnapshotDay.__table__  # type: ignore[attr-defined]
CHUNK = 50_000


def ts(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def month_starts(first: date, last: date) -> list[date]:
    """Every first-of-month from the month of `first` to the month of `last`, inclusive."""
    out, m = [], month_start(first)
    while m <= last:
        out.append(m)
        m = next_month(m)
    return out


def points_for(days: Sequence[date], instants: Sequence[int] | None = None) -> list[Point]:
    """Points sorted by instant: each day at 00:00 UTC, or the given instants."""
    pts = []
    for i, d in enumerate(days):
        t = instants[i] if instants is not None else ts(d)
        when = datetime.fromtimestamp(t, UTC)
        pts.append(Point(d, t, (when.year, when.month)))
    return sorted(pts, key=lambda p: p.t)


def _entries(
    conn: Connection, account_id: int, window: tuple[int, int] | None = None
) -> Iterator[tuple[str, list[LedgerEntry]]]:
    """Counted recurring and one-time lines, grouped by customer (streamed in customer order, bounded memory).

    `window` (first, last instant) keeps only lines that can matter to points inside it.
    """
    cond = [L.c.account_id == account_id, L.c.counted.is_(True), L.c.klass.in_((RECURRING, ONE_TIME))]
    if window is not None:
        first, last = window
        month0 = ts(month_start(datetime.fromtimestamp(first, UTC).date()))
        month1 = ts(next_month(datetime.fromtimestamp(last, UTC).date()))
        cond.append(
            or_(
                and_(L.c.klass == RECURRING, L.c.period_start <= last, L.c.mrr_end > first),
                and_(L.c.klass == ONE_TIME, L.c.invoiced_at >= month0, L.c.invoiced_at < month1),
            )
        )
    query = (
        select(
            L.c.customer_id,
            L.c.klass,
            L.c.period_start,
            L.c.mrr_end,
            L.c.monthly_reporting,
            L.c.amount_reporting,
            L.c.invoiced_at,
            func.coalesce(P.c.name, L.c.product_id),
            L.c.line_id,
        )
        .select_from(L.outerjoin(P, and_(P.c.account_id == L.c.account_id, P.c.id == L.c.product_id)))
        .where(*cond)
        .order_by(L.c.customer_id)
        .execution_options(yield_per=CHUNK)
    )
    current: str | None = None
    group: list[LedgerEntry] = []
    for r in conn.execute(query):
        if r[0] != current:
            if current is not None:
                yield current, group
            current, group = r[0], []
        group.append(LedgerEntry(r[1], r[2], r[3], r[4] or 0, r[5] or 0, r[6], r[7], r[8]))
    if current is not None:
        yield current, group


def snapshot_rows(
    conn: Connection, account_id: int, points: Sequence[Point]
) -> Iterator[tuple[str, date, int, int, str | None]]:
    """(customer_id, day, mrr, one_time, plan) per customer with MRR > 0 or one-time amounts at a point."""
    if not points:
        return
    for customer, entries in _entries(conn, account_id, (points[0].t, points[-1].t)):
        for day, mrr, one_time, plan in customer_snapshots(entries, points):
            yield customer, day, mrr, one_time, plan


def bulk_insert(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert plain tuples without per-row SQLAlchemy work: COPY on PostgreSQL, executemany on SQLite.

    Dates must already be what the column stores (SQLite keeps SQLAlchemy's Date as `YYYY-MM-DD` text).
    """
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" for _ in columns)
        conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", [tuple(r) for r in rows])


SNAPSHOT_COLUMNS = ("account_id", "customer_id", "day", "mrr", "one_time", "plan")


def _write(conn: Connection, account_id: int, rows: list[tuple[str, date, int, int, str | None]]) -> None:
    if not rows:
        return
    pg = conn.dialect.name == "postgresql"
    bulk_insert(
        conn,
        "mrr_snapshot",
        SNAPSHOT_COLUMNS,
        ((account_id, c, d if pg else d.isoformat(), m, o, p) for c, d, m, o, p in rows),
    )


def ensure_snapshots(engine: Engine, account: Account, days: list[date]) -> None:
    """MrrSnapshot rows for exactly these days, computed from the ledger where the day is not done yet."""
    wanted = sorted(set(days))
    if not wanted:
        return
    account_id = account.id or 0
    with engine.begin() as conn:
        done = {
            r[0] if isinstance(r[0], date) else date.fromisoformat(str(r[0]))
            for r in conn.execute(select(D.c.day).where(D.c.account_id == account_id))
        }
        missing = [d for d in wanted if d not in done]
        if not missing:
            return
        conn.execute(delete(S).where(S.c.account_id == account_id, S.c.day.in_(missing)))
        batch: list[tuple[str, date, int, int, str | None]] = []
        for row in snapshot_rows(conn, account_id, points_for(missing)):
            batch.append(row)
            if len(batch) >= CHUNK:
                _write(conn, account_id, batch)
                batch = []
        _write(conn, account_id, batch)
        conn.execute(insert(D), [{"account_id": account_id, "day": d} for d in missing])


@dataclass(frozen=True)
class CustomerMrr:
    customer_id: str
    mrr: int
    one_time: int
    plan: str | None


def mrr_at(conn: Connection, account_id: int, at: datetime) -> list[CustomerMrr]:
    """MRR(c, t) of every paying customer at an instant, largest first (computed, not read from snapshots)."""
    points = points_for([at.date()], [int(at.timestamp())])
    out = [CustomerMrr(c, mrr, one, plan) for c, _, mrr, one, plan in snapshot_rows(conn, account_id, points)]
    return sorted((c for c in out if c.mrr > 0), key=lambda c: (-c.mrr, c.customer_id))


def snapshot_series(
    conn: Connection, account_id: int, days: Sequence[date]
) -> list[tuple[date, dict[str, int]]]:
    """Stored snapshots per day (customer -> MRR), in the order of `days`."""
    per_day: dict[date, dict[str, int]] = {d: {} for d in days}
    rows = conn.execute(
        select(S.c.day, S.c.customer_id, S.c.mrr).where(
            S.c.account_id == account_id, S.c.day.in_(list(days)), S.c.mrr > 0
        )
    )
    for r in rows:
        per_day[r.day][r.customer_id] = int(r.mrr)
    return [(d, per_day[d]) for d in days]


def missing_rate_warnings(
    conn: Connection, account_id: int, at: datetime | None = None, customer_id: str | None = None
) -> list[dict[str, str]]:
    """One `missing_rate` warning per currency: the dates and the MRR left out (at `at`, else all history)."""
    cond = [L.c.account_id == account_id, L.c.excluded_reason == "missing_rate", L.c.klass == RECURRING]
    if at is not None:
        t = int(at.timestamp())
        cond += [L.c.period_start <= t, L.c.mrr_end > t]
    if customer_id is not None:
        cond.append(L.c.customer_id == customer_id)
    rows = conn.execute(
        select(
            L.c.currency,
            func.min(L.c.period_start),
            func.max(L.c.period_end),
            func.sum(L.c.monthly_amount),
            func.count(),
        )
        .where(*cond)
        .group_by(L.c.currency)
        .order_by(L.c.currency)
    )
    out = []
    for currency, first, last, amount, count in rows:
        span = f"{_iso(first)} to {_iso(last)}"
        scope = f"at {at.date().isoformat()}" if at is not None else "over the history"
        out.append(
            {
                "code": "missing_rate",
                "message": (
                    f"no {currency.upper()} exchange rate for {span}: "
                    f"{fmt(int(amount), currency)} of MRR {scope} "
                    f"({count} lines) left out; add the rate with `retention rates import FILE.csv`"
                ),
            }
        )
    return out


def _iso(t: int) -> str:
    return datetime.fromtimestamp(int(t), UTC).date().isoformat()


def lines_for(conn: Connection, account_id: int, customer_id: str) -> list[dict[str, Any]]:
    """Every ledger line of one customer (for explain)."""
    rows = conn.execute(
        select(L)
        .where(L.c.account_id == account_id, L.c.customer_id == customer_id)
        .order_by(L.c.period_start, L.c.line_id)
    )
    return [dict(r._mapping) for r in rows]


def product_names(conn: Connection, account_id: int) -> dict[str, str]:
    return {
        r.id: r.name
        for r in conn.execute(select(P.c.id, P.c.name).where(P.c.account_id == account_id))
        if r.name
    }


def group_by_day(rows: Sequence[CustomerMrr]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for r in rows:
        out[r.customer_id] += r.mrr
    return dict(out)
