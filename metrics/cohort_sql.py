"""The SQL behind cohorts and movements: aggregation over mrr_snapshot in the database (SQLite, PostgreSQL).

A window is one query: the cohort's t0 rows joined to their t1 rows, grouped by (plan, size band, signup
month). Every aggregate is additive, so Python folds those few hundred groups into the headline and each
segmentation without a second pass over the customers. Movements use window functions over the month-start
rows. Nothing here loads one row per customer into Python, which is what lets 100,000 customers with three
years of history recompute in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import Integer, and_, case, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from metrics.cohorts import Aggregates, Window
from metrics.ledger import ClassifiedLine, MrrSnapshot
from metrics.tables import table_of

SNAP = table_of(MrrSnapshot)
LINE = table_of(ClassifiedLine)


FunctionType = TypeVar("FunctionType", bound=type[FunctionElement[Any]])


def _sql(default: str, sqlite: str) -> Callable[[FunctionType], FunctionType]:
    """Compile a one-argument SQL function from a template per dialect (PostgreSQL's is the default; `{}`
    stands for the compiled argument): the two databases spell date arithmetic differently."""

    def register(function: FunctionType) -> FunctionType:
        def compile_with(template: str) -> Callable[..., str]:
            def compiled(element: FunctionElement[Any], compiler: Any, **kw: Any) -> str:
                return template.format(compiler.process(element.clauses, **kw))

            return compiled

        compiles(function)(compile_with(default))
        compiles(function, "sqlite")(compile_with(sqlite))
        return function

    return register


# SQLite keeps dates as 'YYYY-MM-DD' text
@_sql(default="to_char({}, 'YYYY-MM')", sqlite="substr({}, 1, 7)")
class month_of_day(FunctionElement[str]):  # noqa: N801 - reads as a SQL function
    """`YYYY-MM` of a DATE column."""

    type = String()
    inherit_cache = True


@_sql(
    default="to_char(to_timestamp({}) AT TIME ZONE 'UTC', 'YYYY-MM')",
    sqlite="strftime('%Y-%m', {}, 'unixepoch')",
)
class month_of_epoch(FunctionElement[str]):  # noqa: N801
    """`YYYY-MM` (UTC) of Unix seconds."""

    type = String()
    inherit_cache = True


@_sql(default="({} - DATE '2000-01-01')", sqlite="CAST(julianday({}) AS INTEGER)")
class day_number(FunctionElement[int]):  # noqa: N801
    """Whole days since a fixed date, for a DATE column: differences are day counts on both databases."""

    type = Integer()
    inherit_cache = True


@dataclass(frozen=True)
class GroupKey:
    plan: str | None
    band: int
    cohort: str | None  # signup month `YYYY-MM`


def _signup_month(s0: Any) -> ColumnElement[Any]:
    """`YYYY-MM` (UTC) of the customer's earliest counted recurring line with a positive monthly amount: the
    signup month, the earlier of that line's month and the month of the first snapshot with MRR > 0.

    The snapshot's month never needs reading, because it is never the earlier one for a cohort member.
    Snapshots are only written from the ledger (worker/mrr_queries.py, worker/ledger/write.py, in the
    rebuild's transaction), and a customer's snapshot MRR at day d is the sum of `monthly_reporting` (NULL
    as 0) over its counted recurring lines with period_start <= t < mrr_end, t = 00:00 UTC of d
    (metrics/mrr.py SnapshotSpreader). A sum above 0 needs a term above 0: a counted recurring line with
    monthly_reporting > 0 and period_start <= t. So that line is one this subquery reads, the minimum it
    returns is <= t, and its UTC month is <= d's month, for the first paying snapshot as for every other.
    A cohort member pays at t0, so the minimum is never NULL either: it is the signup month. (Reading the
    first snapshot too cost about half of the window's query: a correlated MIN over every snapshot row of
    each member.) tests/metrics/test_cohort_sql.py computes the old two-month expression on generated
    accounts and compares the groups.

    Read from the ledger's customer index alone (metrics/ledger.py): under (account, customer, klass,
    counted) its entries come in period order, so the minimum is the first that pays."""
    first_line = (
        select(func.min(LINE.c.period_start))
        .where(
            LINE.c.account_id == s0.c.account_id,
            LINE.c.customer_id == s0.c.customer_id,
            LINE.c.klass == "recurring",
            LINE.c.counted.is_(True),
            LINE.c.monthly_reporting > 0,
        )
        .scalar_subquery()
    )
    return month_of_epoch(first_line)


def _members(account_id: int, window: Window) -> Any:
    """One row per cohort member: plan and MRR at t0, MRR and one-time at t1, signup month.

    OFFSET 0 keeps PostgreSQL from inlining this into the aggregate, which would repeat the per-customer
    subquery in each expression that uses the signup month (the select list and the GROUP BY)."""
    s0 = SNAP.alias("s0")
    s1 = SNAP.alias("s1")
    return (
        select(
            s0.c.plan.label("plan"),
            s0.c.mrr.label("m0"),
            s0.c.one_time.label("one0"),
            func.coalesce(s1.c.mrr, 0).label("m1"),
            func.coalesce(s1.c.one_time, 0).label("one1"),
            _signup_month(s0).label("signup"),
        )
        .select_from(
            s0.outerjoin(
                s1,
                and_(
                    s1.c.account_id == s0.c.account_id,
                    s1.c.customer_id == s0.c.customer_id,
                    s1.c.day == window.t1,
                ),
            )
        )
        .where(s0.c.account_id == account_id, s0.c.day == window.t0, s0.c.mrr > 0)
        .offset(0)
        .subquery("members")
    )


def window_groups(
    conn: Connection, account_id: int, window: Window, band_edges: Sequence[int]
) -> dict[GroupKey, Aggregates]:
    """Aggregates of the window's cohort, grouped by (plan at t0, size band at t0, signup month)."""
    c = _members(account_id, window)
    m0, m1 = c.c.m0, c.c.m1
    up = case((m1 > m0, m1 - m0), else_=0)
    band = case(*[(m0 >= edge, len(band_edges) - i) for i, edge in enumerate(reversed(band_edges))], else_=0)
    signup = c.c.signup
    stmt = select(
        c.c.plan,
        band.label("band"),
        signup.label("cohort"),
        func.count().label("customers"),
        func.sum(case((m1 > 0, 1), else_=0)).label("retained"),
        func.sum(m0).label("start"),
        func.sum(m1).label("end"),
        func.sum(up).label("expansion"),
        func.sum(case((and_(m1 > 0, m1 < m0), m0 - m1), else_=0)).label("contraction"),
        func.sum(case((m1 <= 0, m0), else_=0)).label("churn"),
        func.max(up).label("max_expansion"),
        func.sum(m0 + c.c.one0).label("start_with_one_time"),
        func.sum(m1 + c.c.one1).label("end_with_one_time"),
    ).group_by(c.c.plan, band, signup)
    groups: dict[GroupKey, Aggregates] = {}
    for row in conn.execute(stmt).mappings():
        key = GroupKey(row["plan"], int(row["band"]), row["cohort"])
        groups[key] = Aggregates(**{name: int(row[name] or 0) for name in _AGG_FIELDS})
    return groups


