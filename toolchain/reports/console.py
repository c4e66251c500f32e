"""Terminal output: a rich console sized for terminals and logs, and tables of numbers that keep
their numbers whole at any width (80 columns included)."""

from __future__ import annotations

import os
import re
import sys
from typing import Any, List


def console(file=None):
    """The terminal's width on a terminal; ``COLUMNS`` when it is set (also into a pipe); else 120
    columns into a file or pipe (logs, CI), where rich would otherwise fall back to 80."""
    from rich.console import Console

    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        width = int(cols)
    else:
        width = None if sys.stdout.isatty() else 120
    return Console(highlight=False, width=width, file=file)


#: a cell that is a number (possibly with a short unit: "2 ms", "12.5 %", "3.1e-05 J"): never cut
_NUMBER = re.compile(r"^[-+]?(\d[\d,]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?(\s?[A-Za-z%/]{1,4})?$")


def is_number_cell(s: str) -> bool:
    return bool(_NUMBER.match(s.strip())) if s.strip() else True


class FitTable:
    """A rich renderable table whose number columns are never truncated ("512,0..." at 80 columns):
    when the table does not fit, the columns share the width (:meth:`widths`) so that every number
    keeps its digits; headers and text fold. Only a table whose numbers alone exceed the width is
    cut (by rich)."""

    def __init__(self, title: str, columns: List[str], rows: List[List[str]]):
        self.title, self.columns, self.rows = title, columns, rows

    def numeric(self) -> List[bool]:
        return [i > 0 and all(is_number_cell(r[i]) for r in self.rows) for i in range(len(self.columns))]

    def widths(self, max_width: int) -> List[int]:
        """Content width per column: the natural widths if they fit; else the widest column above
        its floor gives one character at a time, first down to where its header's words (broken
        after / and _) still fit, then to its floor (a number column's longest number, a text
        column's longest word up to 12 characters; headers fold). Text columns go below their
        floor only when every column is at it; number columns never do here."""
        numeric = self.numeric()
        natural = [max([len(c)] + [len(r[i]) for r in self.rows]) for i, c in enumerate(self.columns)]
        available = max_width - (3 * len(self.columns) + 1)  # padding 2 + one border per column, + 1
        w = list(natural)
        floors = []
        for i in range(len(self.columns)):
            cells = [r[i] for r in self.rows]
            if numeric[i]:
                floors.append(max([len(c) for c in cells] + [1]))
            else:
                word = max([len(x) for c in cells for x in c.split()] + [1])
                floors.append(min(natural[i], max(4, min(word, 12))))
        header_word = [max(len(x) for x in re.sub(r"([/_])(?=\S)", r"\1 ", c).split() or [""]) for c in self.columns]
        soft = [min(natural[i], max(floors[i], header_word[i])) for i in range(len(w))]  # headers keep their words
        for floor in (soft, floors, [1 if not numeric[i] else floors[i] for i in range(len(w))]):
            while sum(w) > available:
                cand = [i for i in range(len(w)) if w[i] > floor[i]]
                if not cand:
                    break
                i = max(cand, key=lambda j: (w[j] - floor[j], w[j]))
                w[i] -= 1
        return w

    def build(self, max_width: int):
        from rich.markup import escape
        from rich.table import Table

        widths = self.widths(max_width)
        t = Table(title=escape(self.title), title_justify="left")
        for i, c in enumerate(self.columns):
            if widths[i] < len(c):  # a narrowed header breaks after / and _ before it folds a word
                c = re.sub(r"([/_])(?=\S)", r"\1 ", c)
            t.add_column(escape(c), justify="left" if i == 0 else "right", width=widths[i], overflow="fold")
        for r in self.rows:
            t.add_row(*[escape(v) for v in r])  # a node named "[foo]" is text, not rich markup
        return t

    def __rich_console__(self, console, options):
        yield self.build(options.max_width)

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement

        return Measurement.get(console, options, self.build(options.max_width))


def table(title: str, columns: List[str], rows: List[List[Any]]) -> FitTable:
    cols = [str(c) for c in columns]
    return FitTable(title, cols, [([fmt(v) for v in r] + [""] * len(cols))[: len(cols)] for r in rows])  # short rows padded


def fmt(v) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)
