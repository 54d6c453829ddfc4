"""The backtest of one connected account: stored history in, the figures of docs/at-risk.md out.

One pass: the customers who paid somewhere in the span are read per batch (worker/risk.py iter_records),
each customer's whole history once, and judged at the twelve points with `metrics.at_risk.evaluate`, the
function `retention at-risk --as-of` runs, with the same thresholds and the same "is the stored state current"
rule; metrics/backtest.py adds the outcomes up. The nightly run stores the result (worker/backtest_store.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from metrics.at_risk import CustomerRecords, Thresholds, evaluate
from metrics.backtest import BacktestResult, Tally, backtest_points, span
from metrics.calendar import moment_ts
from metrics.money import json_amount
from worker.backtest_store import save_points, stored_points
from worker.models import Account
from worker.risk import customers_paying_between, is_current, iter_records, iter_revenue
from worker.risk_settings import risk_thresholds


def compute_backtest(
    engine: Engine,
    account: Account,
    as_of: datetime,
    thresholds: Thresholds | None = None,
    reuse: bool = False,
) -> BacktestResult:
    """The account's backtest as of `as_of` (the result is not stored: the nightly run stores it).

    With `reuse` (the nightly run), points judged before under the same thresholds are read back and the
    points judged now are kept; when every point is known, only the ledger's recurring lines are read (for the
    outcomes), not the invoices, subscriptions and usage the signals need.
    """
    th = thresholds or risk_thresholds()
    points = backtest_points(as_of)
    days = [p.date() for p in points]
    known = stored_points(engine, account, days, th) if reuse else {}
    first, last = span(points)
    current = [is_current(engine, account, p) for p in points]
    customers = customers_paying_between(engine, account, first, last)
    at = moment_ts(as_of)
    stream = (
        iter_revenue(engine, account, customers, at)
        if len(known) == len(days)
        else iter_records(engine, account, customers, at)
    )
    tally = Tally(points, account.reporting_currency)
    for records in stream:

        def judge(k: int, t: int, mrr: int, records: CustomerRecords = records) -> Sequence[str] | None:
            stored = known.get(days[k])
            if stored is not None:
                return stored.get(records.customer_id)
            found = evaluate(records, t, mrr, current[k], th)
            return found.codes if found is not None else None

        tally.add(records.customer_id, records.name, records.revenue, judge)
    if reuse:
        save_points(
            engine, account, {d: tally.point_flags[k] for k, d in enumerate(days) if d not in known}, th
        )
    return tally.result(as_of)


def backtest_payload(result: BacktestResult) -> dict[str, Any]:
    """`retention backtest --json` (README): ratios as fractions, amounts in major units."""
    cur = result.currency
    return {
        "as_of": result.as_of.isoformat(),
        "points": [d.isoformat() for d in result.points],
        "precision": result.precision,
        "recall": result.recall,
        "recall_count": {"caught": len(result.caught), "churners": len(result.churners)},
        "noise": result.noise,
        "median_lead_days": result.median_lead_days,
        "by_signal": {
            code: {"flags": flags, "hits": hits, "precision": round(hits / flags, 4) if flags else None}
            for code, (flags, hits) in result.by_signal.items()
        },
        "missed": [
            {
                "customer_id": c.customer_id,
                "name": c.name,
                "mrr": json_amount(c.mrr, cur),
                "churned_on": c.churned_on.isoformat(),
            }
            for c in result.churners
            if c.lead_days is None
        ],
        "warnings": result.warnings(),
    }


def backtest(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    """The payload of a freshly computed backtest (`retention backtest --json`)."""
    return backtest_payload(compute_backtest(engine, account, as_of))


def backtest_text(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    """The payload with the currency and the sentence, for the command's text form."""
    result = compute_backtest(engine, account, as_of)
    return {**backtest_payload(result), "currency": result.currency, "line": backtest_line(result)}


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def backtest_line(result: BacktestResult) -> str:
    """One sentence of the figures, for the terminal, the demo and Slack."""
    lead = result.median_lead_days
    return (
        f"{_share(result.precision)} of {result.flags} alerts were followed by churn or contraction within "
        f"120 days; {_share(result.recall)} of churned MRR was flagged 28+ days ahead "
        f"({len(result.caught)} of {len(result.churners)} churners); at most {_share(result.noise)} of "
        f"paying customers flagged on one date; median lead "
        f"{'n/a' if lead is None else f'{lead:.0f} days'}"
    )
