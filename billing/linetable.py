"""The session lines of an expense note as monospaced text: each line of the note is one
string of fixed-width columns padded with spaces, printed in DejaVu Sans Mono (every glyph of
it has the same advance, so the columns line up exactly, numbers aligned right).

Why not a table cell per value: WeasyPrint lays out every cell as a block with its own line
box, in Python, about a millisecond per cell; nine cells per session line were most of the CPU
of a month of notes. One text run per line is one cell and one line box (~5 times cheaper per
line, measured in docs/architecture.md "Benchmarks").

Nothing is cut: site and outlet names (the flexible columns) share the width the other columns
leave and wrap onto more lines of the same row when they do not fit; when even the shortest
flexible columns cannot fit (very wide amounts), the font is made smaller instead."""

import textwrap
import unicodedata
from dataclasses import dataclass

# DejaVu Sans Mono's advance width (1233 of 2048 font units), the same for every glyph it has:
# the Latin, Greek and Cyrillic letters, digits, €, the no-break spaces of French numbers, —.
ADVANCE_EM = 1233 / 2048
FONT_PT = 8.0
MIN_FONT_PT = 5.0
GAP = "  "
# A flexible column never gets narrower than this (or its own text, if shorter) before the
# font shrinks instead.
FLEX_MIN = 10


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    right: bool = False  # numbers: aligned right
    flexible: bool = False  # names: wrapped into the room the other columns leave


@dataclass(frozen=True)
class TextTable:
    head: str
    # One string per note line ("\n" inside when a name wrapped). Every line has the same
    # length: printed aligned right, their last column ends exactly at the box's right edge.
    rows: list[str]
    font_pt: float
    widths: list[int]

    @property
    def style(self) -> str:
        """The inline style of a table whose type had to be made smaller, else nothing."""
        return f"font-size: {self.font_pt:.1f}pt" if self.font_pt < FONT_PT else ""


def cells(text: str) -> int:
    """How many character cells `text` takes: wide East Asian characters two, combining marks
    none. (Characters DejaVu Sans Mono lacks come from a fallback font whose advance may differ:
    such a line may be slightly off its column, never cut.)"""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width


def _wrap(text: str, width: int) -> list[str]:
    if cells(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=True) or [""]


def _flex_widths(natural: list[int], room: int) -> list[int]:
    """The widths of the flexible columns within `room` cells: each keeps its natural width
    when they all fit; otherwise the widest are narrowed first (to a common cap), none below
    FLEX_MIN or its own natural width."""
    if sum(natural) <= room:
        return natural
    cap = max(natural)
    while cap > FLEX_MIN and sum(min(n, cap) for n in natural) > room:
        cap -= 1
    return [min(n, cap) for n in natural]


def _format(columns: list[Column], widths: list[int], values: list[str]) -> str:
    parts = [
        _wrap(value, width) if column.flexible else [value]
        for column, width, value in zip(columns, widths, values, strict=True)
    ]
    height = max(len(p) for p in parts)
    lines = []
    for i in range(height):
        fields = []
        for column, width, part in zip(columns, widths, parts, strict=True):
            text = part[i] if i < len(part) else ""
            pad = " " * max(0, width - cells(text))
            fields.append(pad + text if column.right else text + pad)
        lines.append(GAP.join(fields))
    return "\n".join(lines)


def layout(columns: list[Column], rows: list[dict], width_pt: float) -> TextTable:
    """`rows` (dicts of already formatted strings, keyed by the columns' keys) as text lines for
    a box `width_pt` wide: a header line and one string per row."""
    natural = [max([cells(c.header)] + [cells(row[c.key]) for row in rows]) for c in columns]
    gaps = len(GAP) * (len(columns) - 1)
    fixed = sum(w for w, c in zip(natural, columns, strict=True) if not c.flexible) + gaps
    budget = int(width_pt / (FONT_PT * ADVANCE_EM))
    flex = [i for i, c in enumerate(columns) if c.flexible]
    widths = list(natural)
    shared = _flex_widths([natural[i] for i in flex], budget - fixed)
    for i, width in zip(flex, shared, strict=True):
        widths[i] = width
    total = sum(widths) + gaps
    font_pt = FONT_PT
    if total > budget:  # even the narrowest flexible columns do not fit: smaller type
        font_pt = max(MIN_FONT_PT, int(width_pt / (total * ADVANCE_EM) * 10) / 10)
    elif flex:  # room to spare: the names' columns get it, the table spans the whole width
        spare = budget - total
        for n, i in enumerate(flex):
            widths[i] += spare // len(flex) + (n < spare % len(flex))
    head = _format(columns, widths, [c.header for c in columns])
    return TextTable(
        head=head,
        rows=[_format(columns, widths, [row[c.key] for c in columns]) for row in rows],
        font_pt=font_pt,
        widths=widths,
    )
