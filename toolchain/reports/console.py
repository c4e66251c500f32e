"""Terminal output: a rich console sized for terminals and logs, and tables of numbers."""

from __future__ import annotations

import sys
from typing import Any, List


def console():
    """The terminal's width on a terminal; 120 columns into a file or pipe (logs, CI), where rich
    would otherwise fall back to 80 and truncate the wider tables."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def table(title: str, columns: List[str], rows: List[List[Any]]):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title), title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(escape(c), justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[escape(fmt(v)) for v in r])  # a node named "[foo]" is text, not rich markup
    return t


def fmt(v) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)
