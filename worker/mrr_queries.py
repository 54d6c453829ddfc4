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
from itertools import count as counter
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.engine import Connection, Engine

from integrations.stripe.models import StripeProduct
from metrics.classify import ONE_TIME, RECURRING
from metrics.ledger import ClassifiedLine, MrrSnapshot, SnapshotDay
from metrics.money import fmt
from metrics.mrr import EntryRow, Point, SnapshotSpreader
from worker.models import Account

L = ClassifiedLine.__table__  # type: ignore[attr-defined]
P = StripeProduct.__table__  # type: ignore[attr-defined]
S = MrrSnapshot.__table__  # type: ignore[attr-defined]
D = SnapshotDay.__table__  # type: ignore[attr-defined]
CHUNK = 50_000
_CURSORS = counter()  # server-side cursor names, unique in the process


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


def raw_rows(conn: Connection, query: Any, stream: bool = False) -> Iterator[tuple[Any, ...]]:
    """The rows of a Core select straight from the driver's cursor, as plain tuples (no SQLAlchemy Row and
    result processing per row: that cost more than the work done with the rows).

    Only for selects whose parameters are integers or constant strings (inlined as literals) and whose columns
    need no result conversion (text, integers, booleans as the driver gives them). `stream` uses a server-side
    cursor on PostgreSQL, so memory stays bounded by CHUNK rows.
    """
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    driver = conn.connection.driver_connection
    if stream and conn.dialect.name == "postgresql":
        cursor = driver.cursor(name=f"raw_rows_{next(_CURSORS)}")  # type: ignore[union-attr]
        cursor.itersize = CHUNK
    else:
        cursor = driver.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        while True:
            batch = cursor.fetchmany(CHUNK)
            if not batch:
                break
            yield from batch
    finally:
        cursor.close()


def _entries(
    conn: Connection, account_id: int, window: tuple[int, int] | None = None
) -> Iterator[tuple[str, list[EntryRow]]]:
    """Counted recurring and one-time lines, grouped by customer (streamed in customer order, bounded memory),
    as tuples in LedgerEntry's field order.

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
            func.coalesce(L.c.monthly_reporting, 0),
            func.coalesce(L.c.amount_reporting, 0),
            L.c.invoiced_at,
            func.coalesce(P.c.name, L.c.product_id),
            L.c.line_id,
        )
        .select_from(L.outerjoin(P, and_(P.c.account_id == L.c.account_id, P.c.id == L.c.product_id)))
        .where(*cond)
        .order_by(L.c.customer_id)
    )
    current: str | None = None
    group: list[EntryRow] = []
    append = group.append
    for r in raw_rows(conn, query, stream=True):
        if r[0] != current:
            if current is not None:
                yield current, group
            current, group = r[0], []
            append = group.append
        append(r[1:])
    if current is not None:
        yield current, group


def snapshot_rows(
    conn: Connection, account_id: int, points: Sequence[Point]
) -> Iterator[tuple[str, date, int, int, str | None]]:
    """(customer_id, day, mrr, one_time, plan) per customer with MRR > 0 or one-time amounts at a point."""
    if not points:
        return
    spread = SnapshotSpreader(points)
    for customer, entries in _entries(conn, account_id, (points[0].t, points[-1].t)):
        for i, mrr, one_time, plan in spread(entries):
            yield customer, points[i].day, mrr, one_time, plan


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


SnapshotRow = tuple[int, str, Any, int, int, str | None]


def _write(conn: Connection, rows: list[SnapshotRow]) -> None:
    if rows:
        bulk_insert(conn, "mrr_snapshot", SNAPSHOT_COLUMNS, rows)


def ensure_snapshots(engine: Engine, account: Account, days: list[date]) -> None:
    """MrrSnapshot rows for exactly these days, computed from the ledger where the day is not done yet.

    One pass over the account's counted lines in customer order for all missing days at once.
    """
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
        points = points_for(missing)
        write_snapshots(conn, account_id, points, _entries(conn, account_id, (points[0].t, points[-1].t)))


def write_snapshots(
    conn: Connection, account_id: int, points: Sequence[Point], groups: Iterable[tuple[str, list[EntryRow]]]
) -> None:
    """Snapshot rows of these points from each customer's counted lines, and the points' days marked done.

    `groups` are (customer, lines) with every customer at most once (lines outside the points are ignored).
    Rows are built as the tuples written (the day already in the column's stored form), in batches of CHUNK.
    """
    if not points:
        return
    pg = conn.dialect.name == "postgresql"
    stored_day = [p.day if pg else p.day.isoformat() for p in points]
    spread = SnapshotSpreader(points)
    batch: list[SnapshotRow] = []
    append = batch.append
    for customer, entries in groups:
        for i, mrr, one_time, plan in spread(entries):
            append((account_id, customer, stored_day[i], mrr, one_time, plan))
        if len(batch) >= CHUNK:
            _write(conn, batch)
            batch = []
            append = batch.append
    _write(conn, batch)
    conn.execute(insert(D), [{"account_id": account_id, "day": p.day} for p in points])


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
