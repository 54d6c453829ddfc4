"""The payloads of the revenue commands (`mrr`, `movements`, `explain`), built from the ledger.

worker/cli/revenue.py only parses arguments and prints; what a payload holds is decided here, so the JSON a
script reads and the table a person reads come from the same figures, and the payloads can be tested without
a command line. An account whose ledger is still empty or stale is rebuilt first (worker/rebuild.py), so the
figures right after a sync are there.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Engine

from integrations.stripe.repository import customers
from metrics.calendar import moment_ts, month_starts_covering, utc_datetime, utc_day, utc_now
from metrics.classify import RECURRING
from metrics.money import json_amount
from metrics.movements import BUCKETS, movements
from worker.left_out import carried_from
from worker.left_out import left_out as why_left_out
from worker.models import Account
from worker.mrr_queries import (
    ensure_snapshots,
    first_counted_start,
    has_lines,
    lines_for,
    missing_rate_warnings,
    mrr_at,
    snapshot_series,
)
from worker.rebuild import ensure_ledger


def customer_names(engine: Engine, account: Account) -> dict[str, str | None]:
    """Stored name per customer id (None where Stripe has none): payloads show the name beside the id."""
    with engine.connect() as conn:
        return {c.id: c.name for c in customers.customer_names(conn, account.id or 0)}


def _with_warnings(payload: dict[str, Any], warnings: list[dict[str, str]]) -> dict[str, Any]:
    """`warnings` appears only when there is one, so a clean payload keeps its documented shape."""
    if warnings:
        payload["warnings"] = warnings
    return payload


def mrr_payload(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    """The `retention mrr --json` payload of one account."""
    ensure_ledger(engine, account)
    cur = account.reporting_currency.lower()
    names = customer_names(engine, account)
    with engine.connect() as conn:
        rows = mrr_at(conn, account.id or 0, as_of)
        warnings = missing_rate_warnings(conn, account.id or 0, at=as_of)
    payload: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "currency": cur,
        "mrr": json_amount(sum(r.mrr for r in rows), cur),
        "customers": [
            {
                "id": r.customer_id,
                "name": names.get(r.customer_id),
                "mrr": json_amount(r.mrr, cur),
                "plan": r.plan,
            }
            for r in rows
        ],
    }
    return _with_warnings(payload, warnings)


def movements_payload(engine: Engine, account: Account, today: date | None = None) -> dict[str, Any]:
    """The `retention movements --json` payload: one row per month start with a snapshot history."""
    ensure_ledger(engine, account)
    today = today or utc_now().date()
    cur = account.reporting_currency.lower()
    with engine.connect() as conn:
        first = first_counted_start(conn, account.id or 0)
    months = month_starts_covering(utc_day(first), today) if first is not None else []
    ensure_snapshots(engine, account, months)
    with engine.connect() as conn:
        series = snapshot_series(conn, account.id or 0, months)
        warnings = missing_rate_warnings(conn, account.id or 0)
    rows = []
    for m in movements(series):
        row: dict[str, Any] = {"month": m.month.strftime("%Y-%m")}
        row.update({k: json_amount(getattr(m, k), cur) for k in BUCKETS})
        row["mrr"] = json_amount(m.mrr, cur)
        rows.append(row)
    return _with_warnings({"currency": cur, "months": rows}, warnings)


def has_customer(engine: Engine, account: Account, customer_id: str) -> bool:
    """Whether the account knows the customer, from its ledger or from what a sync stored."""
    with engine.connect() as conn:
        in_ledger = has_lines(conn, account.id or 0, customer_id)
        return in_ledger or customers.has_customer(conn, account.id or 0, customer_id)


def accounts_with_customer(engine: Engine, accounts: list[Account], customer_id: str) -> list[Account]:
    """The accounts `explain` answers for: a customer id is unique to one Stripe account in practice, but the
    command does not assume it."""
    return [a for a in accounts if has_customer(engine, a, customer_id)]


def _counted_at(line: dict[str, Any], t: int) -> bool:
    """Whether the line is part of MRR at instant t (the rule of docs/mrr.md)."""
    recurring = line["klass"] == RECURRING and line["counted"]
    return bool(recurring and line["period_start"] <= t < line["mrr_end"])


def _line_entry(line: dict[str, Any], cur: str) -> dict[str, Any]:
    return {
        "line_id": line["line_id"],
        "invoice_id": line["invoice_id"],
        "class": line["klass"],
        "reason": line["reason"],
        "period_start": _iso(line["period_start"]),
        "period_end": _iso(line["period_end"]),
        "counts_until": _iso(line["mrr_end"]),
        "currency": line["currency"],
        "net_amount": json_amount(line["net_amount"], line["currency"]),
        "monthly_amount": json_amount(line["monthly_amount"], line["currency"]),
        "monthly_reporting": None
        if line["monthly_reporting"] is None
        else json_amount(line["monthly_reporting"], cur),
    }


def _split_lines(
    lines: list[dict[str, Any]], as_of: datetime, cur: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The entries counted in MRR at as_of, and those left out that still touch it: active at as_of (a
    period not yet over) or billed in its month, each with why it was left out."""
    t = moment_ts(as_of)
    month = (as_of.year, as_of.month)
    counted, left_out = [], []
    carried = carried_from(lines)
    for ln in lines:
        entry = _line_entry(ln, cur)
        active = ln["period_start"] <= t < max(ln["mrr_end"], ln["period_start"] + 1)
        billed = ln["invoiced_at"] is not None and _month(ln["invoiced_at"]) == month
        if _counted_at(ln, t):
            counted.append(entry)
        elif active or billed:
            entry["left_out"], entry["why"] = why_left_out(ln, t, carried)
            left_out.append(entry)
    return counted, left_out


def explain_payload(engine: Engine, account: Account, customer_id: str, as_of: datetime) -> dict[str, Any]:
    """Every line behind the customer's MRR at as_of, and the lines left out (with class and reason)."""
    ensure_ledger(engine, account)
    cur = account.reporting_currency.lower()
    t = moment_ts(as_of)
    with engine.connect() as conn:
        lines = lines_for(conn, account.id or 0, customer_id)
        warnings = missing_rate_warnings(conn, account.id or 0, at=as_of, customer_id=customer_id)
    counted, left_out = _split_lines(lines, as_of, cur)
    total = max(0, sum(ln["monthly_reporting"] or 0 for ln in lines if _counted_at(ln, t)))
    payload: dict[str, Any] = {
        "customer_id": customer_id,
        "name": customer_names(engine, account).get(customer_id),
        "account": account.name,
        "as_of": as_of.isoformat(),
        "currency": cur,
        "mrr": json_amount(total, cur),
        "lines": counted,
        "left_out": left_out,
    }
    return _with_warnings(payload, warnings)


def _iso(ts: int) -> str:
    return utc_day(ts).isoformat()


def _month(ts: int) -> tuple[int, int]:
    d = utc_datetime(ts)
    return d.year, d.month
