"""Tables with their column widths decided here, from the cells' text: the stylesheet lays
every table out with ``table-layout: fixed``, which spares WeasyPrint measuring every cell's
content (most of its layout time on a report of some 200 tables)."""

from __future__ import annotations

import html
import re

_TAG = re.compile(r"<[^>]+>")


# About 113 characters of the tables' 7.3 pt type fit across the text width: 0.9 % a character.
PERCENT_PER_CHARACTER = 0.9


def column_widths(rows: list[list[str]]) -> list[float]:
    """Percentages of the table's width, from the plain text of its cells (header row included):
    each column gets a share as its longest cell asks, within bounds, but never less than its
    longest word needs."""
    columns = max((len(row) for row in rows), default=0)
    weights, floors = [], []
    for index in range(columns):
        cells = [row[index] for row in rows if index < len(row)]
        longest = max((len(cell) for cell in cells), default=0)
        word = max((len(word) for cell in cells for word in cell.split()), default=0)
        weights.append(max(min(longest, 45), 3) + 3)
        floors.append(min(40.0, (min(word, 30) + 3) * PERCENT_PER_CHARACTER))
    if sum(floors) >= 100:
        return [100 * f / sum(floors) for f in floors]
    widths = [100 * w / sum(weights) for w in weights]
    for _ in range(columns):  # raise the columns below their floor, take it from the others
        short = [i for i in range(columns) if widths[i] < floors[i] - 0.01]
        if not short:
            break
        for i in short:
            widths[i] = floors[i]
        free = [i for i in range(columns) if widths[i] > floors[i] + 0.01 and i not in short]
        excess = sum(widths) - 100
        spare = sum(widths[i] - floors[i] for i in free)
        for i in free:
            widths[i] -= excess * (widths[i] - floors[i]) / spare if spare else 0
    return widths


def colgroup(widths: list[float]) -> str:
    return "<colgroup>" + "".join(f'<col style="width: {w:.1f}%">' for w in widths) + "</colgroup>"


def text_of(cell_html: str) -> str:
    return html.unescape(_TAG.sub("", cell_html))


def html_table(
    headers: list[str],
    rows: list[list[str]],
    css: str = "data",
    numeric=frozenset(),
    widths: list[float] | None = None,
) -> str:
    """A table of already escaped cells; ``widths`` (percentages) or measured from the cells."""

    def cls(index: int) -> str:
        return ' class="num"' if index in numeric else ""

    widths = widths or column_widths([[text_of(c) for c in row] for row in [headers, *rows]])
    head = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return (
        f'<table class="{css}">{colgroup(widths)}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>\n"
    )
