"""Revenue commands: `mrr`, `movements`, `explain`, `rates import`, `rebuild` (shared/CLI.md).

They read the ledger (worker/rebuild.py fills it from stored Stripe objects, never calling Stripe). An account
whose ledger is still empty is rebuilt first, so the figures right after a first sync are there. Where no NAME
is given and several accounts are connected, JSON output is `{"accounts": [payload, ...]}`; with one account
it is the payload.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from integrations.stripe.models import StripeCustomer
from metrics.classify import RECURRING
from metrics.ledger import ClassifiedLine, FxRate
from metrics.money import exponent, fmt, json_amount
from metrics.movements import BUCKETS, movements
from metrics.rates import RatesError, parse_rates_csv
from worker.cli.common import (
    load_accounts,
    open_db,
    parse_as_of,
    print_payloads,
    refuse,
)
from worker.models import Account
from worker.mrr_queries import (
    ensure_snapshots,
    lines_for,
    missing_rate_warnings,
    month_starts,
    mrr_at,
    snapshot_series,
)
from worker.rebuild import describe, ensure_ledger, rebuild_account

L = ClassifiedLine.__table__  # type: ignore[attr-defined]
console = Console(soft_wrap=True)


def _names(engine: Engine, account: Account) -> dict[str, str | None]:
    c = StripeCustomer.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return {
            r.id: r.name for r in conn.execute(select(c.c.id, c.c.name).where(c.c.account_id == account.id))
        }


def _warn(warnings: list[dict[str, str]]) -> None:
    for w in warnings:
        console.print(f"[yellow]warning ({w['code']}):[/yellow] {w['message']}")


def mrr_payload(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    """The `retention mrr --json` payload of one account."""
    ensure_ledger(engine, account)
    cur = account.reporting_currency.lower()
    names = _names(engine, account)
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
    if warnings:
        payload["warnings"] = warnings
    return payload


def movements_payload(engine: Engine, account: Account, today: date | None = None) -> dict[str, Any]:
    """The `retention movements --json` payload: one row per month start with a snapshot history."""
    ensure_ledger(engine, account)
    today = today or datetime.now(UTC).date()
    cur = account.reporting_currency.lower()
    with engine.connect() as conn:
        first = conn.execute(
            select(func.min(L.c.period_start)).where(
                L.c.account_id == account.id, L.c.klass == RECURRING, L.c.counted.is_(True)
            )
        ).scalar()
    months = month_starts(datetime.fromtimestamp(first, UTC).date(), today) if first is not None else []
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
    payload: dict[str, Any] = {"currency": cur, "months": rows}
    if warnings:
        payload["warnings"] = warnings
    return payload


def explain_payload(engine: Engine, account: Account, customer_id: str, as_of: datetime) -> dict[str, Any]:
    """Every line behind the customer's MRR at as_of, and the lines left out (with class and reason)."""
    ensure_ledger(engine, account)
    cur = account.reporting_currency.lower()
    t = int(as_of.timestamp())
    month = (as_of.year, as_of.month)
    with engine.connect() as conn:
        lines = lines_for(conn, account.id or 0, customer_id)
        warnings = missing_rate_warnings(conn, account.id or 0, at=as_of, customer_id=customer_id)
    counted, left_out = [], []
    for ln in lines:
        active = ln["period_start"] <= t < max(ln["mrr_end"], ln["period_start"] + 1)
        billed = ln["invoiced_at"] is not None and _month(ln["invoiced_at"]) == month
        entry = {
            "line_id": ln["line_id"],
            "invoice_id": ln["invoice_id"],
            "class": ln["klass"],
            "reason": ln["reason"],
            "period_start": _iso(ln["period_start"]),
            "period_end": _iso(ln["period_end"]),
            "counts_until": _iso(ln["mrr_end"]),
            "currency": ln["currency"],
            "net_amount": json_amount(ln["net_amount"], ln["currency"]),
            "monthly_amount": json_amount(ln["monthly_amount"], ln["currency"]),
            "monthly_reporting": None
            if ln["monthly_reporting"] is None
            else json_amount(ln["monthly_reporting"], cur),
        }
        if ln["klass"] == RECURRING and ln["counted"] and ln["period_start"] <= t < ln["mrr_end"]:
            counted.append(entry)
        elif active or billed:
            entry["left_out"] = ln["excluded_reason"] or ln["klass"]
            left_out.append(entry)
    total = max(
        0,
        sum(
            ln["monthly_reporting"] or 0
            for ln in lines
            if ln["klass"] == RECURRING and ln["counted"] and ln["period_start"] <= t < ln["mrr_end"]
        ),
    )
    payload: dict[str, Any] = {
        "customer_id": customer_id,
        "name": _names(engine, account).get(customer_id),
        "account": account.name,
        "as_of": as_of.isoformat(),
        "currency": cur,
        "mrr": json_amount(total, cur),
        "lines": counted,
        "left_out": left_out,
    }
    if warnings:
        payload["warnings"] = warnings
    return payload


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def _month(ts: int) -> tuple[int, int]:
    d = datetime.fromtimestamp(ts, UTC)
    return d.year, d.month


