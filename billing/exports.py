"""Machine-readable exports: sessions CSV, expense-note summary CSV and ZIP. One writer per
export, shared by the portal download, the e-mails and the management commands, so all give
byte-identical files."""

from decimal import ROUND_HALF_UP, Decimal

from django.utils.translation import gettext

from chargers.models import ChargingSession
from communities.selectors import holder_left
from sparklin import csv_safe as safe_csv
from sparklin.dates import month_bounds

SESSIONS_HEADER = [
    "charger",
    "connector",
    "transaction_id",
    "user",
    "card",
    "started_at",
    "stopped_at",
    "energy_kwh",
    "price_per_kwh",
    "cost",
]


def _iso(value):
    return value.isoformat() if value else ""


def _connector_label(connector):
    if connector is None:
        return ""
    if connector.evse_id != connector.connector_id:
        return f"{connector.evse_id}.{connector.connector_id}"
    return str(connector.connector_id)


def write_sessions_csv(out, *, community, year: int, month: int) -> int:
    """Write the sessions of `community` started in the given month (community time zone) to the
    text stream `out` as CSV. Times are ISO 8601 in the community's time zone; decimals use '.';
    energy in kWh with 3 decimals, cost with 2. Returns the number of sessions written."""
    start, end = month_bounds(community, year, month)
    writer = safe_csv.writer(
        out,
        columns=SESSIONS_HEADER,
        types={n: safe_csv.NUMBER for n in ("energy_kwh", "price_per_kwh", "cost")},
        lineterminator="\n",
    )
    writer.writerow(SESSIONS_HEADER)
    tz = community.tz
    sessions = (
        ChargingSession.objects.filter(
            community=community, started_at__gte=start, started_at__lt=end
        )
        .select_related("charger", "connector", "holder", "card")
        .annotate(holder_left=holder_left())
        .order_by("started_at", "pk")
    )
    count = 0
    for s in sessions.iterator(chunk_size=500):
        energy = (Decimal(s.energy_wh) / 1000).quantize(Decimal("0.001"), ROUND_HALF_UP)
        if s.holder_left:
            # Someone who left: the remaining members see neither name nor card.
            user, card = gettext("Former member"), ""
        else:
            user = (s.holder.get_full_name() or str(s.holder.phone)) if s.holder else ""
            card = s.card.uid if s.card else s.id_tag
        writer.writerow(
            [
                s.charger.identity,
                _connector_label(s.connector),
                s.transaction_id,
                user,
                card,
                _iso(s.started_at.astimezone(tz) if s.started_at else None),
                _iso(s.stopped_at.astimezone(tz) if s.stopped_at else None),
                f"{energy:.3f}",
                "" if s.price_per_kwh is None else f"{s.price_per_kwh:.4f}",
                f"{Decimal(s.cost).quantize(Decimal('0.01'), ROUND_HALF_UP):.2f}",
            ]
        )
        count += 1
    return count


NOTES_HEADER = [
    "number",
    "version",
    "replaces",
    "driver",
    "month",
    "sessions",
    "energy_kwh",
    "amount",
    "currency",
    "created_at",
]


def write_notes_csv(out, notes) -> int:
    """The summary of expense notes as CSV (one line per note, '.' decimals, for spreadsheets
    and accounting imports). `notes` should come with `replaces` selected."""
    writer = safe_csv.writer(
        out,
        columns=NOTES_HEADER,
        types={n: safe_csv.NUMBER for n in ("version", "sessions", "energy_kwh", "amount")},
        lineterminator="\n",
    )
    writer.writerow(NOTES_HEADER)
    count = 0
    for n in notes:
        writer.writerow(
            [
                n.number,
                n.version,
                n.replaces.number if n.replaces_id else "",
                n.holder_name,
                n.month_label,
                n.session_count,
                f"{(Decimal(n.energy_wh) / 1000).quantize(Decimal('0.001'), ROUND_HALF_UP):.3f}",
                f"{Decimal(n.amount):.2f}",
                n.currency,
                n.created_at.isoformat(),
            ]
        )
        count += 1
    return count


def write_notes_zip(fileobj, notes, progress=None) -> int:
    """A ZIP of the notes' stored PDFs (`YYYY-MM/NUMBER.pdf`) and `expense-notes.csv`, the
    summary. `progress(done)` is called after each PDF. Returns the number of PDFs."""
    import io
    import zipfile

    notes = list(notes)
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for done, note in enumerate(notes, 1):
            with note.pdf.open("rb") as f:
                # PDFs are already compressed: store them as they are.
                archive.writestr(
                    f"{note.month_label}/{note.number}.pdf", f.read(), zipfile.ZIP_STORED
                )
            if progress:
                progress(done)
        summary = io.StringIO()
        write_notes_csv(summary, notes)
        archive.writestr("expense-notes.csv", summary.getvalue())
    return len(notes)
