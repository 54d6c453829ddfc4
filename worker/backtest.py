"""The backtest of one connected account: stored history in, the figures of docs/at-risk.md out.

One pass: the customers who paid somewhere in the span are read per batch (worker/risk.py iter_records),
each customer's whole history once, and judged at the twelve points with `metrics.at_risk.evaluate`, the
function `retention at-risk --as-of` runs, with the same thresholds and the same "is the stored state current"
rule; metrics/backtest.py adds the outcomes up. The nightly run stores the result (worker/backtest_store.py)
and, with `reuse`, keeps each customer's codes over time so later nights read only what they miss
(worker/risk_store.py; docs/at-risk.md, Stored verdicts).
"""

from __future__ import annotations

import contextlib
import zlib
from bisect import bisect_right
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Engine

from metrics.at_risk import (
    DAY,
    CustomerRecords,
    Thresholds,
    change_points,
    evaluate,
    next_after,
    signals_at,
)
from metrics.backtest import BacktestResult, MrrSteps, Tally, backtest_points, holds_until, span
from metrics.calendar import moment_ts
from metrics.cycles import without_cycle_collection
from metrics.money import json_amount
from worker.models import Account
from worker.risk import (
    BATCH,
    customers_paying_between,
    described_at,
    describes,
    iter_records,
    read_catalog,
    stale_customers,
    verdict_basis,
)
from worker.risk_settings import risk_thresholds
from worker.risk_store import (
    FOREVER,
    Forgotten,
    Held,
    KeptCustomer,
    Span,
    epoch,
    held_contributions,
    kept_customers,
    save_kept_customers,
)

HORIZON_DAYS = 7  # a customer read again is judged 7 to 14 days past each point (docs/at-risk.md)


def compute_backtest(
    engine: Engine,
    account: Account,
    as_of: datetime,
    thresholds: Thresholds | None = None,
    reuse: bool = False,
) -> BacktestResult:
    """The account's backtest as of `as_of` (the result is not stored: the nightly run stores it).

    With `reuse` (the nightly run), each customer's signal codes over time are kept as spans
    (worker/risk_store.py): a customer whose history did not change and whose spans cover tonight's points is
    not read again, only its recurring lines (for the outcomes); the others are read and judged at the
    points and a few days beyond, so the next nights find them covered. The figures are the same.
    """
    th = thresholds or risk_thresholds()
    points = backtest_points(as_of)
    first, last = span(points)
    described = described_at(engine, account)
    current = [describes(described, p) for p in points]
    customers = customers_paying_between(engine, account, first, last)
    tally = Tally(points, account.reporting_currency)
    with without_cycle_collection():
        if reuse and not any(current):
            _tally_from_spans(engine, account, customers, tally, th, as_of.date())
            return tally.result(as_of)
        for records in iter_records(engine, account, customers, moment_ts(as_of)):

            def judge(k: int, t: int, mrr: int, records: CustomerRecords = records) -> Sequence[str] | None:
                found = evaluate(records, t, mrr, current[k], th)
                return found.codes if found is not None else None

            tally.add(records.customer_id, records.name, records.revenue, judge)
    return tally.result(as_of)


def _covering(spans: list[Span], t: int) -> Span | None:
    """A span over instant t, None if none (spans sorted by start, as `_merged` keeps them).

    The one starting last at or before t, found by bisection (twelve points for each of tens of thousands of
    customers a night); only when it ended before t can an earlier, longer one cover t (spans judged on
    different nights may overlap, with the same codes where they do: the same history judged at the same
    instants)."""
    i = bisect_right(spans, t, key=_start)
    if i and t < spans[i - 1][1]:
        return spans[i - 1]
    return next((s for s in spans[: max(i - 1, 0)] if s[0] <= t < s[1]), None)


def _start(span: Span) -> int:
    return span[0]


def _horizon(customer_id: str) -> int:
    """7 to 14 days, by customer: those judged on the same night are not all due again on the same night."""
    return (HORIZON_DAYS + zlib.crc32(customer_id.encode()) % (HORIZON_DAYS + 1)) * DAY


