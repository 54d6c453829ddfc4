"""How every command prints a table: readable at 80 columns, tidy at 120 and 200, figures and ids whole.

A table is described once (columns, rows of cells) and laid out for the width at hand: the first layout that
fits of one table, then two or three narrower ones that repeat the first column; each with amounts to the
cent, then in whole units (a note says so; `--json` keeps the cents); each with two spaces between columns,
then one. Where none fits, rows are stacked: one block per row, `header  value` per line (fits any width).
Figures and ids are never wrapped, folded or cut with an ellipsis; only free text (names, plans, reasons)
wraps, at spaces. The width is the terminal's, else `COLUMNS`, else 80 (a pipe or a log).

Whether a layout fits is tried on a few rows only: per column, the row with its longest text and the row with
its longest word decide the column's width, so a 100,000-row table costs no more to lay out than ten rows.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import product

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from metrics.money import fmt_major

MIN_WIDTH = 40  # below this nothing is readable; lay out as if there were 40 columns
LONG_WORD = 30  # a free-text word longer than this may be folded; shorter ones must stay whole
FREE_MIN = 24  # a free-text column narrower than this (and than its text) reads badly: lay out otherwise


def width() -> int:
    """The terminal's width; `COLUMNS` when set or when not a terminal (80 if neither says)."""
    return max(MIN_WIDTH, shutil.get_terminal_size((80, 24)).columns)


def console(stderr: bool = False) -> Console:
    """A console for one command's output, made per call so `COLUMNS` and redirections are read at run time.

    No highlighting (rich would colour digits at random inside figures) and no markup or emoji codes: account
    and customer names are data, and a name like "Acme [beta]" or "Acme :rocket:" must print (and be measured)
    as it is; not loading rich's emoji table also saves start-up time (README).
    """
    return Console(width=width(), stderr=stderr, highlight=False, markup=False, emoji=False, soft_wrap=False)


@dataclass(frozen=True)
class Amount:
    """A money cell: a major-unit figure (as in the JSON) and its currency, written by metrics/money.py."""

    value: float | None
    currency: str

    def text(self, whole: bool) -> str:
        return fmt_major(self.value, self.currency, whole=whole)


Cell = str | Amount | None


@dataclass(frozen=True)
class Column:
    """`whole=True`: never wrapped (figures, ids, dates). Figures are right-aligned."""

    header: str
    figure: bool = False
    whole: bool = False


def figure(header: str) -> Column:
    return Column(header, figure=True, whole=True)


def ident(header: str) -> Column:
    return Column(header, whole=True)


def _text(cell: Cell, whole: bool) -> str:
    if isinstance(cell, Amount):
        return cell.text(whole)
    return "" if cell is None else cell


def _table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], whole: bool, gap: int = 2) -> Table:
    """A borderless table, a rule under the headers, `gap` spaces between columns."""
    # the box draws one space between columns; padding adds the rest
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, gap - 1, 0, 0))
    for col in columns:
        table.add_column(
            col.header,
            justify="right" if col.figure else "left",
            no_wrap=col.whole,
            overflow="ellipsis" if col.whole else "fold",
        )
    for row in rows:
        table.add_row(*(Text(_text(cell, whole)) for cell in row))
    return table


def fits(out: Console, table: Table, words: Iterable[str] = ()) -> bool:
    """Whether the table fits the console without cutting a never-wrapped column or folding a word.

    Rich's own measurement ignores `no_wrap` when it shrinks columns, so the table is rendered off screen at
    the console's width and checked: a cut figure, id or header shows as an ellipsis (those columns are the
    only ones set to ellipsis; free text folds instead), no line may be wider than the console, and each
    `words` (the free text's words of up to LONG_WORD characters) must come out whole, not folded.
    """
    probe = Console(
        width=out.width, file=io.StringIO(), highlight=False, color_system=None, markup=False, emoji=False
    )
    if not _free_columns_wide_enough(probe, table):
        return False
    probe.print(table)
    text = probe.file.getvalue()  # type: ignore[attr-defined]
    if "…" in text or any(len(line) > out.width for line in text.splitlines()):
        return False
    return all(word in text for word in words)


def _free_columns_wide_enough(probe: Console, table: Table) -> bool:
    """Each wrapping column gets FREE_MIN characters, or all its text needs, whichever is less (Rich is
    pinned, so its column-width calculation can be asked directly)."""
    widths = table._calculate_column_widths(probe, probe.options)  # noqa: SLF001
    for column, width in zip(table.columns, widths, strict=True):
        if column.no_wrap:
            continue
        cells = [str(column.header), *(str(cell) for cell in column.cells)]
        natural = max((len(line) for cell in cells for line in cell.splitlines()), default=0)
        if width < min(FREE_MIN, natural):
            return False
    return True


