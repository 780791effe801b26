"""Expense notes as PDF: a pure `render_expense_note_pdf(note, language) -> bytes` over the HTML
template `billing/pdf/expense_note.html` and its print stylesheet, rendered by WeasyPrint.

The stylesheet and the font configuration are parsed once per process: a month of a thousand
notes is a thousand renders, and re-reading fonts and CSS each time doubles the cost.

What a rendering costs (profiled): WeasyPrint's layout, style cascade and drawing, in Python,
per box and line box. Three things keep it down: each session line is one cell holding one
text run of monospaced columns (`billing.linetable`), not nine cells (about a millisecond
each); fonts are subset by HarfBuzz (`libharfbuzz-subset0`, a system package; WeasyPrint falls back to
fontTools, three times slower, and warns); and Python's cyclic garbage collector is held off
while a note is laid out — a layout allocates hundreds of thousands of objects, which made the
collector run hundreds of times per note, each time over the whole worker's heap, for a fifth
of the cost. It runs once after the note instead, over what the note left."""

import contextlib
import functools
import gc
import logging
import zoneinfo
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal

from django.template.loader import get_template, render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from . import formatting as fmt
from . import linetable

# WeasyPrint logs every layout step at INFO: a thousand notes would flood the worker's log.
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)


@contextlib.contextmanager
def _collector_held() -> Iterator[None]:
    """Hold off the cyclic garbage collector for one rendering; collect the young objects once
    after it. The first time in a process, what start-up left (Django, Celery, WeasyPrint's
    modules, the stylesheet) is moved out of the collector's way (`gc.freeze`): it lives as
    long as the process and need not be scanned again by each collection."""
    _freeze_startup_objects()
    if not gc.isenabled():  # a caller that manages the collector itself
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(1)


def subsets_fonts_with_harfbuzz() -> bool:
    """Whether WeasyPrint found HarfBuzz's subsetter (`libharfbuzz-subset0`, a system package).
    Without it, fonts are subset by fontTools: ~0.3 s more CPU per note, and a warning each
    time; the month-end benchmark says so before it measures anything."""
    from weasyprint.text import ffi

    return ffi.harfbuzz_subset is not None and bool(ffi.harfbuzz.hb_version_atleast(4, 1, 0))


@functools.cache
def _freeze_startup_objects() -> None:
    gc.collect()
    gc.freeze()


# The page geometry the print stylesheet and the text layout of the lines share (A4 portrait).
PAGE_WIDTH_MM = 210
SIDE_MARGIN_MM = 15
LINES_PADDING_MM = 1.4  # left and right of each line's text
LINES_WIDTH_PT = (PAGE_WIDTH_MM - 2 * SIDE_MARGIN_MM - 2 * LINES_PADDING_MM) * 72 / 25.4


@functools.cache
def _stylesheet():
    from weasyprint import CSS
    from weasyprint.text.fonts import FontConfiguration

    fonts = FontConfiguration()
    # Strings, not numbers: a template localizes numbers (`1,4` in French), CSS would not parse.
    geometry = {
        "side_margin": f"{SIDE_MARGIN_MM:g}",
        "lines_padding": f"{LINES_PADDING_MM:g}",
        "lines_font": f"{linetable.FONT_PT:g}",
    }
    css = CSS(string=render_to_string("billing/pdf/expense_note.css", geometry), font_config=fonts)
    return css, fonts


def _columns() -> list[linetable.Column]:
    """The lines' columns, their headers in the active language."""
    Column = linetable.Column
    return [
        Column("date", _("Date")),
        Column("site", _("Site"), flexible=True),
        Column("outlet", _("Outlet"), flexible=True),
        Column("start", _("Start")),
        Column("end", _("End")),
        Column("duration", _("Duration"), right=True),
        Column("kwh", _("kWh"), right=True),
        Column("price", _("Price per kWh"), right=True),
        Column("amount", _("Amount"), right=True),
    ]


def note_context(note, language: str) -> dict:
    """Everything the note template prints, already formatted for `language` (which must be
    the active language: the column headers are translated here)."""
    tz = zoneinfo.ZoneInfo(note.time_zone)
    cur = note.currency

    # A month has a price or two: each is written once per note (days and durations are
    # cached for the whole process, `billing.formatting`).
    def day(d: date) -> str:
        return fmt.day(d, language)

    @functools.cache
    def price(value: str) -> str:
        return fmt.money(value, cur, language, decimals=4)

    rows = []
    for line in note.lines:
        start_utc = datetime.fromisoformat(line["started_at"])
        stop_utc = datetime.fromisoformat(line["stopped_at"]) if line["stopped_at"] else None
        # Durations from UTC: two times in the same zone subtract as wall clocks, which is an
        # hour off across a daylight-saving change.
        elapsed = stop_utc - start_utc if stop_utc else None
        start = start_utc.astimezone(tz)
        stop = stop_utc.astimezone(tz) if stop_utc else None
        end = ""
        if stop is not None:
            end = fmt.time(stop)
            if stop.date() != start.date():
                end = f"{day(stop.date())} {end}"
        rows.append(
            {
                "date": day(start.date()),
                "site": line["site"],
                "outlet": line["outlet"],
                "start": fmt.time(start),
                "end": end,
                "duration": fmt.duration(elapsed, language) if elapsed is not None else "",
                "kwh": fmt.kwh(line["energy_wh"], language),
                "price": (
                    _("Free")
                    if line.get("free")
                    else price(line["price_per_kwh"])
                    if line["price_per_kwh"] is not None
                    else "—"
                ),
                "amount": fmt.money(line["amount"], cur, language),
            }
        )
    replaces = note.replaces
    return {
        "note": note,
        "language": language,
        "rows": rows,
        "lines": linetable.layout(_columns(), rows, LINES_WIDTH_PT) if rows else None,
        "month": fmt.month(note.year, note.month, language),
        "created": fmt.date(note.created_at.astimezone(tz), language),
        "total_kwh": fmt.kwh(note.energy_wh, language),
        "total_amount": fmt.money(note.amount, cur, language),
        "replaces": replaces,
        "replaces_amount": fmt.money(replaces.amount, cur, language) if replaces else "",
        "difference": (
            fmt.money(Decimal(note.amount) - Decimal(replaces.amount), cur, language)
            if replaces
            else ""
        ),
    }


def render_expense_note_html(note, language: str | None = None) -> str:
    language = language or note.language
    with translation.override(language):
        return get_template("billing/pdf/expense_note.html").render(note_context(note, language))


def render_expense_note_pdf(note, language: str | None = None) -> bytes:
    """The note as an A4 PDF in `language` (default: the note's own language)."""
    from weasyprint import HTML

    language = language or note.language
    html = render_expense_note_html(note, language)
    css, fonts = _stylesheet()
    with _collector_held():
        return HTML(string=html).write_pdf(stylesheets=[css], font_config=fonts)
