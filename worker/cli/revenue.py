"""Revenue commands: `mrr`, `movements`, `explain`, `rebuild` (docs/interface.md; `rates`: rates_cmd.py).

They read the ledger (worker/rebuild.py fills it from stored Stripe objects, never calling Stripe). An account
whose ledger is still empty is rebuilt first, so the figures right after a first sync are there. Where no NAME
is given and several accounts are connected, JSON output is `{"accounts": [payload, ...]}`; with one account
it is the payload.

Each command parses its arguments, asks worker/revenue.py for the payloads and prints them: as JSON, or as
tables built from that same JSON so the two never disagree.
"""

from __future__ import annotations

from typing import Any

import typer

from metrics.movements import BUCKETS
from worker.cli.common import (
    add_history_warning,
    load_accounts,
    open_db,
    parse_as_of,
    print_payloads,
    refuse,
)
from worker.cli.tables import Amount, Column, console, figure, ident, plural, show_lines, show_table
from worker.cli.wording import show_warnings

NAME_ARG = typer.Argument(None, help="Account name (default: every account).")
JSON_OPT = typer.Option(False, "--json", help="Print JSON.")
VERBOSE_OPT = typer.Option(False, "--verbose", "-v", help="List every warning, not one per kind.")


def _print_mrr(account_name: str, p: dict[str, Any], verbose: bool) -> None:
    out, cur = console(), p["currency"]
    title = f"{account_name}: MRR {Amount(p['mrr'], cur).text(False)} at {p['as_of'][:10]}"
    columns = (ident("customer"), Column("name"), Column("plan"), figure("MRR"))
    rows = [(c["id"], c["name"] or "", c["plan"] or "", Amount(c["mrr"], cur)) for c in p["customers"]]
    show_table(out, title, columns, rows, split=False)
    show_warnings(out, p.get("warnings", []), verbose)


def mrr_cmd(
    name: str | None = NAME_ARG,
    as_of: str | None = typer.Option(
        None, "--as-of", metavar="DATE", help="YYYY-MM-DD, 00:00 UTC (default: now)."
    ),
    json_out: bool = JSON_OPT,
    verbose: bool = VERBOSE_OPT,
) -> None:
    """MRR per customer at an instant (docs/mrr.md)."""
    from worker.revenue import mrr_payload  # heavy: loaded only when used

    when = parse_as_of(as_of)  # bad input is refused before the database is touched
    engine = open_db()
    accounts = load_accounts(engine, name)
    payloads = [mrr_payload(engine, a, when) for a in accounts]
    for a, p in zip(accounts, payloads, strict=True):
        add_history_warning(engine, a, when, p)
    if json_out:
        print_payloads(payloads)
        return
    for a, p in zip(accounts, payloads, strict=True):
        _print_mrr(a.name, p, verbose)


def _print_movements(account_name: str, p: dict[str, Any], verbose: bool) -> None:
    out, cur = console(), p["currency"]
    columns = (ident("month"), *(figure(k) for k in (*BUCKETS, "mrr")))
    rows = [(m["month"], *(Amount(m[k], cur) for k in (*BUCKETS, "mrr"))) for m in p["months"]]
    show_table(out, f"{account_name}: MRR movements ({cur.upper()} a month)", columns, rows)
    show_warnings(out, p.get("warnings", []), verbose)


def movements_cmd(
    name: str | None = NAME_ARG, json_out: bool = JSON_OPT, verbose: bool = VERBOSE_OPT
) -> None:
    """MRR movements month by month: new, expansion, contraction, churn, reactivation."""
    from worker.revenue import movements_payload  # heavy: loaded only when used

    engine = open_db()
    accounts = load_accounts(engine, name)
    payloads = [movements_payload(engine, a) for a in accounts]
    if json_out:
        print_payloads(payloads)
        return
    for a, p in zip(accounts, payloads, strict=True):
        _print_movements(a.name, p, verbose)


def _print_explain(p: dict[str, Any], verbose: bool) -> None:
    out, cur = console(), p["currency"]
    show_lines(
        out,
        [
            f"{p['customer_id']} ({p['name'] or 'no name'}), account {p['account']}: MRR "
            f"{Amount(p['mrr'], cur).text(False)} at {p['as_of'][:10]}"
        ],
    )
    period = lambda r: f"{r['period_start']} .. {r['period_end']}"  # noqa: E731
    counted = [
        (r["line_id"], r["invoice_id"], r["reason"], period(r), Amount(r["monthly_amount"], r["currency"]))
        for r in p["lines"]
    ]
    columns = (ident("line"), ident("invoice"), Column("why it counts"), ident("period"), figure("monthly"))
    out.print()
    show_table(out, f"Counted in MRR ({plural(len(counted), 'line')})", columns, counted, split=False)
    left = [
        (
            r["line_id"],
            r["invoice_id"],
            r.get("why", r["left_out"]),
            period(r),
            Amount(r["net_amount"], r["currency"]),
        )
        for r in p["left_out"]
    ]
    columns = (
        ident("line"),
        ident("invoice"),
        Column("why it is left out"),
        ident("period"),
        figure("amount"),
    )
    out.print()
    show_table(out, f"Left out ({plural(len(left), 'line')})", columns, left, split=False)
    show_warnings(out, p.get("warnings", []), verbose)


def explain_cmd(
    customer_id: str = typer.Argument(..., help="Stripe customer id (cus_...)."),
    as_of: str | None = typer.Option(None, "--as-of", metavar="DATE", help="YYYY-MM-DD, 00:00 UTC."),
    json_out: bool = JSON_OPT,
    verbose: bool = VERBOSE_OPT,
) -> None:
    """Every line behind one customer's MRR, and the lines left out, with the reason for each."""
    from worker.revenue import accounts_with_customer, explain_payload  # heavy: loaded only when used

    when = parse_as_of(as_of)  # bad input is refused before the database is touched
    engine = open_db()
    accounts = accounts_with_customer(engine, load_accounts(engine, None), customer_id)
    if not accounts:
        refuse(f"no customer {customer_id!r} in any connected account: check the id or run `retention sync`")
    payloads = [explain_payload(engine, a, customer_id, when) for a in accounts]
    if json_out:
        print_payloads(payloads)
        return
    for p in payloads:
        _print_explain(p, verbose)


def rebuild_cmd(name: str | None = NAME_ARG) -> None:
    """Recompute classification and snapshots from stored objects (no Stripe calls)."""
    from worker.rebuild import describe, rebuild_account  # heavy: loaded only when used

    out, engine = console(), open_db()
    for a in load_accounts(engine, name):
        result = rebuild_account(engine, a)
        out.print(describe(result))
        for problem in result.problems:
            out.print(problem, style="yellow")


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app (in the order `--help` has always listed them)."""
    app.command("mrr")(mrr_cmd)
    app.command("movements")(movements_cmd)
    app.command("explain")(explain_cmd)
    app.command("rebuild")(rebuild_cmd)
