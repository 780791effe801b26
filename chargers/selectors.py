"""Reads of outlets and charging sessions shared by the portal pages (dashboard, outlets,
sessions, member pages). They run inside the community scope the middleware entered, so the
scoped managers filter by community."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from billing.prices import session_cost
from communities.models import Community, Site
from communities.selectors import holder_left
from sparklin.dates import current_month, month_bounds
from sparklin.live import fingerprint

from . import usage
from .models import (
    Charger,
    ChargerCommand,
    ChargingSession,
    Connector,
    MeterSample,
    OcppMessage,
    OutletState,
    outlet_state,
    outlet_state_q,
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


def charger_search_q(search: str, prefix: str = "") -> Q:
    """Chargers whose serial number or name contains `search` (`prefix`: the path to the
    charger from the rows filtered, e.g. "charger__" for outlets)."""
    return Q(**{f"{prefix}identity__icontains": search}) | Q(**{f"{prefix}name__icontains": search})


def outlets(*, search: str = "", state: str = "", site: Site | None = None) -> QuerySet[Connector]:
    """Outlets with their charger and site, in the order of the outlets page, filtered by a
    serial number or name fragment, a shown state (`outlet_state_q`) and a site."""
    qs = Connector.objects.select_related("charger__site").order_by(
        "charger__site__name", "charger__identity", "evse_id", "connector_id"
    )
    if search:
        qs = qs.filter(charger_search_q(search, "charger__"))
    if state:
        qs = qs.filter(outlet_state_q(state))
    if site is not None:
        qs = qs.filter(charger__site=site)
    return qs


def _latest_power(field: str) -> Subquery:
    return Subquery(
        MeterSample.objects.filter(session=OuterRef("pk"), measurand=POWER, phase="")
        .order_by("-timestamp")
        .values(field)[:1]
    )


def with_power(sessions: QuerySet[ChargingSession]) -> QuerySet[ChargingSession]:
    """Sessions annotated with `power_value` and `power_unit`: their latest whole-meter power
    reading (one index lookup each); `power_kw(session)` reads it in kW."""
    return sessions.annotate(power_value=_latest_power("value"), power_unit=_latest_power("unit"))


def power_kw(session: ChargingSession) -> float | None:
    """The live power of a session annotated by `with_power`, in kW (None if never reported)."""
    value = getattr(session, "power_value", None)
    if value is None:
        return None
    return round(_to_kilo(value, getattr(session, "power_unit", "") or ""), 2)


def site_power(sites: Iterable[Site]) -> dict[int, tuple[float, int]]:
    """Live power (kW) and number of outlets charging, per site: the latest power reading of
    every session in progress on the sites given (one query, one index lookup per session)."""
    totals: dict[int, tuple[float, int]] = {site.pk: (0.0, 0) for site in sites}
    sessions = (
        ChargingSession.objects.filter(
            state=ChargingSession.State.ACTIVE, charger__site__in=list(totals)
        )
        .annotate(power_value=_latest_power("value"), power_unit=_latest_power("unit"))
        .values_list("charger__site_id", "power_value", "power_unit")
    )
    for site_id, value, unit in sessions:
        kw, n = totals[site_id]
        totals[site_id] = (kw + (_to_kilo(value, unit or "") if value is not None else 0.0), n + 1)
    return {pk: (round(kw, 2), n) for pk, (kw, n) in totals.items()}


def with_live(connectors: Iterable[Connector]) -> list[Row]:
    """The given outlets (a page of them) with their session in progress and, on each
    connector, `remote_command`: the latest start/stop asked from the portal for it in the last
    minutes (None otherwise), so the page shows pending → sent → accepted/rejected. Two queries
    bounded by the number of outlets given."""
    connectors = list(connectors)
    ids = [c.pk for c in connectors]
    active = with_power(
        ChargingSession.objects.filter(
            state=ChargingSession.State.ACTIVE, connector_id__in=ids
        ).select_related("holder")
    )
    by_connector = {s.connector_id: s for s in active if s.connector_id}
    for session in by_connector.values():
        session.power_kw = power_kw(session)  # type: ignore[attr-defined]
    commands: dict[int, ChargerCommand] = {}
    for command in (
        _recent_remote_commands().filter(connector_id__in=ids).order_by("created_at", "pk")
    ):
        assert command.connector_id is not None
        commands[command.connector_id] = command  # the newest wins
    for c in connectors:
        c.remote_command = commands.get(c.pk)  # type: ignore[attr-defined]
    return [(c, by_connector.get(c.pk)) for c in connectors]


def outlet_rows(community: Community, user: User | None = None) -> list[Row]:
    """Every outlet with its charger, site and session in progress (3 queries): for small
    communities and tests; pages list `outlets()` a page at a time through `with_live`."""
    return with_live(outlets())


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


# The change token of the live regions, one statement whatever the fleet: the community's
# change counter (`LiveChange`, a few rows kept by PostgreSQL triggers), and the number of
# remote commands still shown (they leave the outlets `REMOTE_COMMAND_SHOWN` after their
# creation, with no write to count; `command_recent` index).
_LIVE_TOKEN_SQL = """
SELECT (SELECT coalesce(sum(changes), 0) FROM chargers_livechange
         WHERE community_id = %(community)s),
       (SELECT count(*) FROM chargers_chargercommand
         WHERE community_id = %(community)s AND created_at >= %(commands_since)s
           AND connector_id IS NOT NULL AND action = ANY(%(actions)s))
