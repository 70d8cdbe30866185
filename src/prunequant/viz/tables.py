"""Tables for people: per-layer rows rendered for a terminal or a log file.

On an interactive terminal with ``rich`` installed, a rich table (it wraps cells to the width). Otherwise plain
text: a column-aligned table when it fits the width, else a vertical layout (one ``key: value`` block per row),
so nothing is truncated in a narrow terminal or a CI log. No colours, no control codes in logs.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

__all__ = ["format_table", "print_table", "rows_of", "table_width"]

_MIN_HORIZONTAL = 100  # below this width (columns) a wide table goes vertical


def table_width(stream: TextIO | None = None) -> int:
    """Columns available: the terminal's width on a TTY, ``$COLUMNS`` if set, else 100."""
    stream = stream or sys.stdout
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    if hasattr(stream, "isatty") and stream.isatty():
        return shutil.get_terminal_size((100, 24)).columns
    return _MIN_HORIZONTAL


def rows_of(obj: Any) -> list[dict[str, Any]]:
    """Rows (list of dicts) from a list of dicts/dataclasses or an object with ``.rows``/``.layers``."""
    if isinstance(obj, Mapping):
        obj = obj.get("rows", obj.get("layers", [obj]))
    elif not isinstance(obj, (list, tuple)):
        for attr in ("rows", "layers"):
            if hasattr(obj, attr):
                obj = getattr(obj, attr)
                break
    out = []
    for r in obj:
        if dataclasses.is_dataclass(r) and not isinstance(r, type):
            r = dataclasses.asdict(r)
        out.append(dict(r))
    return out


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return ",".join(_cell(x) for x in v)
    return "" if v is None else str(v)


def format_table(rows: Iterable[Mapping[str, Any]], title: str | None = None,
                 columns: Sequence[str] | None = None, width: int | None = None) -> str:
    """Plain-text table of ``rows`` that never truncates: wider than ``width`` (default 100), the columns wrap into
    several blocks that each repeat the first column; if even two columns do not fit, one vertical
    ``key  value`` block per row.

    Args:
        rows: dict per row (missing keys print empty).
        title: printed above the table.
        columns: column order (default: keys in first-seen order).
        width: available columns.

    Returns:
        The text, lines joined with ``\\n`` (no trailing newline).

    Example:
        >>> print(format_table([{"layer": "fc", "params": 10}], width=80))
        layer  params
        -----  ------
        fc         10
    """
    rows = [dict(r) for r in rows]
    width = width or _MIN_HORIZONTAL
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = [title] if title else []
    numeric = [all(_is_num(r.get(c)) for r in rows if r.get(c) is not None) for c in columns]

    def block(idx: list[int]) -> list[str]:
        def fmt(vals: list[str]) -> str:
            return "  ".join(vals[i].rjust(widths[i]) if numeric[i] else vals[i].ljust(widths[i])
                             for i in idx).rstrip()
        return [fmt(list(columns)), "  ".join("-" * widths[i] for i in idx)] + [fmt(row) for row in cells]

    def span(idx: list[int]) -> int:
        return sum(widths[i] for i in idx) + 2 * (len(idx) - 1)

    if not columns or span(list(range(len(columns)))) <= width:
        lines += block(list(range(len(columns))))
    elif len(columns) > 1 and widths[0] + 2 + max(widths[1:]) <= width:
        # wrap: chunks of columns that fit, each repeating the first (key) column
        chunk: list[int] = [0]
        for i in range(1, len(columns)):
            if span(chunk + [i]) > width:
                lines += block(chunk) + [""]
                chunk = [0]
            chunk.append(i)
        lines += block(chunk)
    else:  # vertical: one "key  value" block per row
        key_w = max(len(c) for c in columns)
        for i, row in enumerate(cells):
            lines.append(f"-- row {i + 1} " + "-" * max(0, min(width, 40) - 10))
            lines += [f"{c.ljust(key_w)}  {v}" for c, v in zip(columns, row)]
    return "\n".join(lines)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def print_table(rows: Any, title: str | None = None, columns: Sequence[str] | None = None,
                stream: TextIO | None = None) -> None:
    """Print ``rows`` (see :func:`rows_of`): rich on an interactive terminal, plain text otherwise.

    Args:
        rows: list of dicts/dataclasses, or an object with ``.rows``/``.layers`` (e.g. a Report).
        title: table title.
        columns: column order.
        stream: where to print (default ``sys.stdout``).
    """
    stream = stream or sys.stdout
    data = rows_of(rows)
    if columns is None:
        columns = []
        for r in data:
            columns += [k for k in r if k not in columns]
    if hasattr(stream, "isatty") and stream.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            t = Table(title=title)
            for c in columns:
                t.add_column(c, overflow="fold", justify="right" if any(_is_num(r.get(c)) for r in data) else "left")
            for r in data:
                t.add_row(*[_cell(r.get(c)) for c in columns])
            Console(file=stream).print(t)
            return
    print(format_table(data, title, columns, table_width(stream)), file=stream)
