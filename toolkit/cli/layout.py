"""The one layout rule for what a person reads: tables fit the terminal they are printed in, or become records.

- A cell is never broken inside: identifiers (targets, paths, commands) and figures print whole.
- As the width shrinks, columns drop by their priority (the highest `drop` first), never the last figure of a
  row; the files and `--wide` keep them.
- Where even the kept columns cannot fit, the table becomes one record per row, as `header: value` lines.
- Prose (notes, reasons, messages) wraps at word boundaries and is never cut; a word longer than the line
  (a long path) stays whole on a line of its own.
- Output that is not a terminal gets the full width (see `common.width_of`)."""

from __future__ import annotations

import shlex
import textwrap
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

INDENT = "  "  # a wrapped message's continuation lines, and a record's fields


@dataclass(frozen=True)
class Col:
    header: str
    drop: int = 0  # 0: always shown; else dropped when narrow, the highest first
    right: bool = True  # figures right-aligned; words left
    prose: bool = False  # wraps at word boundaries (a note); other cells stay whole
    figure: bool = False  # a measured figure: never dropped where it is the last figure a row shows


@dataclass
class Grid:
    """A table's title, columns and rows (cells as text), shown by `show`."""

    title: str
    columns: list[Col]
    rows: list[tuple[list[str], str, bool]] = field(default_factory=list)  # cells, style, ends a section

    def add(self, *cells: str, style: str = "", end_section: bool = False) -> None:
        self.rows.append(([str(c) for c in cells], style, end_section))


def wrap(text: str, width: int, indent: str = INDENT) -> list[str]:
    """`text` as lines of at most `width`, broken only at spaces; continuation lines indented."""
    lines: list[str] = []
    for i, paragraph in enumerate(text.split("\n")):
        lines += textwrap.wrap(paragraph, max(20, width), subsequent_indent=indent, break_long_words=False,
                               break_on_hyphens=False, initial_indent=indent if i and paragraph else "") or [""]
    return lines


def say(console: Console, text: str, style: str | None = None) -> None:
    """A message, wrapped at word boundaries to the console's width (a word longer than that stays whole)."""
    for line in wrap(text, console.width):
        console.print(line, style=style, soft_wrap=True)


def say_command(console: Console, words: list[str], prefix: str = "") -> None:
    """A shell command that can be copied as printed: broken only between words, each line but the last ending in
    ` \\` (the shell's line continuation)."""
    lines, line, started = [], prefix, False
    for word in map(shlex.quote, words):
        if started and len(line) + 1 + len(word) + 2 > console.width:
            lines.append(line + " \\")
            line = " " * len(prefix) + INDENT + word
        else:
            line = f"{line} {word}" if started else line + word
        started = True
    for text in [*lines, line]:
        console.print(text, soft_wrap=True)


def show(console: Console, grid: Grid) -> None:
    """The grid as a table that fits the console, dropping columns by priority; else as records."""
    if grid.title:
        say(console, grid.title, style="bold")
    shown = list(grid.columns)
    while True:
        table = _table(grid, shown)
        if _minimum(console, table) <= console.width:
            console.print(_set_widths(console, table))
            return
        droppable = [c for c in shown if c.drop and _keeps_every_figure(grid, shown, c)]
        if not droppable:
            break
        shown.remove(max(reversed(droppable), key=lambda c: c.drop))  # the highest; of equals, the rightmost
    for i, (cells, style, _) in enumerate(grid.rows):
        if i:
            console.print()
        _record(console, grid.columns, cells, style)


def _keeps_every_figure(grid: Grid, shown: list[Col], dropped: Col) -> bool:
    """Whether every row that shows a figure still shows one without `dropped`."""
    figures = [grid.columns.index(c) for c in shown if c.figure and c is not dropped]
    i = grid.columns.index(dropped)
    return not dropped.figure or all(not cells[i] or any(cells[j] for j in figures) for cells, _, _ in grid.rows)


def _table(grid: Grid, shown: list[Col]) -> Table:
    """The shown columns, each at least as wide as its widest cell (a prose column: its longest word)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
    index = [grid.columns.index(c) for c in shown]
    for col, i in zip(shown, index):
        cells = [col.header, *(cells[i] for cells, _, _ in grid.rows)]
        pieces = [w for cell in cells for w in cell.split()] if col.prose else cells
        table.add_column(col.header, justify="right" if col.right and not col.prose else "left", no_wrap=not col.prose,
                         overflow="fold", min_width=max(map(len, pieces), default=1))
    for cells, style, end in grid.rows:
        table.add_row(*(Text(cells[i]) for i in index), style=style, end_section=end)
    return table


def _minimum(console: Console, table: Table) -> int:
    return Measurement.get(console, console.options.update_width(10**6), table).minimum


def _set_widths(console: Console, table: Table) -> Table:
    """Each column's width: the whole of its widest cell, but prose narrowed (the widest first, never below its
    longest word) until the table fits. Rich's own narrowing would cut words, and the figures with them."""
    natural = [max(len(line) for cell in [column.header, *column.cells] for line in str(cell).splitlines() or [""])
               for column in table.columns]
    widths = [max(n, column.min_width) for n, column in zip(natural, table.columns)]
    chrome = _minimum(console, table) - sum(column.min_width for column in table.columns)
    prose = [i for i, column in enumerate(table.columns) if not column.no_wrap]
    while sum(widths) + chrome > console.width and prose:
        widest = max(prose, key=lambda i: widths[i] - table.columns[i].min_width)
        if widths[widest] <= table.columns[widest].min_width:
            break
        widths[widest] -= 1
    for column, width in zip(table.columns, widths):
        column.width = width
    return table


def _record(console: Console, columns: list[Col], cells: list[str], style: str) -> None:
    """One row as `header: value` lines, the first column as its heading; empty cells left out."""
    console.print(Text(cells[0], style=style or "bold"), soft_wrap=True)
    for col, cell in zip(columns[1:], cells[1:]):
        if cell.strip():
            for line in wrap(f"{col.header}: {cell}", console.width - len(INDENT), INDENT * 2):
                console.print(INDENT + line, soft_wrap=True)
