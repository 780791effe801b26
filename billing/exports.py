"""Machine-readable exports. One writer per export, shared by the portal download and the
management command so both give byte-identical files."""

import csv
from decimal import ROUND_HALF_UP, Decimal

from django_scopes import scopes_disabled

from chargers.models import ChargingSession
from communities.selectors import month_bounds

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
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SESSIONS_HEADER)
    tz = community.tz
    with scopes_disabled():
        sessions = (
            ChargingSession.objects.filter(
                community=community, started_at__gte=start, started_at__lt=end
            )
            .select_related("charger", "connector", "holder", "card")
            .order_by("started_at", "pk")
        )
        count = 0
        for s in sessions.iterator(chunk_size=500):
            energy = (Decimal(s.energy_wh) / 1000).quantize(Decimal("0.001"), ROUND_HALF_UP)
            writer.writerow(
                [
                    s.charger.identity,
                    _connector_label(s.connector),
                    s.transaction_id,
                    (s.holder.get_full_name() or str(s.holder.phone)) if s.holder else "",
                    s.card.uid if s.card else s.id_tag,
                    _iso(s.started_at.astimezone(tz) if s.started_at else None),
                    _iso(s.stopped_at.astimezone(tz) if s.stopped_at else None),
                    f"{energy:.3f}",
                    "" if s.price_per_kwh is None else f"{s.price_per_kwh:.4f}",
                    f"{Decimal(s.cost).quantize(Decimal('0.01'), ROUND_HALF_UP):.2f}",
                ]
            )
            count += 1
    return count