_AGG_FIELDS = (
    "customers",
    "retained",
    "start",
    "end",
    "expansion",
    "contraction",
    "churn",
    "max_expansion",
    "start_with_one_time",
    "end_with_one_time",
)


def total_mrr(conn: Connection, account_id: int, day: date) -> int:
    """MRR(t) = sum over customers of the day's snapshot."""
    stmt = select(func.coalesce(func.sum(SNAP.c.mrr), 0)).where(
        SNAP.c.account_id == account_id, SNAP.c.day == day
    )
    return int(conn.execute(stmt).scalar_one())


def first_snapshot_day(conn: Connection, account_id: int) -> date | None:
    value = conn.execute(select(func.min(SNAP.c.day)).where(SNAP.c.account_id == account_id)).scalar_one()
    if isinstance(value, str):  # SQLite returns min() of a DATE as text
        return date.fromisoformat(value)
    return value  # type: ignore[no-any-return]


@dataclass
class MonthMovement:
    month: date
    new: int = 0
    expansion: int = 0
    contraction: int = 0
    churn: int = 0
    reactivation: int = 0
    mrr: int = 0


def month_movements(conn: Connection, account_id: int, months: Sequence[date]) -> list[MonthMovement]:
    """Movements between consecutive month starts (docs/movements.md), from the month-start snapshots.

    One window pass over the month-start rows (in primary-key order, no extra sort) gives, per row at month m,
    the customer's MRR at m-1 (0 when the customer had no row there: rows of consecutive month starts are at
    most 31 days apart) and how many paying months the customer had so far (1 = first ever: `new`). A
    customer with no row at m has MRR 0 there, so churn is everything paying at m-1 that is not seen paying at
    m: mrr(m-1) minus the m-1 MRR of the customers still paying at m. The first month has no predecessor, so
    everything in it is new. SQLite takes the streamed path below (same buckets, half the time).
    """
    if not months:
        return []
    if conn.dialect.name == "sqlite":
        return _movements_streamed(conn, account_id, months)
    order: dict[str, Any] = {"partition_by": SNAP.c.customer_id, "order_by": SNAP.c.day}
    gap = day_number(SNAP.c.day) - func.lag(day_number(SNAP.c.day)).over(**order)
    rows = (
        select(
            SNAP.c.day.label("day"),
            SNAP.c.mrr.label("mrr"),
            case((gap <= 31, func.lag(SNAP.c.mrr).over(**order)), else_=0).label("prev"),
            func.count(case((SNAP.c.mrr > 0, 1))).over(**order, rows=(None, 0)).label("paid_months"),
        )
        .where(SNAP.c.account_id == account_id, SNAP.c.day.in_(list(months)))
        .subquery("rows")
    )
    mrr, prev = rows.c.mrr, rows.c.prev  # never NULL: a first row's gap is NULL, so its CASE gives 0
    starts = and_(prev <= 0, mrr > 0)
    per_month = select(
        rows.c.day,
        func.sum(case((mrr > 0, mrr), else_=0)).label("mrr"),
        func.sum(case((and_(starts, rows.c.paid_months == 1), mrr), else_=0)).label("new"),
        func.sum(case((and_(starts, rows.c.paid_months > 1), mrr), else_=0)).label("reactivation"),
        func.sum(case((and_(prev > 0, mrr > prev), mrr - prev), else_=0)).label("expansion"),
        func.sum(case((and_(prev > 0, mrr > 0, mrr < prev), prev - mrr), else_=0)).label("contraction"),
        func.sum(case((and_(prev > 0, mrr > 0), prev), else_=0)).label("kept_prev"),
    ).group_by(rows.c.day)
    result = {m: MonthMovement(month=m) for m in months}
    kept: dict[date, int] = {}
    for row in conn.execute(per_month).mappings():
        day = row["day"] if isinstance(row["day"], date) else date.fromisoformat(str(row["day"]))
        out = result[day]
        for name in ("mrr", "new", "reactivation", "expansion", "contraction"):
            setattr(out, name, int(row[name] or 0))
        kept[day] = int(row["kept_prev"] or 0)
    previous_mrr = 0
    for day, out in result.items():
        out.churn = previous_mrr - kept.get(day, 0)
        previous_mrr = out.mrr
    return list(result.values())


