"""The expense note's session lines as monospaced text (billing/linetable.py): columns line up,
numbers end on one edge, long names wrap instead of being cut, and the font shrinks only when
nothing else fits — checked on the strings and on the rendered PDF (word positions)."""

import re
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing import linetable
from billing.linetable import Column
from billing.models import ExpenseNote
from billing.pdf import LINES_WIDTH_PT, render_expense_note_pdf

COLUMNS = [
    Column("date", "Date"),
    Column("site", "Site", flexible=True),
    Column("outlet", "Outlet", flexible=True),
    Column("kwh", "kWh", right=True),
    Column("amount", "Amount", right=True),
]


def row(site="Parking", outlet="Wallbox #1", kwh="2.000", amount="€0.50"):
    return {"date": "1 Oct 2025", "site": site, "outlet": outlet, "kwh": kwh, "amount": amount}


def test_every_line_has_the_same_length_and_numbers_end_on_one_column():
    table = linetable.layout(
        COLUMNS, [row(), row(kwh="123.456", amount="€1,234.56")], LINES_WIDTH_PT
    )
    lines = [table.head, *table.rows]
    assert len({len(line) for line in lines}) == 1
    budget = int(LINES_WIDTH_PT / (linetable.FONT_PT * linetable.ADVANCE_EM))
    assert len(table.head) == budget  # the spare room went to the names: full width
    assert table.rows[0].endswith("  €0.50") and table.rows[1].endswith("€1,234.56")
    # The kWh column ends at the same place on every line (right-aligned).
    ends = {
        line.index(value) + len(value)
        for line, value in zip(lines, ["kWh", "2.000", "123.456"], strict=True)
    }
    assert len(ends) == 1
    assert table.font_pt == linetable.FONT_PT and table.style == ""


def test_a_long_name_wraps_within_its_column_and_nothing_is_cut():
    site = "Résidence des Tilleuls, parking souterrain niveau -2 (accès rue Victor Hugo)"
    table = linetable.layout(COLUMNS, [row(site=site), row()], LINES_WIDTH_PT)
    first = table.rows[0].split("\n")
    assert len(first) > 1 and table.rows[1].count("\n") == 0
    assert len({len(line) for line in first + [table.head]}) == 1
    start = table.head.index("Site")
    width = table.widths[1]
    wrapped = " ".join(line[start : start + width].strip() for line in first)
    assert wrapped == site
    assert "€0.50" in first[0] and "€0.50" not in first[1]  # figures on the row's first line


def test_the_font_shrinks_only_when_the_figures_alone_do_not_fit():
    wide = [Column(f"c{i}", f"Figure {i}", right=True) for i in range(8)]
    values = {f"c{i}": "€1,234,567.89" for i in range(8)}
    columns = [*wide, Column("site", "Site", flexible=True)]
    table = linetable.layout(columns, [values | {"site": "Parking"}], LINES_WIDTH_PT)
    assert table.font_pt < linetable.FONT_PT and table.font_pt >= linetable.MIN_FONT_PT
    assert table.style == f"font-size: {table.font_pt:.1f}pt"
    needed = len(table.head) * table.font_pt * linetable.ADVANCE_EM
    assert needed <= LINES_WIDTH_PT  # it fits the page at that size
    assert "Parking" in table.rows[0]


def test_cells_count_wide_characters_twice_and_combining_marks_not_at_all():
    assert linetable.cells("Borne 1") == 7
    assert linetable.cells("Bercy 充電") == 10
    assert linetable.cells("e\u0301te\u0301") == 3  # été, decomposed
    assert linetable.cells("1\u202f234,56\xa0€") == 10


