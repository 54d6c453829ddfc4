"""What `retention sync` shows while it runs (worker/cli/sync_progress.py)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from worker.cli.sync_progress import SyncProgress, time_left


def test_time_left_from_the_share_done() -> None:
    assert time_left(10.0, 0.5) == "about 10 s left"
    assert time_left(60.0, 0.25) == "about 3 min left"
    assert time_left(3600.0, 0.4) == "about 1.5 h left"
    assert time_left(10.0, None) == "" and time_left(0.5, 0.5) == ""  # nothing to go on yet
    assert time_left(10.0, 0.01) == ""  # too early to say
    assert time_left(10.0, 1.0) == ""


def plain(lines: list[tuple[str, int, float | None]]) -> str:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    with SyncProgress("acme", console) as show:
        for name, stored, share in lines:
            show(name, stored, share)
    return out.getvalue()


def test_off_a_terminal_a_line_per_list_read_and_per_tenth_of_invoices() -> None:
    text = plain(
        [
            ("customers", 100, None),
            ("customers", 200, 1.0),
            ("invoices", 100, 0.05),  # the first share is said, then one line per tenth
            ("invoices", 200, 0.08),
            ("invoices", 300, 0.2),
            ("invoices", 400, 0.25),
            ("invoices", 900, 1.0),
        ]
    )
    assert text.splitlines() == [
        "acme: customers 200 stored (done)",
        "acme: invoices 100 stored (5%)",
        "acme: invoices 300 stored (20%)",
        "acme: invoices 900 stored (done)",
    ]


def test_on_a_terminal_a_bar_per_list_with_the_invoice_share(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.0, 0.0, 10.0, 20.0])
    monkeypatch.setattr("worker.cli.sync_progress.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    with SyncProgress("acme", console) as show:
        show("customers", 300, None)
        show("customers", 300, 1.0)
        show("invoices", 100, 0.1)
        show("invoices", 500, 0.5)  # 10 s for half: about 10 s left
        show("invoices", 1000, 1.0)
    text = out.getvalue()
    assert "acme: syncing from Stripe" in text
    assert "customers" in text and "1,000" in text and "100%" in text
    assert "50%" in text and "about 10 s left" in text
