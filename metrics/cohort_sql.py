"""The SQL behind cohorts and movements: aggregation over mrr_snapshot in the database (SQLite, PostgreSQL).

A window is one query: the cohort's t0 rows joined to their t1 rows, grouped by (plan, size band, signup
month). Every aggregate is additive, so Python folds those few hundred groups into the headline and each
segmentation without a second pass over the customers. Movements use window functions over the month-start
rows. Nothing here loads one row per customer into Python, which is what lets 100,000 customers with three
years of history recompute in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Integer, and_, case, func, literal, select, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from metrics.cohorts import Aggregates, Window
from metrics.ledger import ClassifiedLine, MrrSnapshot

SNAP = MrrSnapshot.__table__  # type: ignore[attr-defined]
LINE = ClassifiedLine.__table__  # type: ignore[attr-defined]


class month_of_day(FunctionElement[str]):  # noqa: N801 - reads as a SQL function
    """`YYYY-MM` of a DATE column."""

    type = String()
    inherit_cache = True


class month_of_epoch(FunctionElement[str]):  # noqa: N801
    """`YYYY-MM` (UTC) of Unix seconds."""

    type = String()
    inherit_cache = True


class month_index(FunctionElement[int]):  # noqa: N801
    """year * 12 + month of a DATE column: consecutive months differ by exactly 1."""

    type = Integer()
    inherit_cache = True


@compiles(month_index)
def _month_index_default(element: month_index, compiler: Any, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    return f"(CAST(EXTRACT(YEAR FROM {arg}) AS INTEGER) * 12 + CAST(EXTRACT(MONTH FROM {arg}) AS INTEGER))"


@compiles(month_index, "sqlite")
def _month_index_sqlite(element: month_index, compiler: Any, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    return f"(CAST(substr({arg}, 1, 4) AS INTEGER) * 12 + CAST(substr({arg}, 6, 2) AS INTEGER))"


@compiles(month_of_day)
def _month_of_day_default(element: month_of_day, compiler: Any, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)}, 'YYYY-MM')"


@compiles(month_of_day, "sqlite")
def _month_of_day_sqlite(element: month_of_day, compiler: Any, **kw: Any) -> str:
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 7)"  # SQLite keeps dates as 'YYYY-MM-DD'


@compiles(month_of_epoch)
def _month_of_epoch_default(element: month_of_epoch, compiler: Any, **kw: Any) -> str:
    return f"to_char(to_timestamp({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM')"


@compiles(month_of_epoch, "sqlite")
def _month_of_epoch_sqlite(element: month_of_epoch, compiler: Any, **kw: Any) -> str:
    return f"strftime('%Y-%m', {compiler.process(element.clauses, **kw)}, 'unixepoch')"


@dataclass(frozen=True)
class GroupKey:
    plan: str | None
    band: int
    cohort: str | None  # signup month `YYYY-MM`


def _signup_month(s0: Any) -> ColumnElement[Any]:
    """Month of the customer's first MRR > 0: the earliest counted recurring line with a positive monthly
    amount, or the earliest snapshot with MRR > 0, whichever is earlier (the ledger sees mid-month starts that
    month-start snapshots only see a month later)."""
    x = SNAP.alias("first_snap")
    first_snap = (
        select(func.min(x.c.day))
        .where(x.c.account_id == s0.c.account_id, x.c.customer_id == s0.c.customer_id, x.c.mrr > 0)
        .scalar_subquery()
    )
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
    snap_month = month_of_day(first_snap)
    line_month = month_of_epoch(first_line)
    return case(
        (first_line.is_(None), snap_month),
        (first_snap.is_(None), line_month),
        (line_month < snap_month, line_month),
        else_=snap_month,
    )


def window_groups(conn: Connection, account_id: int, window: Window,
                  band_edges: Sequence[int]) -> dict[GroupKey, Aggregates]:
    """Aggregates of the window's cohort, grouped by (plan at t0, size band at t0, signup month)."""
    s0 = SNAP.alias("s0")
    s1 = SNAP.alias("s1")
    m0 = s0.c.mrr
    m1 = func.coalesce(s1.c.mrr, 0)
    one1 = func.coalesce(s1.c.one_time, 0)
    up = case((m1 > m0, m1 - m0), else_=0)
    band = case(*[(m0 >= edge, len(band_edges) - i) for i, edge in enumerate(reversed(band_edges))], else_=0)
    signup = _signup_month(s0)
    stmt = (
        select(
            s0.c.plan.label("plan"),
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
            func.sum(m0 + s0.c.one_time).label("start_with_one_time"),
            func.sum(m1 + one1).label("end_with_one_time"),
        )
        .select_from(
            s0.outerjoin(
                s1,
                and_(s1.c.account_id == s0.c.account_id, s1.c.customer_id == s0.c.customer_id,
                     s1.c.day == window.t1),
            )
        )
        .where(s0.c.account_id == account_id, s0.c.day == window.t0, s0.c.mrr > 0)
        .group_by(s0.c.plan, band, signup)
    )
    groups: dict[GroupKey, Aggregates] = {}
    for row in conn.execute(stmt).mappings():
        key = GroupKey(row["plan"], int(row["band"]), row["cohort"])
        groups[key] = Aggregates(**{name: int(row[name] or 0) for name in _AGG_FIELDS})
    return groups


