"""Expense notes as PDF: a pure `render_expense_note_pdf(note, language) -> bytes` over the HTML
template `billing/pdf/expense_note.html` and its print stylesheet, rendered by WeasyPrint.

The stylesheet and the font configuration are parsed once per process: a month of a thousand
notes is a thousand renders, and re-reading fonts and CSS each time doubles the cost.

What a rendering costs (a 30-line note, profiled): WeasyPrint's layout and style cascade, in
Python, a few milliseconds per line. Three things keep it down: the lines table has a fixed
layout (the print stylesheet gives its column widths, so cells are not measured three times);
fonts are subset by HarfBuzz (`libharfbuzz-subset0`, a system package; WeasyPrint falls back to
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
from datetime import datetime
from decimal import Decimal

from django.template.loader import get_template, render_to_string
from django.utils import translation
from django.utils.translation import gettext

from . import formatting as fmt

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


@functools.cache
def _freeze_startup_objects() -> None:
    gc.collect()
    gc.freeze()


@functools.cache
def _stylesheet():
    from weasyprint import CSS
    from weasyprint.text.fonts import FontConfiguration

    fonts = FontConfiguration()
    css = CSS(string=render_to_string("billing/pdf/expense_note.css"), font_config=fonts)
    return css, fonts


def note_context(note, language: str) -> dict:
    """Everything the note template prints, already formatted for `language`."""
    tz = zoneinfo.ZoneInfo(note.time_zone)
    cur = note.currency
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
                end = f"{fmt.date(stop, language)} {end}"
        rows.append(
            {
                "date": fmt.date(start, language),
                "site": line["site"],
                "outlet": line["outlet"],
                "start": fmt.time(start),
                "end": end,
                "duration": fmt.duration(elapsed, language) if elapsed is not None else "",
                "kwh": fmt.kwh(line["energy_wh"], language),
                "price": (
                    gettext("Free")
                    if line.get("free")
                    else fmt.money(line["price_per_kwh"], cur, language, decimals=4)
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
