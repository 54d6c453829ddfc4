"""`retention rates import | update | list` (docs/rates.md, docs/interface.md).

Each command parses its arguments, asks worker/rates.py to do the work and prints one line (or a table, or
JSON). A bad file, an older history or an unreachable URL is one line on stderr and exit 2: nothing replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from worker.cli.common import open_db, print_json, refuse
from worker.cli.tables import console, ident, plural, show_table


def rates_import_cmd(
    file: Path = typer.Argument(..., help="CSV with columns date,currency,rate."),
    reporting_currency: str | None = typer.Option(
        None,
        "--reporting-currency",
        help="The reporting currency the rates convert to (default: the one every connected account uses).",
    ),
) -> None:
    """Import exchange rates (1 unit of currency = rate units of the reporting currency, from that date)."""
    from worker.accounts import ConnectError, check_currency, list_accounts
    from worker.rates import RatesError, import_rates, reporting_currency_for_import
    from worker.rebuild import describe, rebuild_account  # heavy: loaded only when used

    if reporting_currency is not None:  # bad input is refused before the database is touched
        try:
            check_currency(reporting_currency)
        except ConnectError as exc:
            refuse(str(exc))
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        refuse(f"cannot read {file}: {type(exc).__name__}; give a UTF-8 CSV file with date,currency,rate")
    engine = open_db()
    accounts = list_accounts(engine)
    try:
        reporting = reporting_currency_for_import(
            reporting_currency, [a.reporting_currency for a in accounts]
        )
    except RatesError as exc:
        refuse(str(exc))
    try:
        count = import_rates(engine, text, reporting)
    except RatesError as exc:
        refuse(f"{file}: {exc}; nothing was imported")
    out = console()
    out.print(f"imported {plural(count, 'rate')} to {reporting.upper()}")
    for a in accounts:  # every figure of an account reporting in this currency may have changed
        if a.reporting_currency.lower() == reporting:
            out.print(describe(rebuild_account(engine, a)))


def rates_update_cmd() -> None:
    """Fetch the newest ECB reference rates (RETENTION_RATES_URL); stored if they parse and are newer."""
    from worker.rates import FetchError, RatesError, update_rates
    from worker.settings import get_settings

    url = get_settings().retention_rates_url
    if not url:
        refuse("RETENTION_RATES_URL is empty (downloads are off): set it to the ECB history URL or a mirror")
    engine = open_db()
    try:
        result = update_rates(engine, url)
    except (FetchError, RatesError) as exc:
        refuse(f"rates update: {exc}; the rates in force are kept")
    out = console()
    out.print(result.describe())
    if result.updated:
        out.print("the next rebuild (or any figure asked for) restates what the changed rates touch")


def rates_list_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Each currency's source (ECB or imported, for which reporting currency) and first/last date."""
    from worker.rates import rates_listing

    listing = rates_listing(open_db())
    if json_out:
        print_json(listing)
        return
    _print_listing(listing)


def _print_listing(listing: dict[str, Any]) -> None:
    out = console()
    ecb = listing["ecb"]
    origin = "downloaded" if ecb["origin"] == "downloaded" else "shipped with the installation"
    out.print(f"ECB reference rates {ecb['first']} to {ecb['last']} ({origin})")
    if ecb.get("last_error"):
        out.print(f"last update failed: {ecb['last_error']}", style="yellow")
    rows = [
        (
            c["currency"],
            "ECB" if c["source"] == "ecb" else f"imported ({c['reporting_currency']})",
            c["first"],
            c["last"],
        )
        for c in listing["currencies"]
    ]
    columns = (ident("currency"), ident("source"), ident("first"), ident("last"))
    show_table(out, None, columns, rows)


def register(app: typer.Typer) -> None:
    """Adds `retention rates ...` to the app."""
    rates_app = typer.Typer(help="Exchange rates to the reporting currency.", no_args_is_help=True)
    app.add_typer(rates_app, name="rates")
    rates_app.command("import")(rates_import_cmd)
    rates_app.command("update")(rates_update_cmd)
    rates_app.command("list")(rates_list_cmd)
