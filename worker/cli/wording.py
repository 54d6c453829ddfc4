"""The words around the figures: what each kind of warning means and what the less common columns mean.

Warnings are grouped by kind on a terminal (one line per kind with a count and what it means for a founder);
`--verbose` lists every one. The JSON always carries every warning as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from rich.console import Console

from metrics.warnings import MEANINGS as KINDS
from worker.cli.tables import show_lines

# The metrics table's column headings in words.
LEGEND: Sequence[tuple[str, str]] = (
    (
        "start/end",
        "MRR of the customers paying at the window's start, then the same customers' MRR at its end",
    ),
    ("expand/contract/churn", "how those customers' MRR grew, shrank, or was lost when they left"),
    ("NRR", "net revenue retention: end / start (new customers never count)"),
    ("GRR", "gross revenue retention: like NRR but without expansion, so at most 100%"),
    ("logos", "share of those customers still paying at the end; kept = how many of how many"),
    (
        "NRR+fees",
        "NRR if one-time charges (setup, services) were counted as revenue; shown only to compare, "
        "because one-off fees do not recur",
    ),
)


def group(warnings: Iterable[Mapping[str, str]]) -> dict[str, list[str]]:
    """Messages by kind, kinds in the order they first appear, repeated messages once."""
    kinds: dict[str, list[str]] = {}
    for w in warnings:
        messages = kinds.setdefault(w["code"], [])
        if w["message"] not in messages:
            messages.append(w["message"])
    return kinds


def warning_lines(warnings: Iterable[Mapping[str, str]], verbose: bool) -> list[str]:
    """One line per kind (the message itself when there is one); with `verbose`, each message under it."""
    lines = []
    for code, messages in group(warnings).items():
        meaning = KINDS.get(code, "")
        if len(messages) == 1:
            lines.append(f"! {messages[0]}" + (f" ({meaning})" if meaning and verbose else ""))
            continue
        head = f"! {len(messages)} × {code.replace('_', ' ')}"
        lines.append(f"{head}: {meaning}" if meaning else head)
        if verbose:
            lines.extend(f"    {m}" for m in messages)
    if lines and not verbose and any(len(m) > 1 for m in group(warnings).values()):
        lines.append("  (`--verbose` lists each one)")
    return lines


def show_warnings(
    out: Console, warnings: Iterable[Mapping[str, str]], verbose: bool, indent: int = 0
) -> None:
    show_lines(out, warning_lines(list(warnings), verbose), indent)
