"""The shared layout of terminal output (worker/cli/tables.py) and its words (worker/cli/wording.py)."""

from __future__ import annotations

import io

from rich.console import Console

from worker.cli.tables import Amount, Column, figure, ident, plural, show_items, show_lines, show_table
from worker.cli.wording import KINDS, warning_lines

COLUMNS = (ident("customer"), Column("name"), figure("start"), figure("end"), figure("NRR"))
ROWS = [
    ("cus_0000000001", "Kestrel Robotics Ltd", Amount(1234567.89, "usd"), Amount(-52.15, "usd"), "101.9%"),
    ("cus_0000000002", "Lumen", Amount(5000, "jpy"), Amount(0, "eur"), "-"),
]


def render(width: int, columns: tuple[Column, ...] = COLUMNS, split: bool = True) -> str:
    out = io.StringIO()
    show_table(Console(file=out, width=width), "Title", columns, ROWS, split=split)
    return out.getvalue()


def test_a_wide_terminal_gets_one_table_to_the_cent() -> None:
    text = render(120)
    assert "$1,234,567.89" in text and "-$52.15" in text and "¥5,000" in text and "€0.00" in text
    assert text.count("cus_0000000001") == 1 and "rounded" not in text and "whole units" not in text


def test_narrower_terminals_round_split_then_stack_but_never_cut() -> None:
    for width in range(40, 121, 4):
        text = render(width)
        assert all(len(line) <= width for line in text.splitlines()), width
        assert "…" not in text
        assert "cus_0000000001" in text and "cus_0000000002" in text
        assert ("$1,234,567.89" in text) or ("$1,234,568" in text and "whole units" in text), width
    stacked = render(40, split=False)
    assert "  start  $1,234,567.89" in stacked  # one block per row, figures to the cent


def test_empty_tables_say_none() -> None:
    out = io.StringIO()
    show_table(Console(file=out, width=80), "Left out (0 lines)", COLUMNS, [])
    assert out.getvalue().splitlines() == ["Left out (0 lines)", "  (none)"]


def test_lines_and_items_wrap_between_words_and_items() -> None:
    out = io.StringIO()
    console = Console(file=out, width=40)
    show_lines(console, ["a long sentence " * 6])
    show_items(console, [f"customers {n:,}" for n in (1000, 2000, 3000, 4000)])
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 40 for line in lines)
    assert lines[1].startswith("  ")  # continuation lines are indented
    assert "customers 1,000, customers 2,000," in out.getvalue()
    assert all(line.strip().endswith(",") or line.strip().endswith("4,000") for line in lines[-2:])


def test_plural() -> None:
    assert (plural(0, "rate"), plural(1, "rate"), plural(2, "rate")) == ("0 rates", "1 rate", "2 rates")


def test_warnings_grouped_by_kind_with_a_count_and_their_meaning() -> None:
    warnings = [
        {"code": "small_cohort", "message": "2025-01 (T12M): cohort of 3 customers"},
        {"code": "small_cohort", "message": "2025-02 (T12M): cohort of 5 customers"},
        {"code": "small_cohort", "message": "2025-02 (T12M): cohort of 5 customers"},  # repeated: once
        {"code": "expansion_concentration", "message": "T12M: one customer makes up 61% of expansion"},
    ]
    short = warning_lines(warnings, verbose=False)
    assert short == [
        f"! 2 × small cohort: {KINDS['small_cohort']}",
        "! T12M: one customer makes up 61% of expansion",
        "  (`--verbose` lists each one)",
    ]
    full = warning_lines(warnings, verbose=True)
    assert (
        "    2025-01 (T12M): cohort of 3 customers" in full
        and "    2025-02 (T12M): cohort of 5 customers" in full
    )
    assert warning_lines([], verbose=False) == []


def test_a_long_table_is_laid_out_from_the_rows_that_decide_its_widths() -> None:
    rows = [(f"cus_{n:07d}", "x", Amount(n / 100, "usd"), Amount(0, "usd"), "1%") for n in range(5000)]
    rows[1234] = (
        "cus_long",
        "a much longer customer name here",
        Amount(99999999.99, "usd"),
        Amount(0, "usd"),
        "-",
    )
    out = io.StringIO()
    show_table(Console(file=out, width=80), None, COLUMNS, rows)
    text = out.getvalue()
    assert "$99,999,999.99" in text and "a much longer customer name here" in text
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
    assert text.count("cus_") == 5000
