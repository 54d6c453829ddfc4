"""Revenue commands: `mrr`, `movements`, `explain`, `rebuild` (docs/interface.md; `rates`: rates_cmd.py).

They read the ledger (worker/rebuild.py fills it from stored Stripe objects, never calling Stripe). An account
whose ledger is still empty is rebuilt first, so the figures right after a first sync are there. Where no NAME
is given and several accounts are connected, JSON output is `{"accounts": [payload, ...]}`; with one account
it is the payload.

Each command parses its arguments, asks worker/revenue.py for the payloads and prints them: as JSON, or as
tables built from that same JSON so the two never disagree.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from metrics.money import exponent, fmt
from metrics.movements import BUCKETS
from worker.cli.common import (
    load_accounts,
    open_db,
    parse_as_of,
    print_payloads,
    refuse,
)
from worker.rebuild import describe, rebuild_account
from worker.revenue import accounts_with_customer, explain_payload, movements_payload, mrr_payload

console = Console(soft_wrap=True)

NAME_ARG = typer.Argument(None, help="Account name (default: every account).")
JSON_OPT = typer.Option(False, "--json", help="Print JSON.")


def _minor(major: float, currency: str) -> int:
    """Back from a JSON figure to minor units for terminal tables (exact: at most 2 decimals)."""
    return int((Decimal(str(major)) * (10 ** exponent(currency))).to_integral_value())


def _money(major: float, currency: str) -> str:
    return fmt(_minor(major, currency), currency)


def _warn(warnings: list[dict[str, str]]) -> None:
    for w in warnings:
        console.print(f"[yellow]warning ({w['code']}):[/yellow] {w['message']}")


def _print_mrr(account_name: str, p: dict[str, Any]) -> None:
    cur = p["currency"]
    table = Table(title=f"{account_name}: MRR {_money(p['mrr'], cur)} at {p['as_of'][:10]}")
    for col in ("customer", "name", "plan", "MRR"):
        table.add_column(col, justify="right" if col == "MRR" else "left")
    for c in p["customers"]:
        table.add_row(c["id"], c["name"] or "", c["plan"] or "", _money(c["mrr"], cur))
    console.print(table)
    _warn(p.get("warnings", []))


def mrr_cmd(
    name: str | None = NAME_ARG,
    as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD, 00:00 UTC (default: now)."),
    json_out: bool = JSON_OPT,
) -> None:
    """MRR per customer at an instant (docs/mrr.md)."""
    engine = open_db()
    when = parse_as_of(as_of)
    accounts = load_accounts(engine, name)
    payloads = [mrr_payload(engine, a, when) for a in accounts]
    if json_out:
        print_payloads(payloads)
        return
    for a, p in zip(accounts, payloads, strict=True):
        _print_mrr(a.name, p)


def _print_movements(account_name: str, p: dict[str, Any]) -> None:
    cur = p["currency"]
    table = Table(title=f"{account_name}: MRR movements ({cur.upper()})")
    for col in ("month", *BUCKETS, "mrr"):
        table.add_column(col, justify="left" if col == "month" else "right")
    for m in p["months"]:
        table.add_row(m["month"], *(_money(m[k], cur) for k in (*BUCKETS, "mrr")))
    console.print(table)
    _warn(p.get("warnings", []))


def movements_cmd(name: str | None = NAME_ARG, json_out: bool = JSON_OPT) -> None:
    """MRR movements month by month: new, expansion, contraction, churn, reactivation."""
    engine = open_db()
    accounts = load_accounts(engine, name)
    payloads = [movements_payload(engine, a) for a in accounts]
    if json_out:
        print_payloads(payloads)
        return
    for a, p in zip(accounts, payloads, strict=True):
        _print_movements(a.name, p)


def _print_explain(p: dict[str, Any]) -> None:
    cur = p["currency"]
    console.print(
        f"{p['customer_id']} ({p['name'] or 'no name'}), account {p['account']}: MRR "
        f"{_money(p['mrr'], cur)} at {p['as_of'][:10]}"
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
                _money(r["monthly_amount"], r["currency"]),
                r.get("left_out", ""),
            )
        console.print(table)
    _warn(p.get("warnings", []))


def explain_cmd(
    customer_id: str = typer.Argument(..., help="Stripe customer id (cus_...)."),
    as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD, 00:00 UTC."),
    json_out: bool = JSON_OPT,
) -> None:
    """Every line behind one customer's MRR, and the lines left out, with the reason for each."""
    engine = open_db()
    when = parse_as_of(as_of)
    accounts = accounts_with_customer(engine, load_accounts(engine, None), customer_id)
    if not accounts:
        refuse(f"no customer {customer_id!r} in any connected account: check the id or run `retention sync`")
    payloads = [explain_payload(engine, a, customer_id, when) for a in accounts]
    if json_out:
        print_payloads(payloads)
        return
    for p in payloads:
        _print_explain(p)


def rebuild_cmd(name: str | None = NAME_ARG) -> None:
    """Recompute classification and snapshots from stored objects (no Stripe calls)."""
    engine = open_db()
    for a in load_accounts(engine, name):
        result = rebuild_account(engine, a)
        console.print(describe(result))
        for problem in result.problems:
            console.print(f"[yellow]{problem}[/yellow]")


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app (in the order `--help` has always listed them)."""
    app.command("mrr")(mrr_cmd)
    app.command("movements")(movements_cmd)
    app.command("explain")(explain_cmd)
    app.command("rebuild")(rebuild_cmd)
