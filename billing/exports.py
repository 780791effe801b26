"""Machine-readable exports: sessions CSV, expense-note summary CSV and ZIP. One writer per
export, shared by the portal download, the e-mails and the management commands, so all give
byte-identical files."""

from decimal import ROUND_HALF_UP, Decimal

from django.db.models import CharField, ExpressionWrapper, F, Q
from django.utils.translation import gettext

from chargers.models import ChargingSession, outlet_number
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
    "free",  # "true" for free charging (rules of use: priced 0, never billed)
]


def _iso(value):
    return value.isoformat() if value else ""


def write_sessions_csv(out, *, community, year: int, month: int) -> int:
    """Write the sessions of `community` started in the given month (community time zone) to the
    text stream `out` as CSV. Times are ISO 8601 in the community's time zone; decimals use '.';
    energy in kWh with 3 decimals, cost with 2. Returns the number of sessions written."""
    counter = [0]
    for chunk in iter_sessions_csv(community=community, year=year, month=month, counter=counter):
        out.write(chunk)
    return counter[0]


class _Buffer:
    """Where the csv writer writes: the text of the rows since the last chunk."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def take(self) -> str:
        text, self.parts = "".join(self.parts), []
        return text


# What a line of the sessions CSV is made of, read as plain tuples (not model instances: a month
# of a large fleet is ~100,000 rows); the last two continue the next page after the last row.
_SESSION_COLUMNS = (
    "charger__identity",
    "connector__evse_id",
    "connector__connector_id",
    "transaction_id",
    "holder_id",
    "holder_left",
    "holder__first_name",
    "holder__last_name",
    "holder_phone",
    "card__uid",
    "id_tag",
    "started_at",
    "stopped_at",
    "energy_wh",
    "price_per_kwh",
    "cost",
    "free",
    "pk",
)
_STARTED_AT, _PK = _SESSION_COLUMNS.index("started_at"), _SESSION_COLUMNS.index("pk")


def iter_sessions_csv(*, community, year: int, month: int, counter=None, chunk_rows: int = 2000):
    """The sessions CSV of a month as text chunks: the header at once, then pages of up to
    `chunk_rows` lines (the first ones shorter, so rows come at once), each read by its own short query that continues after the last row of
    the previous one (keyset on the index of (community, started_at)): a streamed download
    starts at once and holds one page in memory whatever the size of the month. Not a
    server-side cursor: outside a transaction Django declares it WITH HOLD, which PostgreSQL
    fills with the whole result before the first row (0.5 s for a fleet's month), and inside one
    a slow download would hold a transaction open. The same bytes as `write_sessions_csv`.
    `counter[0]` counts the sessions written."""
    start, end = month_bounds(community, year, month)
    buffer = _Buffer()
    writer = safe_csv.writer(
        buffer,
        columns=SESSIONS_HEADER,
        types={n: safe_csv.NUMBER for n in ("energy_kwh", "price_per_kwh", "cost")},
        lineterminator="\n",
    )
    writer.writerow(SESSIONS_HEADER)
    yield buffer.take()
    tz = community.tz
    month_rows = (
        ChargingSession.objects.filter(
            community=community, started_at__gte=start, started_at__lt=end
        )
        .annotate(
            holder_left=holder_left(),
            # The stored E.164 text, what str() of the PhoneNumber gives: parsing 82,000 of them
            # was 45 % of a fleet month's CPU, for the few holders without a name.
            holder_phone=ExpressionWrapper(F("holder__phone"), output_field=CharField()),
        )
        .order_by("started_at", "pk")
        .values_list(*_SESSION_COLUMNS)
    )
    former = gettext("Former member")
    count = 0
    after: tuple | None = None  # (started_at, pk) of the last row written
    size = min(100, chunk_rows)  # a short first page: the download shows rows at once
    while True:
        page = month_rows
        if after is not None:
            page = page.filter(started_at__gte=after[0]).filter(
                Q(started_at__gt=after[0]) | Q(pk__gt=after[1])
            )
        rows = list(page[:size])
        if not rows:
            break
        last = rows[-1]
        after = (last[_STARTED_AT], last[_PK])
        for row in rows:
            writer.writerow(_session_line(row, tz, former))
        count += len(rows)
        if counter is not None:
            counter[0] = count
        yield buffer.take()
        if len(rows) < size:
            break
        size = min(size * 4, chunk_rows)


def _session_line(row, tz, former) -> list[str]:
    """One row of the sessions CSV from the values read by `iter_sessions_csv`."""
    (
        identity,
        evse_id,
        connector_id,
        transaction_id,
        holder_id,
        left,
        first_name,
        last_name,
        phone,
        card_uid,
        id_tag,
        started_at,
        stopped_at,
        energy_wh,
        price,
        cost,
        free,
        _pk,
    ) = row
    energy = (Decimal(energy_wh) / 1000).quantize(Decimal("0.001"), ROUND_HALF_UP)
    if left:
        # Someone who left: the remaining members see neither name nor card.
        user, card = former, ""
    else:
        name = f"{first_name} {last_name}".strip()
        user = (name or phone) if holder_id else ""
        card = card_uid if card_uid else id_tag
    connector = "" if connector_id is None else outlet_number(evse_id, connector_id)
    return [
        identity,
        connector,
        transaction_id,
        user,
        card,
        _iso(started_at.astimezone(tz) if started_at else None),
        _iso(stopped_at.astimezone(tz) if stopped_at else None),
        f"{energy:.3f}",
        "" if price is None else f"{price:.4f}",
        f"{Decimal(cost).quantize(Decimal('0.01'), ROUND_HALF_UP):.2f}",
        "true" if free else "false",
    ]


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