"""


def live_token(community: Community, sessions_since: datetime | None = None) -> str | None:
    """The change token of what the live regions of outlets and the dashboard show: it
    changes with every committed change of the community's sites, chargers (name, site,
    connection), outlets, sessions and remote commands (`LiveChange`), when a remote command
    stops being shown, and with `sessions_since` (the dashboard's month) and the community's
    time zone and currency. One query that reads no list, so a poll compares it first and
    answers 204 before any list query (healthchecks compares `updated` first). None off
    PostgreSQL (the SQLite demo): the caller then fingerprints the rows it lists."""
    if connection.vendor != "postgresql":
        return None
    params: dict[str, Any] = {
        "community": community.pk,
        "actions": list(REMOTE_ACTIONS),
        "commands_since": timezone.now() - REMOTE_COMMAND_SHOWN,
    }
    with connection.cursor() as cursor:
        cursor.execute(_LIVE_TOKEN_SQL, params)
        changes, commands = cursor.fetchone()
    since = sessions_since.astimezone(community.tz).date() if sessions_since else None
    return fingerprint(
        community.pk, changes, commands, since, community.time_zone, community.currency
    )


StateCounts = list[tuple[OutletState, "StrOrPromise", int]]


def configuration_token(charger: Charger) -> str:
    """The change token of a charger's configuration page: its stored configuration and one
    aggregate over its commands (count, latest write) — no list query."""
    summary = ChargerCommand.objects.filter(charger=charger).aggregate(
        n=Count("pk"), latest=Max("updated_at")
    )
    return fingerprint(summary["n"], summary["latest"], charger.configuration)


def state_counts() -> StateCounts:
    """How many outlets are in each shown state: one GROUP BY over (connected, status)."""
    grouped = Connector.objects.values_list("charger__connected", "status").annotate(n=Count("pk"))
    return _state_counts(grouped.order_by())


def _state_counts(grouped: Iterable[tuple[bool, str, int]]) -> StateCounts:
    """Outlets counted by (connected, OCPP status) → by shown state (`outlet_state`)."""
    counts: Counter[str] = Counter()
    for connected, status, n in grouped:
        if n:
            counts[outlet_state(connected, status)] += n
    return [(state, state.label, counts.get(state, 0)) for state in OutletState]


def month_totals(
    community: Community, holder: User | None = None, live: usage.Live | None = None
) -> dict[str, Any]:
    """Energy (Wh), cost and number of the sessions started this month (community time zone),
    those in progress with their energy and cost so far: `chargers.usage`, the one home of a
    period's figures (the cost is the sum of each session's cost, as the session rows and the
    expense notes show them)."""
    start = month_bounds(community, *current_month(community))[0]
    first = start.date()
    month = usage.total(community, first, usage.add_months(first, 1), holder=holder, live=live)
    return {
        "energy_wh": month.energy_wh,
        "cost": month.cost,
        "count": month.sessions,
        "month_start": start,
    }


def sessions_for_list() -> QuerySet[ChargingSession]:
    """Sessions with their charger, site, outlet and holder, annotated with `holder_left`.
    Not the card (the session page adds it): a sixth joined table took PostgreSQL ~10 times
    longer to plan (24 ms instead of 2.5 ms measured at fleet scale) than to run the query."""
    return (
        ChargingSession.objects.select_related("charger__site", "connector", "holder")
        .annotate(holder_left=holder_left())
        .order_by("-started_at", "-pk")
    )


# --- one session: its curve and its frames ------------------------------------------------------
ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
# At most this many points per curve (a session sampled every 10 s for a day has 8,640).
CURVE_POINTS = 300
# At most this many frames on the session page; the charger's log has the rest.
SESSION_FRAMES = 300
_SESSION_ACTIONS = (
    "StartTransaction",
    "StopTransaction",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "RequestStartTransaction",
    "RequestStopTransaction",
)


def _to_kilo(value: Decimal, unit: str) -> float:
    """A power or energy reading in kW / kWh (OCPP's default units are W and Wh)."""
    return float(value) if unit.lower().startswith("k") else float(value) / 1000


def session_curve(session: ChargingSession) -> list[tuple[datetime, float | None, float | None]]:
    """(time, power kW, energy kWh since the start) of a session, from its meter samples
    (whole-meter readings, no phase), at most `CURVE_POINTS` points evenly chosen. When the
    charger sends no power, it is derived from the energy register between two readings."""
    samples = (
        MeterSample.objects.filter(
            session=session, phase="", measurand__in=[ENERGY_REGISTER, POWER]
        )
        .order_by("timestamp")
        .values_list("timestamp", "measurand", "value", "unit")
    )
    start_kwh = None if session.meter_start_wh is None else float(session.meter_start_wh) / 1000
    points: dict[datetime, list[float | None]] = {}
    for at, measurand, value, unit in samples:
        point = points.setdefault(at, [None, None])
        if measurand == POWER:
            point[0] = _to_kilo(value, unit)
        else:
            kwh = _to_kilo(value, unit)
            if start_kwh is None:
                start_kwh = kwh
            point[1] = round(max(kwh - start_kwh, 0.0), 3)
    rows = sorted(points.items())
    if not any(p[0] is not None for _, p in rows):  # derive power from the register
        previous: tuple[datetime, float] | None = None
        for at, point in rows:
            if point[1] is not None:
                if previous is not None and at > previous[0]:
                    hours = (at - previous[0]).total_seconds() / 3600
                    point[0] = round(max(point[1] - previous[1], 0.0) / hours, 2)
                previous = (at, point[1])
    step = max(1, -(-len(rows) // CURVE_POINTS))
    chosen = rows[::step]
    if rows and chosen[-1] is not rows[-1]:
        chosen.append(rows[-1])
    return [(at, p[0], p[1]) for at, p in chosen]


def session_frames(session: ChargingSession) -> tuple[list[OcppMessage], bool]:
    """The OCPP frames of a session: those naming its transaction (1.6 `transactionId`, 2.0.1
    `transactionInfo.transactionId`), the starts and stops asked or reported on its charger
    while it ran, and the answers to them. Read in the charger's log over the session's time
    (±1 min), at most `SESSION_FRAMES`; True when there were more."""
    if session.started_at is None:
        return [], False
    since = session.started_at - timedelta(minutes=1)
    until = (session.stopped_at or timezone.now()) + timedelta(minutes=1)
    window = OcppMessage.objects.filter(charger_id=session.charger_id, at__gte=since, at__lte=until)
    tid = session.transaction_id
    naming = Q(payload__transactionId=tid) | Q(payload__transactionInfo__transactionId=tid)
    if tid.isdigit():  # 1.6 sends it as a number
        naming |= Q(payload__transactionId=int(tid))
    calls = list(
        window.filter(naming | Q(action__in=_SESSION_ACTIONS, message_type=2)).order_by("at", "pk")[
            : SESSION_FRAMES + 1
        ]
    )
    more = len(calls) > SESSION_FRAMES
    calls = calls[:SESSION_FRAMES]
    seen = {m.pk for m in calls}
    asked = {m.unique_id for m in calls if m.message_type == 2}
    answers = window.filter(unique_id__in=asked, message_type__in=[3, 4]).exclude(pk__in=seen)
    frames = sorted([*calls, *answers[:SESSION_FRAMES]], key=lambda m: (m.at, m.pk))
    return frames, more