def _note(lines, language="en"):
    return ExpenseNote(
        holder_name="Lucas Bernard",
        year=2025,
        month=10,
        sequence=1,
        version=1,
        number="TEST-2025-10-0001",
        language=language,
        currency="EUR",
        time_zone="Europe/Paris",
        community_name="Résidence Les Tilleuls",
        community_address="12 avenue des Tilleuls\n69003 Lyon",
        lines=lines,
        session_count=len(lines),
        energy_wh=sum(Decimal(x["energy_wh"]) for x in lines),
        amount=sum(Decimal(x["amount"]) for x in lines),
        created_at=datetime(2025, 11, 1, tzinfo=UTC),
    )


def _line(n, site="Parking", energy="7404.0", amount="1.86"):
    start = datetime(2025, 10, 1 + n, 6, 0, tzinfo=UTC)
    return {
        "session": n,
        "started_at": start.isoformat(),
        "stopped_at": (start + timedelta(minutes=95)).isoformat(),
        "site": site,
        "outlet": "Borne 1 #1",
        "energy_wh": energy,
        "price_per_kwh": "0.2516",
        "amount": amount,
    }


def _words(pdf: bytes, tmp_path) -> list[tuple[float, float, float, str]]:
    """(xMin, yMin, xMax, word) of every word pdftotext finds on page 1."""
    path = tmp_path / "note.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-bbox", "-f", "1", "-l", "1", str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pattern = r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>'
    return [(float(a), float(y), float(b), w) for a, y, b, w in re.findall(pattern, out)]


@pytest.mark.parametrize("language", ["en", "fr"])
def test_in_the_pdf_amounts_end_on_one_edge_and_a_long_site_is_whole(language, tmp_path):
    long_site = "Résidence des Tilleuls parking souterrain niveau moins deux accès Victor Hugo"
    lines = [_line(0), _line(1, energy="123456.0", amount="1234.56"), _line(2, site=long_site)]
    pdf = render_expense_note_pdf(_note(lines, language), language)
    words = _words(pdf, tmp_path)
    amounts = {"en": ("€1.86", "€1,234.56"), "fr": ("1,86", "234,56")}[language]
    rows = {round(y) for _x0, y, _x1, w in words if w in amounts}
    assert len(rows) == 3
    # Each row's last word (the amount, or its € in French) ends on the same edge.
    ends = [max(x1 for _x0, y, x1, _w in words if round(y) == r) for r in rows]
    assert max(ends) - min(ends) < 0.5  # to half a point
    text = " ".join(w for *_box, w in words)
    for word in long_site.split():
        assert word in text
    # The table's right edge is the page content's: A4 595 pt, 15 mm side margins.
    assert abs(max(ends) - (595.28 - 15 * 72 / 25.4 - 1.4 * 72 / 25.4)) < 1.5


def test_every_table_of_the_note_has_a_fixed_layout():
    """An automatic table layout measures every cell's text before laying it out (a second
    layout of each session line): the note's tables are laid out from the widths the
    stylesheet gives them."""
    from weasyprint import HTML

    from billing.pdf import _stylesheet, render_expense_note_html

    note = _note([_line(0), _line(1)])
    css, fonts = _stylesheet()
    document = HTML(string=render_expense_note_html(note, "en")).render(
        stylesheets=[css], font_config=fonts
    )
    page = document.pages[0]._page_box
    tables = [box for box in page.descendants() if type(box).__name__ == "TableBox"]
    assert len(tables) == 4  # head, meta, lines, totals
    assert {box.style["table_layout"] for box in tables} == {"fixed"}


def test_a_long_driver_name_wraps_in_the_header_and_stays_on_the_page(tmp_path):
    note = _note([_line(0)])
    note.holder_name = (
        "Marie-Christine Alexandrine de la Tour-Auvergne-Lauraguais Montmorency-Laval"
    )
    words = _words(render_expense_note_pdf(note, "en"), tmp_path)
    # Wrapped at spaces or hyphens, every letter of it is printed, in order.
    assert "".join(note.holder_name.split()) in "".join(w for *_box, w in words)
    right_edge = 595.28 - 15 * 72 / 25.4
    assert max(x1 for _x0, _y, x1, _w in words) <= right_edge + 0.5
