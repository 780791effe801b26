"""The one CSV writer of Sparklin: every export (sessions, expense notes, a person's data) goes
through it, so a cell typed by a user can never run as a spreadsheet formula.

OWASP's rule ("CSV Injection"): a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
return is prefixed with a single quote, which spreadsheets show as text and never evaluate; the
csv module quotes the cell when needed. Full-width variants of the four signs are treated alike
(some spreadsheets normalise them).

Machine-readable values stay intact where the column is typed: a column declared `NUMBER`
keeps `-1.250`, a column declared `PHONE` keeps `+33612345678` — but only when the value really
is a plain number / an E.164 number; anything else in a typed column is neutralised like text.
Python numbers (int, Decimal, float) are written as they are: they cannot hold a formula.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

TEXT = "text"
NUMBER = "number"
PHONE = "phone"

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
_PATTERNS = {
    NUMBER: re.compile(r"[+-]?\d+(?:\.\d+)?"),
    PHONE: re.compile(r"\+[1-9]\d{1,14}"),  # E.164
}


class Typed:
    """One cell carrying its own type, for tables whose value column mixes kinds (a person's
    data export: `Typed(phone, PHONE)` on the phone line)."""

    __slots__ = ("value", "kind")

    def __init__(self, value: object, kind: str) -> None:
        if kind not in _PATTERNS:
            raise ValueError(f"Unknown CSV cell type {kind!r}")
        self.value, self.kind = value, kind


def neutralise(text: str) -> str:
    """`text` made inert for spreadsheets (OWASP): a leading quote when it starts like a
    formula, unchanged otherwise."""
    if text and text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def cell(value: object, kind: str = TEXT) -> str:
    """The text written for `value` in a column of type `kind`."""
    if type(value) is str and kind == TEXT:  # most cells: plain text in a text column
        return "'" + value if value.startswith(FORMULA_PREFIXES) else value
    if isinstance(value, Typed):
        kind = value.kind
        value = value.value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal, float)):
        return str(value)
    text = str(value)
    pattern = _PATTERNS.get(kind)
    if pattern is not None and pattern.fullmatch(text):
        return text
    return neutralise(text)


class SafeWriter:
    """`csv.writer` with every cell passed through `cell()`. `columns` names the columns in
    order and `types` gives the type of some of them by name (the others are text)."""

    def __init__(
        self,
        out: SupportsWrite[str],
        *,
        columns: Sequence[str] = (),
        types: Mapping[str, str] | None = None,
        **csv_options: Any,
    ) -> None:
        types = dict(types or {})
        unknown = set(types) - set(columns)
        if unknown:
            raise ValueError(f"Typed columns not in the header: {sorted(unknown)}")
        for kind in types.values():
            if kind not in _PATTERNS:
                raise ValueError(f"Unknown CSV column type {kind!r}")
        self._kinds = [types.get(name, TEXT) for name in columns]
        self._writer = csv.writer(out, **csv_options)

    def writerow(self, row: Iterable[object]) -> None:
        values = list(row)
        kinds = self._kinds
        if len(values) > len(kinds):  # cells beyond the declared columns are text
            kinds = [*kinds, *[TEXT] * (len(values) - len(kinds))]
        self._writer.writerow([cell(v, k) for v, k in zip(values, kinds, strict=False)])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(
    out: SupportsWrite[str],
    *,
    columns: Sequence[str] = (),
    types: Mapping[str, str] | None = None,
    **opts: Any,
) -> SafeWriter:
    """The safe replacement of `csv.writer(out, **opts)`."""
    return SafeWriter(out, columns=columns, types=types, **opts)
