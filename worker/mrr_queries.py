"""The queries over ledger_line: MRR per customer at instants, snapshots, and the `missing_rate` warnings.

Snapshots stream the account's counted lines once, in customer order (the (account, customer) index), and each
customer's lines are spread over the sorted instants by bisection (metrics/mrr.py customer_snapshots): cost
grows with lines + rows written, not lines x instants as a range join would. Rows are written with COPY on
PostgreSQL and a plain executemany on SQLite. `mrr_at` (one instant) goes through the same code, so the figure
of `retention mrr` and a stored snapshot can never disagree.

It is also the ledger's repository: every other read or write of ledger_line, mrr_snapshot and
mrr_snapshot_day outside the rebuild goes through a function here, returning plain rows, so commands and
services never build statements over those tables (exchange rates have theirs: worker/rates.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, text
from sqlalchemy.engine import Connection, Engine

from integrations.stripe.models import StripeProduct
from metrics.calendar import day_ts, moment_ts, month_start, next_month_start, utc_datetime, utc_day
from metrics.classify import ONE_TIME, RECURRING
from metrics.ledger import ClassifiedLine, LedgerBuild, MrrSnapshot, SnapshotDay
from metrics.money import fmt
from metrics.mrr import EntryRow, Point, SnapshotSpreader
from metrics.tables import CHUNK, raw_rows, table_of
from worker.models import Account

L = table_of(ClassifiedLine)
# Only to name a line's plan in the snapshot stream: the join stays in the one streamed query (a second read
# of product names mapped per row in Python would cost more than the join).
P = table_of(StripeProduct)
S = table_of(MrrSnapshot)
D = table_of(SnapshotDay)


def points_for(days: Sequence[date], instants: Sequence[int] | None = None) -> list[Point]:
    """Points sorted by instant: each day at 00:00 UTC, or the given instants."""
    pts = []
    for i, d in enumerate(days):
        t = instants[i] if instants is not None else day_ts(d)
        when = utc_datetime(t)
        pts.append(Point(d, t, (when.year, when.month)))
    return sorted(pts, key=lambda p: p.t)


FEW_INSTANTS = 8  # up to this many points, the lines are picked per instant rather than over their window


def _month_of(t: int) -> tuple[int, int]:
    """[start, end) of the UTC calendar month of instant `t`, in Unix seconds."""
    day = utc_day(t)
    return day_ts(month_start(day)), day_ts(next_month_start(day))


def _lines_for(instants: Sequence[int]) -> ColumnElement[bool]:
    """Only the lines that can matter to these instants: recurring lines covering one of them, one-time lines
    invoiced in one of their months, as SnapshotSpreader reads them (it ignores every other line).

    For a few instants far apart (the metrics windows' new days a month and a year back) this reads a small
    part of what their window holds: every line over eleven months."""
    if len(instants) > FEW_INSTANTS:
        first, last = min(instants), max(instants)
        return or_(
            and_(L.c.klass == RECURRING, L.c.period_start <= last, L.c.mrr_end > first),
            and_(
                L.c.klass == ONE_TIME,
                L.c.invoiced_at >= _month_of(first)[0],
                L.c.invoiced_at < _month_of(last)[1],
            ),
        )
    covering = [and_(L.c.period_start <= t, L.c.mrr_end > t) for t in sorted(set(instants))]
    months = [
        and_(L.c.invoiced_at >= a, L.c.invoiced_at < b) for a, b in sorted({_month_of(t) for t in instants})
    ]
    return or_(and_(L.c.klass == RECURRING, or_(*covering)), and_(L.c.klass == ONE_TIME, or_(*months)))


def _entries(
    conn: Connection, account_id: int, instants: Sequence[int] | None = None
) -> Iterator[tuple[str, list[EntryRow]]]:
    """Counted recurring and one-time lines, grouped by customer (streamed in customer order, bounded memory),
    as tuples in LedgerEntry's field order.

    `instants` keeps only lines that can matter to points at them (`_lines_for`).
    """
    cond = [L.c.account_id == account_id, L.c.counted.is_(True), L.c.klass.in_((RECURRING, ONE_TIME))]
    if instants is not None:
        cond.append(_lines_for(instants))
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
    for customer, entries in _entries(conn, account_id, [p.t for p in points]):
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
        # table and column names are our own model's (SNAPSHOT_COLUMNS); values go in as parameters
        insert_sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
        conn.exec_driver_sql(insert_sql, [tuple(r) for r in rows])


CUSTOMER_CHUNK = 500  # customer ids bound in one IN list (well below SQLite's parameter limit)
SNAPSHOT_COLUMNS = ("account_id", "customer_id", "day", "mrr", "one_time", "plan")


SnapshotRow = tuple[int, str, Any, int, int, str | None]


def _write(conn: Connection, rows: list[SnapshotRow]) -> None:
    if rows:
        bulk_insert(conn, "mrr_snapshot", SNAPSHOT_COLUMNS, rows)


def ensure_snapshots(engine: Engine, account: Account, days: list[date]) -> None:
    """MrrSnapshot rows for exactly these days, computed from the ledger where the day is not done yet.

    One pass over the account's counted lines in customer order for all missing days at once. On PostgreSQL
    the snapshots' statistics are refreshed when a day was added (`analyze_snapshots`).
    """
    wanted = sorted(set(days))
    if not wanted:
        return
    account_id = account.id or 0
    with engine.begin() as conn:
        done = set(stored_snapshot_days(conn, account_id))
        missing = [d for d in wanted if d not in done]
        fill_snapshot_days(conn, account_id, missing)
        if missing:
            analyze_snapshots(conn)


def analyze_snapshots(conn: Connection) -> None:
    """PostgreSQL's planner statistics of mrr_snapshot, fresh (nothing on SQLite, which plans without them).

    A day added on demand (the metrics windows' starts a month and a year back, each night a new one) is in
    no statistics yet: the planner takes it for one row and joins the window's two days of every customer
    row by row. At 20,000 customers the unchanged night's metrics took 64 s instead of 4. ANALYZE samples
    the table: about a second at any size (worker/ledger/write.py does the same after a rebuild)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {S.name}"))


def stored_snapshot_days(conn: Connection, account_id: int) -> list[date]:
    """The days whose snapshots are done, oldest first."""
    rows = conn.execute(select(D.c.day).where(D.c.account_id == account_id).order_by(D.c.day))
    return [r[0] if isinstance(r[0], date) else date.fromisoformat(str(r[0])) for r in rows]


def fill_snapshot_days(conn: Connection, account_id: int, days: Sequence[date]) -> None:
    """Compute these days' snapshots for every customer from the stored ledger (one streamed pass in customer
    order for all of them) and mark them done."""
    if not days:
        return
    conn.execute(delete(S).where(S.c.account_id == account_id, S.c.day.in_(list(days))))
    points = points_for(days)
    write_snapshots(conn, account_id, points, _entries(conn, account_id, [p.t for p in points]))


def delete_snapshot_days(conn: Connection, account_id: int, days: Sequence[date]) -> None:
    """Drop these days' snapshots and their done marks."""
    for i in range(0, len(days), 500):
        chunk = list(days[i : i + 500])
        conn.execute(delete(S).where(S.c.account_id == account_id, S.c.day.in_(chunk)))
        conn.execute(delete(D).where(D.c.account_id == account_id, D.c.day.in_(chunk)))


def write_snapshots(
    conn: Connection,
    account_id: int,
    points: Sequence[Point],
    groups: Iterable[tuple[str, list[EntryRow]]],
    mark_days: bool = True,
) -> None:
    """Snapshot rows of these points from each customer's counted lines, and (`mark_days`) the points' days
    marked done.

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
    if mark_days:
        conn.execute(insert(D), [{"account_id": account_id, "day": p.day} for p in points])


@dataclass(frozen=True)
class CustomerMrr:
    customer_id: str
    mrr: int
    one_time: int
    plan: str | None


def mrr_at(conn: Connection, account_id: int, at: datetime) -> list[CustomerMrr]:
    """MRR(c, t) of every paying customer at an instant, largest first (computed, not read from snapshots)."""
    points = points_for([at.date()], [moment_ts(at)])
    out = [CustomerMrr(c, mrr, one, plan) for c, _, mrr, one, plan in snapshot_rows(conn, account_id, points)]
    return sorted((c for c in out if c.mrr > 0), key=lambda c: (-c.mrr, c.customer_id))


def paying_customers(conn: Connection, account_id: int, at: datetime, customers: Collection[str]) -> set[str]:
    """Those of these customers whose MRR at `at` is above 0: `mrr_at`'s rule (counted recurring lines with
    period_start <= t < mrr_end, summed) summed by the database, for a few customers (the alert run asks
    about those no longer at risk) without spreading every customer's lines."""
    t = moment_ts(at)
    ids = sorted(set(customers))
    found: set[str] = set()
    for n in range(0, len(ids), CUSTOMER_CHUNK):
        query = (
            select(L.c.customer_id)
            .where(
                *_counted_recurring(account_id, t, t),
                L.c.customer_id.in_(ids[n : n + CUSTOMER_CHUNK]),
            )
            .group_by(L.c.customer_id)
            .having(func.sum(func.coalesce(L.c.monthly_reporting, 0)) > 0)
        )
        found.update(r[0] for r in conn.execute(query))
    return found


def has_snapshots(conn: Connection, account_id: int) -> bool:
    """Whether any snapshot day is stored for the account (its ledger was built at least once)."""
    return conn.execute(select(D.c.day).where(D.c.account_id == account_id).limit(1)).first() is not None


def top_fifth_floor(conn: Connection, account_id: int, at: date) -> int | None:
    """The smallest MRR among the top fifth of paying customers (the ceil(n / 5) largest) on the newest
    snapshot day at or before `at`, or None when no snapshot exists yet.

    Read from the stored snapshots with two indexed queries, so a caller pays for it only when it needs it.
    """
    day = conn.execute(select(func.max(D.c.day)).where(D.c.account_id == account_id, D.c.day <= at)).scalar()
    if day is None:
        return None
    paying = and_(S.c.account_id == account_id, S.c.day == day, S.c.mrr > 0)
    n = int(conn.execute(select(func.count()).select_from(S).where(paying)).scalar() or 0)
    if n == 0:
        return None
    rank = -(-n // 5)  # ceil(n / 5)
    value = conn.execute(
        select(S.c.mrr).where(paying).order_by(S.c.mrr.desc()).offset(rank - 1).limit(1)
    ).scalar()
    return None if value is None else int(value)


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
        t = moment_ts(at)
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
    return [
        _missing_rate(currency, first, last, amount, count, at)
        for currency, first, last, amount, count in rows
    ]


def _missing_rate(
    currency: str, first: int, last: int, amount: int, count: int, at: datetime | None
) -> dict[str, str]:
    span = f"{_iso(first)} to {_iso(last)}"
    scope = f"at {at.date().isoformat()}" if at is not None else "over the history"
    return {
        "code": "missing_rate",
        "message": (
            f"no {currency.upper()} exchange rate for {span}: "
            f"{fmt(int(amount), currency)} of MRR {scope} "
            f"({count} lines) left out; add the rate with `retention rates import FILE.csv`"
        ),
    }


def missing_rate_warnings_at(
    conn: Connection, account_id: int, moments: Sequence[datetime]
) -> list[list[dict[str, str]]]:
    """`missing_rate_warnings` at each of these instants, from one read of the lines left out for a missing
    rate that cover one of them (the metrics run asks at three days: one pass over the ledger, not three)."""
    instants = [moment_ts(m) for m in moments]
    if not instants:
        return []
    covering = or_(*(and_(L.c.period_start <= t, L.c.mrr_end > t) for t in sorted(set(instants))))
    query = select(L.c.currency, L.c.period_start, L.c.period_end, L.c.monthly_amount, L.c.mrr_end).where(
        L.c.account_id == account_id, L.c.excluded_reason == "missing_rate", L.c.klass == RECURRING, covering
    )
    rows = list(raw_rows(conn, query))
    out = []
    for at, t in zip(moments, instants, strict=True):
        # per currency: first start, last end, MRR left out, lines, as the one-instant query groups them
        groups: dict[str, list[int]] = {}
        for currency, start, end, amount, mrr_end in rows:
            if start <= t < mrr_end:
                g = groups.setdefault(currency, [start, end, 0, 0])
                g[0], g[1], g[2], g[3] = min(g[0], start), max(g[1], end), g[2] + amount, g[3] + 1
        out.append([_missing_rate(c, g[0], g[1], g[2], g[3], at) for c, g in sorted(groups.items())])
    return out


def _iso(t: int) -> str:
    return utc_day(int(t)).isoformat()


def lines_for(conn: Connection, account_id: int, customer_id: str) -> list[dict[str, Any]]:
    """Every ledger line of one customer (for explain)."""
    rows = conn.execute(
        select(L)
        .where(L.c.account_id == account_id, L.c.customer_id == customer_id)
        .order_by(L.c.period_start, L.c.line_id)
    )
    return [dict(r._mapping) for r in rows]


def has_lines(conn: Connection, account_id: int, customer_id: str) -> bool:
    """Whether the ledger holds any line of this customer (stored customers are asked elsewhere)."""
    query = (
        select(func.count())
        .select_from(L)
        .where(L.c.account_id == account_id, L.c.customer_id == customer_id)
    )
    return bool(conn.execute(query).scalar())


def first_counted_start(conn: Connection, account_id: int) -> int | None:
    """The start of the earliest counted recurring line: where the account's MRR history begins."""
    query = select(func.min(L.c.period_start)).where(
        L.c.account_id == account_id, L.c.klass == RECURRING, L.c.counted.is_(True)
    )
    first = conn.execute(query).scalar()
    return None if first is None else int(first)


class RecurringLine(NamedTuple):
    """A recurring ledger line as the at-risk signals read it."""

    line_id: str
    customer_id: str
    product_id: str | None
    price_id: str | None
    subscription_item_id: str | None
    usage_type: str | None
    period_start: int
    period_end: int
    mrr_end: int
    net_amount: int
    monthly_amount: int
    currency: str
    counted: bool  # as the driver gives it: 0 / 1 on SQLite
    monthly_reporting: int | None  # what the line adds to MRR (reporting minor units) when counted
    invoiced_at: int | None  # when its invoice was created: from then on the line is known
    quantity: int | None  # the stored invoice line's (None: an upcoming line, nothing stored)
    discount_total: int  # the stored invoice line's discounts (0: none, or nothing stored)


def risk_lines(
    conn: Connection, account_id: int, customer_ids: Collection[str] | None = None
) -> list[RecurringLine]:
    """Recurring lines that are counted, or left out only for a missing exchange rate (the customer still pays
    them, so a fall in them is still a signal); of one batch of customers when `customer_ids` is given.

    Each with its stored invoice line's quantity and discounts, which the ledger keeps for this read
    (metrics/ledger.py): nothing here touches the Stripe tables."""
    query = select(*(L.c[name] for name in RecurringLine._fields)).where(
        L.c.account_id == account_id,
        L.c.klass == RECURRING,
        or_(L.c.counted.is_(True), L.c.excluded_reason == "missing_rate"),
    )
    if customer_ids is not None:
        query = query.where(L.c.customer_id.in_(list(customer_ids)))
    # In one order whatever plan the database picks (PostgreSQL's hash join returns another each time): the
    # signals take lines in the order given, and a batch of other customers must not change a verdict.
    query = query.order_by(L.c.customer_id, L.c.period_start, L.c.line_id)
    return list(map(RecurringLine._make, raw_rows(conn, query)))


def cohort_months(conn: Connection, account_id: int, last_month: date) -> list[date]:
    """The stored month-start snapshot days up to `last_month`, oldest first: what cohort_sums reads."""
    return [d for d in stored_snapshot_days(conn, account_id) if d.day == 1 and d <= last_month]


def cohort_sums(
    conn: Connection, account_id: int, last_month: date, months: Sequence[date] | None = None
) -> tuple[list[tuple[date, int, int]], list[tuple[date, date, int]]]:
    """The report's cohort grid summed by the database (never a row per customer and month in Python):
    (cohort, customers, their MRR in the cohort's month) per cohort, and (cohort, month start, MRR) per cohort
    and month start up to `last_month`. A customer's cohort is its first month start with MRR > 0.

    `months`: the month starts to read, when the caller has read cohort_months already."""
    months = list(months) if months is not None else cohort_months(conn, account_id, last_month)
    if not months:
        return [], []
    day_type = S.c.day.type
    firsts = (
        select(S.c.customer_id, func.min(S.c.day, type_=day_type).label("first"))
        .where(S.c.account_id == account_id, S.c.mrr > 0, S.c.day.in_(months))
        .group_by(S.c.customer_id)
        .subquery()
    )
    mine = and_(S.c.account_id == account_id, S.c.customer_id == firsts.c.customer_id)
    sizes = conn.execute(
        select(firsts.c.first, func.count(), func.sum(S.c.mrr))
        .select_from(firsts.join(S, and_(mine, S.c.day == firsts.c.first)))
        .group_by(firsts.c.first)
    )
    kept = conn.execute(
        select(firsts.c.first, S.c.day, func.sum(S.c.mrr))
        .select_from(firsts.join(S, and_(mine, S.c.day >= firsts.c.first, S.c.day.in_(months))))
        .group_by(firsts.c.first, S.c.day)
    )
    return (
        [(_as_date(f), int(n), int(m)) for f, n, m in sizes],
        [(_as_date(f), _as_date(d), int(m)) for f, d, m in kept],
    )


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def customers_converted_since(conn: Connection, account_id: int, reporting: str, since: int) -> set[str]:
    """Customers with a ledger line in another currency than `reporting` whose period starts at or after
    `since`: the lines a change of the exchange rates from that day on converts differently."""
    query = (
        select(L.c.customer_id)
        .where(
            L.c.account_id == account_id,
            func.lower(L.c.currency) != reporting.lower(),
            L.c.period_start >= since,
            L.c.customer_id.is_not(None),
        )
        .distinct()
    )
    return {r[0] for r in conn.execute(query)}


def _counted_recurring(account_id: int, first: int, last: int) -> list[ColumnElement[bool]]:
    """The account's counted recurring lines in force somewhere over [first, last] (a line counts over
    [period_start, mrr_end))."""
    return [
        L.c.account_id == account_id,
        L.c.klass == RECURRING,
        L.c.counted.is_(True),
        L.c.period_start <= last,
        L.c.mrr_end > first,
    ]


def revenue_customers(conn: Connection, account_id: int, first: int, last: int) -> list[str]:
    """Customers with a counted recurring line over [first, last]: everyone who may pay in that span
    (the at-risk run and the backtest read them per batch), sorted."""
    query = (
        select(L.c.customer_id)
        .where(*_counted_recurring(account_id, first, last))
        .distinct()
        .order_by(L.c.customer_id)
    )
    return [r[0] for r in raw_rows(conn, query)]


def snapshots_until(conn: Connection, account_id: int, until: date) -> list[tuple[str, date, int]]:
    """Every stored snapshot up to `until` (inclusive): (customer, day, MRR)."""
    query = select(S.c.customer_id, S.c.day, S.c.mrr).where(S.c.account_id == account_id, S.c.day <= until)
    return [(customer, day, mrr) for customer, day, mrr in conn.execute(query)]


class BuildRecord(NamedTuple):
    """When the account's ledger was last built, from which sync, with which inputs (worker/rebuild.py)."""

    built_at: int
    sync_at: int | None
    inputs: str | None


def last_build(conn: Connection, account_id: int) -> BuildRecord | None:
    """The account's last ledger build, or None if it was never built."""
    b = table_of(LedgerBuild)
    row = conn.execute(
        select(b.c.built_at, b.c.sync_at, b.c.inputs).where(b.c.account_id == account_id)
    ).first()
    return None if row is None else BuildRecord(*row)