def _movements_streamed(conn: Connection, account_id: int, months: Sequence[date]) -> list[MonthMovement]:
    """SQLite's fast path for month_movements, with the same buckets.

    SQLite's window functions cost about 3 us a row; reading the rows in primary-key order (customer, day: no
    sort) through the driver's own cursor and bucketing them in one loop costs half that, which is what keeps
    100,000 customers x 36 months near the 10 s budget. Only a few integers per month are held in memory.
    """
    position = {m.isoformat(): i for i, m in enumerate(months)}
    n = len(months)
    total, new, reactivation, expansion, contraction, kept = ([0] * n for _ in range(6))
    marks = ", ".join("?" for _ in months)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    # built from our own table's name and one placeholder per month; the values are bound parameters
    cursor.execute(
        f"SELECT customer_id, day, mrr FROM {SNAP.name} WHERE account_id = ? AND day IN ({marks}) "  # noqa: S608
        "ORDER BY customer_id, day",
        [account_id, *position],
    )
    customer, last_i, last_mrr, paid = None, -2, 0, False
    for customer_id, day, mrr in cursor:
        i = position[day]
        if customer_id != customer:
            customer, last_i, last_mrr, paid = customer_id, -2, 0, False
        prev = last_mrr if last_i == i - 1 else 0
        if mrr > 0:
            total[i] += mrr
            if prev <= 0:
                (reactivation if paid else new)[i] += mrr
                paid = True
            else:
                kept[i] += prev
                if mrr > prev:
                    expansion[i] += mrr - prev
                else:
                    contraction[i] += prev - mrr
        last_i, last_mrr = i, mrr
    cursor.close()
    out, previous = [], 0
    for i, month in enumerate(months):
        out.append(
            MonthMovement(
                month=month,
                new=new[i],
                expansion=expansion[i],
                contraction=contraction[i],
                churn=previous - kept[i],
                reactivation=reactivation[i],
                mrr=total[i],
            )
        )
        previous = total[i]
    return out
