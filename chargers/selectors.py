"""Reads of outlets and charging sessions shared by the portal pages (dashboard, outlets,
sessions, member pages). They run inside the community scope the middleware entered, so the
scoped managers filter by community."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import (
    Count,
    Max,
    QuerySet,
    Sum,
)
from django.utils import timezone

from billing.prices import session_cost
from communities.models import Community
from communities.selectors import holder_left
from sparklin.dates import current_month, month_bounds
from sparklin.live import fingerprint

from .models import (
    Charger,
    ChargerCommand,
    ChargingSession,
    Connector,
    MeterSample,
    OutletState,
)
from .services import REMOTE_ACTIONS

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise as StrOrPromise

    from accounts.models import User

# How long the outcome of a remote start/stop stays shown on its outlet.
REMOTE_COMMAND_SHOWN = timedelta(minutes=10)
# A power sample older than this says nothing about what a session draws now.
POWER_SHOWN = timedelta(minutes=5)

Row = tuple[Connector, ChargingSession | None]


def live_energy_wh(session: ChargingSession) -> Decimal:
    """Energy of a session: final for completed ones, last meter reading minus start while it
    runs (the worker updates meter_last_wh from MeterValues)."""
    if (
        session.state == ChargingSession.State.ACTIVE
        and session.meter_last_wh is not None
        and session.meter_start_wh is not None
    ):
        return max(session.meter_last_wh - session.meter_start_wh, Decimal(0))
    return session.energy_wh or Decimal(0)


def live_cost(session: ChargingSession) -> Decimal | None:
    """Final cost, or the cost so far of a session in progress (`billing.prices.session_cost`,
    the one rounding rule)."""
    if session.state == ChargingSession.State.ACTIVE:
        return session_cost(live_energy_wh(session), session.price_per_kwh)
    return session.cost


def _recent_remote_commands() -> QuerySet[ChargerCommand]:
    return ChargerCommand.objects.filter(
        action__in=REMOTE_ACTIONS,
        connector__isnull=False,
        created_at__gte=timezone.now() - REMOTE_COMMAND_SHOWN,
    )


def outlet_rows(community: Community, user: User | None = None) -> list[Row]:
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
    commands: dict[int, ChargerCommand] = {}
    for command in _recent_remote_commands().order_by("created_at", "pk"):
        assert command.connector_id is not None
        commands[command.connector_id] = command  # the newest wins
    for c in connectors:
        c.remote_command = commands.get(c.pk)  # type: ignore[attr-defined]
    attach_power_kw(list(by_connector.values()))
    return [(c, by_connector.get(c.pk)) for c in connectors]


def attach_power_kw(sessions: list[ChargingSession]) -> None:
    """Set `power_kw` on each session in progress: its latest Power.Active.Import sample of the
    last minutes (None without one), one query for all (the outlets page's kW column)."""
    latest: dict[int, tuple[datetime, Decimal]] = {}
    if sessions:
        samples = MeterSample.objects.filter(
            session__in=[s.pk for s in sessions],
            measurand="Power.Active.Import",
            phase="",
            timestamp__gte=timezone.now() - POWER_SHOWN,
        ).values_list("session_id", "timestamp", "value")
        for session_id, at, value in samples:
            if session_id not in latest or at > latest[session_id][0]:
                latest[session_id] = (at, value)
    for s in sessions:
        found = latest.get(s.pk)
        s.power_kw = (found[1] / 1000).quantize(Decimal("0.1")) if found else None  # type: ignore[attr-defined]


def outlets_fingerprint(rows: list[Row]) -> str:
    """Changes whenever anything shown in the outlet table changes: state, status time,
    connection, live energy. Used where `live_token` is not available (SQLite)."""
    h = hashlib.sha256()
    for connector, session in rows:
        h.update(
            f"{connector.pk}|{connector.state}|{connector.status_at}|{connector.charger.site_id}|"
            f"{session.pk if session else ''}|{session.meter_last_wh if session else ''}|"
            f"{session.holder_id if session else ''}|{_command_key(connector)};".encode()
        )
    return h.hexdigest()[:20]


def _command_key(connector: Connector) -> str:
    command = getattr(connector, "remote_command", None)
    return f"{command.pk}:{command.status}" if command else ""


# One statement, written once (no ORM compilation per poll): each subquery digests the rows a
# live region shows as `count:sum(hashtext(fields…))`, so a change of any listed field in any
# row, a row added or removed, changes it; the month's sessions by count and latest write.
_LIVE_TOKEN_SQL = """
SELECT
  (SELECT count(*) || ':' || coalesce(sum(hashtext(concat_ws('|', id, name))), 0)
     FROM communities_site WHERE community_id = %(community)s),
  (SELECT count(*) || ':' || coalesce(sum(hashtext(concat_ws('|', id, name, identity, site_id,
          connected, connection_changed_at))), 0)
     FROM chargers_charger WHERE community_id = %(community)s),
  (SELECT count(*) || ':' || coalesce(sum(hashtext(concat_ws('|', id, charger_id, evse_id,
          connector_id, status, error_code, status_at))), 0)
     FROM chargers_connector WHERE community_id = %(community)s),
  (SELECT count(*) || ':' || coalesce(sum(hashtext(concat_ws('|', id, connector_id, holder_id,
          meter_last_wh, updated_at))), 0)
     FROM chargers_chargingsession WHERE community_id = %(community)s AND state = %(active)s),
  (SELECT count(*) || ':' || coalesce(sum(hashtext(concat_ws('|', id, status))), 0)
     FROM chargers_chargercommand
     WHERE community_id = %(community)s AND connector_id IS NOT NULL
       AND action = ANY(%(actions)s) AND created_at >= %(commands_since)s),
  (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '')
     FROM chargers_chargingsession
     WHERE community_id = %(community)s AND started_at >= %(sessions_since)s)
"""


def live_token(community: Community, sessions_since: datetime | None = None) -> str | None:
    """A cheap change token of what the live regions of outlets and the dashboard show: one
    statement that digests, inside the database, the community's sites, chargers (name, site,
    connection), outlets (status and its time), sessions in progress (energy so far, holder)
    and the remote commands still shown; with `sessions_since`, also every session started since
    then (the dashboard's month totals and latest sessions). A poll compares it first and
    answers 204 before any list query (healthchecks compares `updated` first). None off
    PostgreSQL (the SQLite demo): the caller then fingerprints the rows it lists."""
    if connection.vendor != "postgresql":
        return None
    params: dict[str, Any] = {
        "community": community.pk,
        "active": ChargingSession.State.ACTIVE.value,
        "actions": list(REMOTE_ACTIONS),
        "commands_since": timezone.now() - REMOTE_COMMAND_SHOWN,
        "sessions_since": sessions_since,  # NULL: no rows, a constant part
    }
    with connection.cursor() as cursor:
        cursor.execute(_LIVE_TOKEN_SQL, params)
        row = cursor.fetchone()
    return hashlib.sha256("/".join(map(str, row)).encode()).hexdigest()[:20]


def configuration_token(charger: Charger) -> str:
    """The change token of a charger's configuration page: its stored configuration and one
    aggregate over its commands (count, latest write) — no list query."""
    summary = ChargerCommand.objects.filter(charger=charger).aggregate(
        n=Count("pk"), latest=Max("updated_at")
    )
    return fingerprint(summary["n"], summary["latest"], charger.configuration)


def state_counts(rows: list[Row]) -> list[tuple[OutletState, StrOrPromise, int]]:
    counts = Counter(connector.state for connector, _ in rows)
    return [(state, state.label, counts.get(state, 0)) for state in OutletState]


def month_totals(
    community: Community, sessions_qs: QuerySet[ChargingSession] | None = None
) -> dict[str, Any]:
    """Energy (Wh) and cost of the sessions started this month (community time zone); sessions
    in progress count with their energy and cost so far. Costs are the sum of each session's
    cost (`billing.prices.session_cost`), as the session rows and the expense notes show them."""
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
        energy += live_energy_wh(session)
        cost += live_cost(session) or Decimal(0)
    return {"energy_wh": energy, "cost": cost, "count": qs.count(), "month_start": start}


def sessions_for_list() -> QuerySet[ChargingSession]:
    """Sessions with their charger, outlet, holder and card, annotated with `holder_left`."""
    return (
        ChargingSession.objects.select_related("charger__site", "connector", "holder", "card")
        .annotate(holder_left=holder_left())
        .order_by("-started_at", "-pk")
    )
