"""The SQL over ledger_line: MRR per customer at instants, snapshots, and the `missing_rate` warnings.

MRR(c, t) is one aggregate over the ledger (counted recurring lines with period_start <= t < mrr_end),
computed
for a batch of instants in a single statement joined with a VALUES list, so 36 month starts for 100,000
customers
is one INSERT ... SELECT inside the database, not a Python loop. The plan of a customer at t is the product
name
of the largest recurring line at t; one_time is what was invoiced one-time in t's calendar month.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    String,
    and_,
    case,
    column,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    values,
)
from sqlalchemy.engine import Connection, Engine

from integrations.stripe.models import StripeProduct
from metrics.classify import ONE_TIME, RECURRING
from metrics.ledger import ClassifiedLine, MrrSnapshot, SnapshotDay
from metrics.money import fmt
from worker.models import Account

L = ClassifiedLine.__table__  # type: ignore[attr-defined]
P = StripeProduct.__table__  # type: ignore[attr-defined]
S = MrrSnapshot.__table__  # type: ignore[attr-defined]
D = SnapshotDay.__table__  # type: ignore[attr-defined]
DAYS_PER_STATEMENT = 400


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


def _points(days: Sequence[date], instants: Sequence[int] | None = None) -> Any:
    """A VALUES list (day, instant, month start, next month start) as a CTE."""
    data = []
    for i, d in enumerate(days):
        t = instants[i] if instants is not None else ts(d)
        data.append((d, t, ts(month_start(d)), ts(next_month(d))))
    return (
        values(
            column("day", Date),
            column("t", BigInteger),
            column("m0", BigInteger),
            column("m1", BigInteger),
            name="pts",
        )
        .data(data)
        .cte("pts")
    )


def snapshot_select(account_id: int, days: Sequence[date], instants: Sequence[int] | None = None) -> Any:
    """(customer_id, day, mrr, one_time, plan) per customer with MRR > 0 or one-time amounts, per point."""
    pts = _points(days, instants)
    active = and_(
        L.c.account_id == account_id,
        L.c.counted.is_(True),
        L.c.klass == RECURRING,
        L.c.period_start <= pts.c.t,
        L.c.mrr_end > pts.c.t,
    )
    rec = select(
        L.c.customer_id,
        pts.c.day,
        L.c.monthly_reporting.label("mrr"),
        literal(0, BigInteger).label("one_time"),
    ).select_from(L.join(pts, active))
    one = select(
        L.c.customer_id,
        pts.c.day,
        literal(0, BigInteger).label("mrr"),
        L.c.amount_reporting.label("one_time"),
    ).select_from(
        L.join(
            pts,
            and_(
                L.c.account_id == account_id,
                L.c.counted.is_(True),
                L.c.klass == ONE_TIME,
                L.c.invoiced_at >= pts.c.m0,
                L.c.invoiced_at < pts.c.m1,
            ),
        )
    )
    u = union_all(rec, one).cte("u")
    total = func.sum(u.c.mrr)
    agg = (
        select(
            u.c.customer_id,
            u.c.day,
            case((total > 0, total), else_=0).label("mrr"),
            func.sum(u.c.one_time).label("one_time"),
        )
        .group_by(u.c.customer_id, u.c.day)
        .having(or_(total > 0, func.sum(u.c.one_time) != 0))
    ).cte("agg")
    rank = (
        func.row_number()
        .over(partition_by=(L.c.customer_id, pts.c.day), order_by=(L.c.monthly_reporting.desc(), L.c.line_id))
        .label("rn")
    )
    ranked = (
        select(
            L.c.customer_id, pts.c.day, func.coalesce(P.c.name, L.c.product_id).label("plan"), rank
        ).select_from(
            L.join(pts, active).outerjoin(P, and_(P.c.account_id == L.c.account_id, P.c.id == L.c.product_id))
        )
    ).cte("ranked")
    return select(
        literal(account_id).label("account_id"),
        agg.c.customer_id,
        agg.c.day,
        agg.c.mrr,
        agg.c.one_time,
        func.cast(ranked.c.plan, String(255)).label("plan"),
    ).select_from(
        agg.outerjoin(
            ranked,
            and_(ranked.c.customer_id == agg.c.customer_id, ranked.c.day == agg.c.day, ranked.c.rn == 1),
        )
    )


def ensure_snapshots(engine: Engine, account: Account, days: list[date]) -> None:
    """MrrSnapshot rows for exactly these days, computed from the ledger where the day is not done yet."""
    wanted = sorted(set(days))
    if not wanted:
        return
    with engine.begin() as conn:
        done = {
            r[0] if isinstance(r[0], date) else date.fromisoformat(str(r[0]))
            for r in conn.execute(select(D.c.day).where(D.c.account_id == account.id))
        }
        missing = [d for d in wanted if d not in done]
        for i in range(0, len(missing), DAYS_PER_STATEMENT):
            batch = missing[i : i + DAYS_PER_STATEMENT]
            conn.execute(delete(S).where(S.c.account_id == account.id, S.c.day.in_(batch)))
            query = snapshot_select(account.id or 0, batch)
            conn.execute(
                insert(S).from_select(["account_id", "customer_id", "day", "mrr", "one_time", "plan"], query)
            )
            conn.execute(insert(D), [{"account_id": account.id, "day": d} for d in batch])


@dataclass(frozen=True)
class CustomerMrr:
    customer_id: str
    mrr: int
    one_time: int
    plan: str | None


def mrr_at(conn: Connection, account_id: int, at: datetime) -> list[CustomerMrr]:
    """MRR(c, t) of every paying customer at an instant, largest first (computed, not read from snapshots)."""
    query = snapshot_select(account_id, [at.date()], [int(at.timestamp())])
    out = [CustomerMrr(r.customer_id, int(r.mrr), int(r.one_time), r.plan) for r in conn.execute(query)]
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