def _words(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> set[str]:
    """The words of the free-text cells short enough that folding them would be a fault."""
    free = [n for n, col in enumerate(columns) if not col.whole]
    return {
        word for row in rows for n in free for word in _text(row[n], False).split() if len(word) <= LONG_WORD
    }


def _probe_rows(rows: Sequence[Sequence[Cell]]) -> list[Sequence[Cell]]:
    """The rows that decide the column widths: per column, the one with the longest text and the one with the
    longest word (in table order)."""
    if len(rows) <= 20:
        return list(rows)
    chosen: set[int] = set()
    for col in range(len(rows[0])):
        texts = [_text(row[col], False) for row in rows]
        chosen.add(max(range(len(rows)), key=lambda n: len(texts[n])))
        chosen.add(max(range(len(rows)), key=lambda n: max(map(len, texts[n].split()), default=0)))
    return [rows[n] for n in sorted(chosen)]


def has_amounts(rows: Iterable[Sequence[Cell]]) -> bool:
    return any(isinstance(cell, Amount) for row in rows for cell in row)


def _parts(columns: Sequence[Column], count: int) -> list[list[int]]:
    """Column indexes of `count` narrower tables, each repeating the first (key) column."""
    rest = list(range(1, len(columns)))
    size = -(-len(rest) // count)
    return [[0, *rest[i : i + size]] for i in range(0, len(rest), size)]


def _pick(items: Sequence[Cell] | Sequence[Column], indexes: list[int]) -> list:  # type: ignore[type-arg]
    return [items[i] for i in indexes]


def show_table(
    out: Console,
    title: str | None,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    split: bool = True,
) -> None:
    """The table in the first layout that fits (see the module docstring): one table, then two or three that
    repeat the first column (unless `split` is False); each to the cent, then in whole units; each with two
    spaces between columns, then one; else stacked."""
    if not rows:
        if title:
            show_lines(out, [title])
        out.print("  (none)")
        return
    probe = _probe_rows(rows)
    counts = range(1, (min(3, len(columns) - 1) if split else 1) + 1)
    wholes = (False, True) if has_amounts(rows) else (False,)
    for count, whole, gap in product(counts, wholes, (2, 1)):
        parts = [(_pick(columns, part), [_pick(r, part) for r in probe]) for part in _parts(columns, count)]
        if all(fits(out, _table(cols, cells, whole, gap), _words(cols, cells)) for cols, cells in parts):
            if title:
                show_lines(out, [title])
            for n, part in enumerate(_parts(columns, count)):
                if n:
                    out.print()
                out.print(_table(_pick(columns, part), [_pick(r, part) for r in rows], whole, gap))
            if whole:
                out.print("  (amounts in whole units to fit the width; --json has the cents)")
            return
    show_stacked(out, title, columns, rows)


def show_stacked(
    out: Console, title: str | None, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]
) -> None:
    """One block per row: the first cell as its heading, then `header  value` lines, figures aligned."""
    if title:
        out.print(Text(title, style="bold"))
    label = max((len(c.header) for c in columns[1:]), default=0)
    for row in rows:
        out.print(Text(_text(row[0], False), style="bold"))
        for col, cell in zip(columns[1:], row[1:], strict=True):
            value = _text(cell, False)
            if value:
                _show_labelled(out, f"  {col.header.ljust(label)}  ", value)


def _show_labelled(out: Console, prefix: str, value: str) -> None:
    """`prefix` then the value, wrapped at spaces, continuation lines aligned under the value."""
    parts = Text(value).wrap(out, max(MIN_WIDTH // 2, out.width - len(prefix)))
    for n, part in enumerate(parts):
        part.rstrip()
        out.print(Text(prefix if n == 0 else " " * len(prefix)) + part)


def show_lines(out: Console, lines: Iterable[str], indent: int = 0, hang: int | None = None) -> None:
    """Free text wrapped at spaces to the width: the first line at `indent`, the others at `hang` (default
    two more than `indent`)."""
    hang = indent + 2 if hang is None else hang
    for line in lines:
        parts = Text(line).wrap(out, max(MIN_WIDTH // 2, out.width - max(indent, hang)))
        for n, part in enumerate(parts):
            part.rstrip()
            out.print(Text(" " * (indent if n == 0 else hang)) + part)


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 rate`, `2 rates`, `0 rates`; `many` for irregular plurals."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def show_items(out: Console, items: Sequence[str], indent: int = 2, sep: str = ", ") -> None:
    """Short items (`customers 300`) on as few lines as fit, each item kept whole on one line."""
    line = ""
    for n, item in enumerate(items):
        piece = item + (sep.rstrip() if n < len(items) - 1 else "")
        candidate = f"{line} {piece}" if line else piece
        if line and indent + len(candidate) > out.width:
            out.print(Text(" " * indent + line))
            candidate = piece
        line = candidate
    if line:
        out.print(Text(" " * indent + line))