def import_rates(engine: Engine, text: str) -> int:
    """Upsert every rate of a CSV into the global FxRate table (RatesError on a bad file, nothing stored)."""
    rates = parse_rates_csv(text)
    table = FxRate.__table__  # type: ignore[attr-defined]
    rows = [{"currency": r.currency, "day": r.day, "rate": r.rate} for r in rates]
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    stmt = stmt.on_conflict_do_update(index_elements=["currency", "day"], set_={"rate": stmt.excluded.rate})
    with engine.begin() as conn:
        conn.execute(stmt, rows)
    return len(rows)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app."""
    rates_app = typer.Typer(help="Exchange rates to the reporting currency.", no_args_is_help=True)
    app.add_typer(rates_app, name="rates")

    @app.command("mrr")
    def mrr_cmd(
        name: str | None = typer.Argument(None, help="Account name (default: every account)."),
        as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD, 00:00 UTC (default: now)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """MRR per customer at an instant (METRICS.md section 3)."""
        engine = open_db()
        when = parse_as_of(as_of)
        accounts = load_accounts(engine, name)
        payloads = [mrr_payload(engine, a, when) for a in accounts]
        if json_out:
            print_payloads(payloads)
            return
        for a, p in zip(accounts, payloads, strict=True):
            table = Table(
                title=f"{a.name}: MRR {fmt(_minor(p['mrr'], p['currency']), p['currency'])} "
                f"at {p['as_of'][:10]}"
            )
            for col in ("customer", "name", "plan", "MRR"):
                table.add_column(col, justify="right" if col == "MRR" else "left")
            for c in p["customers"]:
                table.add_row(
                    c["id"],
                    c["name"] or "",
                    c["plan"] or "",
                    fmt(_minor(c["mrr"], p["currency"]), p["currency"]),
                )
            console.print(table)
            _warn(p.get("warnings", []))

    @app.command("movements")
    def movements_cmd(
        name: str | None = typer.Argument(None, help="Account name (default: every account)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """MRR movements month by month: new, expansion, contraction, churn, reactivation."""
        engine = open_db()
        accounts = load_accounts(engine, name)
        payloads = [movements_payload(engine, a) for a in accounts]
        if json_out:
            print_payloads(payloads)
            return
        for a, p in zip(accounts, payloads, strict=True):
            cur = p["currency"]
            table = Table(title=f"{a.name}: MRR movements ({cur.upper()})")
            for col in ("month", *BUCKETS, "mrr"):
                table.add_column(col, justify="left" if col == "month" else "right")
            for m in p["months"]:
                table.add_row(m["month"], *(fmt(_minor(m[k], cur), cur) for k in (*BUCKETS, "mrr")))
            console.print(table)
            _warn(p.get("warnings", []))

    @app.command("explain")
    def explain_cmd(
        customer_id: str = typer.Argument(..., help="Stripe customer id (cus_...)."),
        as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD, 00:00 UTC."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Every line behind one customer's MRR, and the lines left out, with the reason for each."""
        engine = open_db()
        when = parse_as_of(as_of)
        accounts = [a for a in load_accounts(engine, None) if _has_customer(engine, a, customer_id)]
        if not accounts:
            refuse(
                f"no customer {customer_id!r} in any connected account: check the id or run `retention sync`"
            )
        payloads = [explain_payload(engine, a, customer_id, when) for a in accounts]
        if json_out:
            print_payloads(payloads)
            return
        for p in payloads:
            cur = p["currency"]
            console.print(
                f"{p['customer_id']} ({p['name'] or 'no name'}), account {p['account']}: MRR "
                f"{fmt(_minor(p['mrr'], cur), cur)} at {p['as_of'][:10]}"
            )
            for title, rows in (("counted in MRR", p["lines"]), ("left out", p["left_out"])):
                table = Table(title=title)
                for col in ("line", "invoice", "class", "reason", "period", "monthly", "left out"):
                    table.add_column(col)
                for r in rows:
                    table.add_row(
                        r["line_id"],
                        r["invoice_id"],
                        r["class"],
                        r["reason"],
                        f"{r['period_start']} .. {r['period_end']}",
                        fmt(_minor(r["monthly_amount"], r["currency"]), r["currency"]),
                        r.get("left_out", ""),
                    )
                console.print(table)
            _warn(p.get("warnings", []))

    @app.command("rebuild")
    def rebuild_cmd(
        name: str | None = typer.Argument(None, help="Account name (default: every account)."),
    ) -> None:
        """Recompute classification and snapshots from stored objects (no Stripe calls)."""
        engine = open_db()
        for a in load_accounts(engine, name):
            result = rebuild_account(engine, a)
            console.print(describe(result))
            for problem in result.problems:
                console.print(f"[yellow]{problem}[/yellow]")

    @rates_app.command("import")
    def rates_import_cmd(
        file: Path = typer.Argument(..., help="CSV with columns date,currency,rate."),
    ) -> None:
        """Import exchange rates (1 unit of currency = rate in reporting currency, from that date)."""
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            refuse(f"cannot read {file}: {type(exc).__name__}; give a UTF-8 CSV file with date,currency,rate")
        engine = open_db()
        try:
            count = import_rates(engine, text)
        except RatesError as exc:
            refuse(f"{file}: {exc}; nothing was imported")
        console.print(f"imported {count} rates")
        with Session(engine, expire_on_commit=False) as session:
            accounts = list(session.scalars(select(Account).order_by(Account.name)))  # type: ignore[arg-type]
        for a in accounts:
            console.print(describe(rebuild_account(engine, a)))


def _minor(major: float, currency: str) -> int:
    """Back from a JSON figure to minor units for terminal tables (exact: at most 2 decimals)."""
    return int((Decimal(str(major)) * (10 ** exponent(currency))).to_integral_value())


def _has_customer(engine: Engine, account: Account, customer_id: str) -> bool:
    c = StripeCustomer.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        in_ledger = conn.execute(
            select(func.count())
            .select_from(L)
            .where(L.c.account_id == account.id, L.c.customer_id == customer_id)
        ).scalar()
        stored = conn.execute(
            select(func.count()).select_from(c).where(c.c.account_id == account.id, c.c.id == customer_id)
        ).scalar()
    return bool(in_ledger or stored)
