"""Reads shared by the portal pages (dashboard, outlets, sessions). They run inside the
community scope the middleware entered, so the scoped managers filter by community."""

import hashlib
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from chargers.models import ChargerCommand, ChargingSession, Connector, OutletState
from chargers.services import REMOTE_ACTIONS
from communities.templatetags.portal import live_energy_wh


def month_bounds(community, year: int, month: int):
    """[start, end) of a calendar month in the community's time zone, as aware datetimes."""
    tz = community.tz
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start, end


def current_month(community):
    today = timezone.localtime(timezone.now(), community.tz)
    return today.year, today.month


# How long the outcome of a remote start/stop stays shown on its outlet.
REMOTE_COMMAND_SHOWN = timedelta(minutes=10)


def outlet_rows(community, user=None):
    """Every outlet with its charger, site and session in progress (3 queries). Each connector
    carries `remote_command`: the latest start/stop asked from the portal for it in the last
    minutes (None otherwise), so the page shows pending → sent → accepted/rejected."""
    connectors = list(
        Connector.objects.select_related("charger__site").order_by(
            "charger__site__name", "charger__identity", "evse_id", "connector_id"
        )
    )
    active = ChargingSession.objects.filter(state=ChargingSession.State.ACTIVE).select_related(
        "holder"
    )
    by_connector = {s.connector_id: s for s in active if s.connector_id}
    commands = {}
    recent = ChargerCommand.objects.filter(
        action__in=REMOTE_ACTIONS,
        connector__isnull=False,
        created_at__gte=timezone.now() - REMOTE_COMMAND_SHOWN,
    ).order_by("created_at", "pk")
    for command in recent:
        commands[command.connector_id] = command  # the newest wins
    for c in connectors:
        c.remote_command = commands.get(c.pk)
    return [(c, by_connector.get(c.pk)) for c in connectors]


def outlets_fingerprint(rows) -> str:
    """Changes whenever anything shown in the outlet table changes: state, status time,
    connection, live energy. The polled partial answers 204 while it stays the same."""
    h = hashlib.sha256()
    for connector, session in rows:
        h.update(
            f"{connector.pk}|{connector.state}|{connector.status_at}|{connector.charger.site_id}|"
            f"{session.pk if session else ''}|{session.meter_last_wh if session else ''}|"
            f"{session.holder_id if session else ''}|{_command_key(connector)};".encode()
        )
    return h.hexdigest()[:20]


def _command_key(connector) -> str:
    command = getattr(connector, "remote_command", None)
    return f"{command.pk}:{command.status}" if command else ""


def state_counts(rows):
    counts = Counter(connector.state for connector, _ in rows)
    return [(state, state.label, counts.get(state, 0)) for state in OutletState]


def month_totals(community, sessions_qs=None):
    """Energy (Wh) and cost of the sessions started this month (community time zone); sessions
    in progress count with their energy so far."""
    start, end = month_bounds(community, *current_month(community))
    qs = (sessions_qs if sessions_qs is not None else ChargingSession.objects.all()).filter(
        started_at__gte=start, started_at__lt=end
    )
    done = qs.filter(state=ChargingSession.State.COMPLETED).aggregate(
        energy=Sum("energy_wh"), cost=Sum("cost")
    )
    energy = done["energy"] or Decimal(0)
    cost = done["cost"] or Decimal(0)
    for session in qs.filter(state=ChargingSession.State.ACTIVE):
        live = live_energy_wh(session)
        energy += live
        if session.price_per_kwh is not None:
            cost += (live / 1000 * session.price_per_kwh).quantize(Decimal("0.01"))
    return {"energy_wh": energy, "cost": cost, "count": qs.count(), "month_start": start}


def holder_left():
    """An annotation for session querysets: true when the session's holder has left the
    session's community, whose remaining members then see "former member" instead of a name."""
    from django.db.models import Exists, OuterRef

    from communities.models import Membership

    return Exists(
        Membership.objects.with_scopes_disabled().filter(
            community=OuterRef("community"), user=OuterRef("holder"), state=Membership.State.LEFT
        )
    )


def sessions_for_list():
    """Sessions with their charger, outlet, holder and card, annotated with `holder_left`."""
    return (
        ChargingSession.objects.select_related("charger__site", "connector", "holder", "card")
        .annotate(holder_left=holder_left())
        .order_by("-started_at", "-pk")
    )