_AGG_FIELDS = (
    "customers", "retained", "start", "end", "expansion", "contraction", "churn", "max_expansion",
    "start_with_one_time", "end_with_one_time",
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
    """Movements between consecutive month starts (METRICS.md section 4), from the month-start snapshots.

    A customer missing from a month's snapshots has MRR 0 there: a row that stops is churn in the next month,
    a row that resumes after a gap is a reactivation (or new, if it never paid before). The first month has no
    predecessor, so everything in it is new.
    """
    if not months:
        return []
    idx = month_index(SNAP.c.day)
    order = {"partition_by": SNAP.c.customer_id, "order_by": SNAP.c.day}
    first_paid = func.min(case((SNAP.c.mrr > 0, idx))).over(partition_by=SNAP.c.customer_id)
    rows = (
        select(
            SNAP.c.mrr.label("mrr"),
            idx.label("idx"),
            func.lag(SNAP.c.mrr).over(**order).label("prev_mrr"),
            func.lag(idx).over(**order).label("prev_idx"),
            func.lead(idx).over(**order).label("next_idx"),
            first_paid.label("first_paid"),
        )
        .where(SNAP.c.account_id == account_id, SNAP.c.day.in_(list(months)))
        .cte("rows")
    )
    mrr = rows.c.mrr
    prev = case((rows.c.prev_idx == rows.c.idx - 1, rows.c.prev_mrr), else_=0)
    starts = and_(prev <= 0, mrr > 0)
    ever = func.coalesce(rows.c.first_paid, rows.c.idx) < rows.c.idx
    zero = literal(0, Integer)
    in_month = select(
        rows.c.idx.label("idx"),
        mrr.label("mrr"),
        case((and_(starts, ~ever), mrr), else_=0).label("new"),
        case((and_(starts, ever), mrr), else_=0).label("reactivation"),
        case((and_(prev > 0, mrr > prev), mrr - prev), else_=0).label("expansion"),
        case((and_(prev > 0, mrr > 0, mrr < prev), prev - mrr), else_=0).label("contraction"),
        case((and_(prev > 0, mrr <= 0), prev), else_=0).label("churn"),
    )
    # a paying row followed by no row next month: churn in the next month
    last = months[-1].year * 12 + months[-1].month
    stops = and_(mrr > 0, rows.c.idx < last, func.coalesce(rows.c.next_idx, last + 1) > rows.c.idx + 1)
    gap_churn = select(
        (rows.c.idx + 1).label("idx"), zero.label("mrr"), zero.label("new"), zero.label("reactivation"),
        zero.label("expansion"), zero.label("contraction"), mrr.label("churn"),
    ).where(stops)
    both = union_all(in_month, gap_churn).subquery("contributions")
    per_month = select(
        both.c.idx, *[func.sum(both.c[name]).label(name) for name in _MOVES]
    ).group_by(both.c.idx)
    result = {m.year * 12 + m.month: MonthMovement(month=m) for m in months}
    for row in conn.execute(per_month).mappings():
        out = result[int(row["idx"])]
        for name in _MOVES:
            setattr(out, name, int(row[name] or 0))
    return list(result.values())


_MOVES = ("mrr", "new", "reactivation", "expansion", "contraction", "churn")

