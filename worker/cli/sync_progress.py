"""What `retention sync` shows while it runs: a bar per list on a terminal, plain lines otherwise.

The sync reports (list, objects stored so far, share done) after every page it stores. Only the invoice list
has an estimate of its share (from the created ranges it is read in: integrations/stripe/pages.range_share),
so it alone gets a percentage and the time left; the other lists show their count and are full once read.
Off a terminal (a log, a pipe, cron) a plain line is written when a list is read and at every tenth of the
invoices, so a log shows the run moving without a line per page.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

STEP = 0.1  # plain lines: one per tenth of the invoices


def time_left(elapsed: float, share: float | None) -> str:
    """`about 2 min left` from the time spent and the share done; "" while there is nothing to go on."""
    if share is None or share <= 0.02 or share >= 1 or elapsed < 1:
        return ""
    seconds = elapsed * (1 - share) / share
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:3.0f}%"


class SyncProgress:
    """The `progress` callback of one account's sync, as a context manager around the run."""

    def __init__(self, account: str, console: Console) -> None:
        self.account = account
        self.console = console
        self.live = console.is_terminal
        self.started: dict[str, float] = {}
        self.reported: dict[str, float] = {}
        self.tasks: dict[str, TaskID] = {}
        self.bars = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[count]:>9}"),
            TextColumn("{task.fields[percent]:>4}"),
            TextColumn("{task.fields[left]}"),
            console=console,
            transient=False,
            expand=True,
        )

    def __enter__(self) -> SyncProgress:
        if self.live:
            self.console.print(f"{self.account}: syncing from Stripe")
            self.bars.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.live:
            self.bars.stop()

    def __call__(self, list_name: str, stored: int, share: float | None = None) -> None:
        now = time.monotonic()
        first = self.started.setdefault(list_name, now)
        left = time_left(now - first, share) if list_name == "invoices" else ""
        if self.live:
            self._update_bar(list_name, stored, share, left)
        else:
            self._plain_line(list_name, stored, share, left)

    def _update_bar(self, list_name: str, stored: int, share: float | None, left: str) -> None:
        fields: dict[str, Any] = {"count": f"{stored:,}", "percent": _percent(share), "left": left}
        task = self.tasks.get(list_name)
        if task is None:
            label = list_name.replace("_", " ")
            task = self.tasks[list_name] = self.bars.add_task(label, total=None, **fields)
        # drawn at once (a page is stored every few hundred milliseconds), not at the next timed refresh
        if share is None:
            self.bars.update(task, refresh=True, **fields)
        else:
            self.bars.update(task, total=1.0, completed=share, refresh=True, **fields)

    def _plain_line(self, list_name: str, stored: int, share: float | None, left: str) -> None:
        if share is None:
            return
        last = self.reported.get(list_name, -1.0)
        if share < 1 and share - last < STEP:
            return
        self.reported[list_name] = share
        label = list_name.replace("_", " ")
        detail = ", ".join(x for x in (f"{share * 100:.0f}%" if share < 1 else "done", left) if x)
        self.console.print(f"{self.account}: {label} {stored:,} stored ({detail})", highlight=False)