def judge_spans(
    records: CustomerRecords, instants: Sequence[int], th: Thresholds, horizon: int
) -> list[Span]:
    """The customer's signal codes from each instant to `horizon` after it (None: no signal), as spans over
    which they cannot change (metrics.at_risk.next_change), judged on dated evidence only (current=False)."""
    out: list[Span] = []
    points: dict[bool, list[int]] = {}  # next_change's turning points, listed once per customer
    for start in instants:
        t = start
        while t < start + horizon:
            signals, _ = signals_at(records, t, False, th)
            flagged = bool(signals)
            if flagged not in points:
                points[flagged] = change_points(records, th, money=False, signals=flagged)
            until = next_after(points[flagged], t) or FOREVER
            out.append((t, until, tuple(s.code for s in signals) or None))
            t = until
    return out


def _merged(spans: list[Span], since: int) -> list[Span]:
    """Spans ending after `since`, sorted, neighbours with the same codes joined (less to store)."""
    out: list[Span] = []
    for s in sorted(x for x in spans if x[1] > since):
        if out and out[-1][1] == s[0] and out[-1][2] == s[2]:
            out[-1] = (out[-1][0], s[1], s[2])
        else:
            out.append(s)
    return out


def _tally_from_spans(
    engine: Engine, account: Account, customers: Sequence[str], tally: Tally, th: Thresholds, today: date
) -> None:
    """Adds every customer to `tally` from what was kept of it, reading and judging only what is missing.

    A customer whose kept contribution holds tonight (metrics.backtest.holds_until) is added from that one
    row; the others (due) from their kept spans and MRR steps, judged where the spans miss tonight's points,
    and kept again with their new contribution."""
    account_id = account.id or 0
    catalog = read_catalog(engine, account)
    basis = verdict_basis(account, catalog, th, False)
    instants = tally.instants
    listed = set(customers)
    added: set[str] = set()
    with engine.connect() as conn:
        since = epoch(conn, account_id)  # read before anything it judges
        stale = stale_customers(conn, account_id)
        if stale is not None:
            for cid, name, held in held_contributions(conn, account_id, basis, today.toordinal()):
                if cid in listed and cid not in stale:
                    tally.add_contribution(cid, name, held)
                    added.add(cid)
    due = [c for c in customers if c not in added]
    del listed, added
    for n in range(0, len(due), BATCH):
        chunk = due[n : n + BATCH]
        with engine.connect() as conn:
            found = kept_customers(conn, account_id, chunk) if stale is not None else {}
        kept = {
            cid: k for cid, k in found.items() if k.basis == basis and cid not in (stale or ())
        }  # a changed history, another basis: judged afresh
        judge = [c for c in chunk if c not in kept or not all(_covering(kept[c].spans, t) for t in instants)]
        as_stored = set(kept) - set(judge)  # spans and MRR steps unchanged: only the contribution is written
        for records in iter_records(engine, account, judge, instants[-1], catalog=catalog):
            cid = records.customer_id
            old = kept[cid].spans if cid in kept else []
            missing = [t for t in instants if _covering(old, t) is None]
            steps = MrrSteps(records.revenue)
            spans = _merged(old + judge_spans(records, missing, th, _horizon(cid)), instants[0])
            kept[cid] = KeptCustomer(basis, records.name, steps.instants, steps.values, spans)
        for cid in chunk:
            _add(tally, cid, kept[cid], today)
        if kept:  # kept unless a rebuild forgot verdicts meanwhile (then the next night judges them)
            with contextlib.suppress(Forgotten), engine.begin() as conn:
                save_kept_customers(conn, account_id, kept, since, held_only=as_stored)


def _add(tally: Tally, customer_id: str, kept: KeptCustomer, today: date) -> None:
    """Adds the customer from its kept spans and MRR steps, and notes its contribution in `kept.held`."""

    def judge(k: int, t: int, mrr: int) -> Sequence[str] | None:
        found = _covering(kept.spans, t)
        return found[2] if found is not None else None

    steps = MrrSteps.of(kept.instants, kept.values)
    found = tally.contribution(steps, judge)
    tally.add_contribution(customer_id, kept.name, found)
    edges = [edge for s in kept.spans for edge in s[:2]]
    until = holds_until(today, steps, edges, {k for k, _, _ in found.flags})
    kept.held = Held(today.toordinal(), until.toordinal(), found)


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
