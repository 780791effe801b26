"""The power controller: every POWER_CYCLE_SECONDS, for every managed site, read what the meters
and the chargers measure, decide the limits (`power.allocation`), and write the charging
profiles that changed as `ChargerCommand` rows — the one command path: whichever gateway holds
the charger claims and sends them, so the controller works with any number of gateways and
never talks to a charger itself. `python manage.py run_power` runs it (its own process).

Per charger it keeps (in `ChargerPower`'s state columns) what it last sent and saw:
- the failsafe (TxDefaultProfile, `charging_profiles`) is sent in advance to every connected
  managed charger, again when it changes or after the charger reconnects or boots;
- the charger's own maximum (ChargePointMaxProfile / ChargingStationMaxProfile) likewise: in
  advance, again when its settings change or after a reconnection or a boot;
- a session's dynamic limit (TxProfile valid POWER_PROFILE_VALIDITY_SECONDS) is sent when it
  differs from the last one by POWER_HYSTERESIS_A or more — at once when it goes down, at most
  every POWER_MIN_INTERVAL_SECONDS when it goes up — and refreshed before it expires; nothing is
  sent when nothing changed;
- obedience, per outlet in session: an outlet measured above its limit (tolerance: 1 A or
  10 %) for longer than POWER_OBEDIENCE_SECONDS is non-compliant: left out of the sharing and
  counted at what it draws, so the others — the charger's other outlets included — are
  lowered; it is compliant again once it draws within its limit. The charger is shown
  non-compliant while one of its outlets is;
- a charger with several outlets in session gets a limit per outlet (a TxProfile on each
  connector / EVSE, `Allocation.outlet_limits`, their sum capped by the charger's maximum);
- a charger that refuses a charging profile (whichever: its last answer per profile id) is
  flagged and left out of the sharing, counted at its maximum (it cannot be steered); the
  failsafe and the maximum are offered again every REJECTED_RETRY.
"""

from __future__ import annotations

import logging
import time as clock
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django_scopes import scopes_disabled

from chargers.models import Charger, ChargerCommand, ChargingSession, Connector, MeterSample
from meters.readings import SiteMeasurement, site_measurement

from . import charging_profiles as cp
from .allocation import (
    Allocation,
    ChargerSpec,
    CircuitSpec,
    PeakWindow,
    SessionState,
    SiteSpec,
    allocate,
    failsafe_limits,
)
from .models import ChargerPower, Circuit, PowerSample, Sharing, SitePower, site_phases_of

logger = logging.getLogger(__name__)

CURRENT = "Current.Import"
POWER = "Power.Active.Import"
REJECTED_RETRY = timedelta(minutes=10)
# An unanswered profile younger than this holds back a new one (unless it lowers the limit).
IN_FLIGHT = timedelta(seconds=30)
PURGE_EVERY = timedelta(minutes=10)


def tolerance(limit_a: float) -> float:
    return max(1.0, 0.1 * limit_a)


@dataclass
class ChargerRow:
    """A managed charger as the controller reads it."""

    pk: int
    identity: str
    community_id: int
    version: str
    connected: bool
    connected_since: datetime | None
    rate_unit: str | None
    stack_level: str | None
    power: ChargerPower
    phases: tuple[int, ...]  # site phases of its own L1, L2, L3 (wiring)
    outlets: int = 1  # connectors (1.6) / EVSEs (2.0.1) it reported
    last_boot_at: datetime | None = None


@dataclass
class OpenSession:
    charger_id: int
    transaction_id: str
    outlet: int
    started_at: datetime
    session_id: int


# Measured current per site phase, power (W) and the time of the newest sample used.
Draw = tuple[tuple[float | None, float | None, float | None], float | None, datetime | None]


@dataclass
class SiteInputs:
    power: SitePower
    spec: SiteSpec
    chargers: dict[int, ChargerRow]
    sessions: list[OpenSession]
    draws: dict[int, Draw]  # per charger: its sessions together
    measurement: SiteMeasurement | None
    in_flight: set[int] = field(default_factory=set)
    session_draws: dict[int, Draw] = field(default_factory=dict)  # per session id


@dataclass
class CycleReport:
    sites: int = 0
    commands: int = 0
    seconds: float = 0.0
    errors: int = 0
    decisions: dict[int, Allocation] = field(default_factory=dict)


class Controller:
    """One controller process's memory: when it last recorded history and purged it, and the
    command answers it already looked at. Everything else is read again every cycle."""

    def __init__(self) -> None:
        self.last_sample: dict[int, datetime] = {}
        self.last_purge: datetime | None = None
        self.answers_since: datetime | None = None
        self.history: list[PowerSample] = []

    # --- the loop -----------------------------------------------------------------------------
    def run(self, stop: Any = None, cycles: int | None = None) -> None:
        """Cycle until `stop` (a threading.Event) is set or `cycles` ran."""
        done = 0
        while (stop is None or not stop.is_set()) and (cycles is None or done < cycles):
            started = clock.monotonic()
            report = self.cycle_safely()
            done += 1
            if report.sites:
                logger.debug(
                    "power: %d sites, %d commands in %.3fs",
                    report.sites,
                    report.commands,
                    report.seconds,
                )
            pause = max(0.0, settings.POWER_CYCLE_SECONDS - (clock.monotonic() - started))
            if stop is not None:
                stop.wait(pause)
            else:
                clock.sleep(pause)

    def cycle_safely(self) -> CycleReport:
        """One cycle around `close_old_connections()`: a database restart costs one cycle."""
        close_old_connections()
        try:
            return self.cycle()
        except Exception:
            logger.exception("power: cycle failed")
            return CycleReport(errors=1)
        finally:
            close_old_connections()

    def cycle(self, now: datetime | None = None) -> CycleReport:
        """One pass over every managed site of every community (the controller's entry point,
        like the worker's: it spans communities, each row it writes carries its own)."""
        with scopes_disabled():
            return self._cycle(now)

    def _cycle(self, now: datetime | None = None) -> CycleReport:
        started = clock.perf_counter()
        now = now or timezone.now()
        report = CycleReport()
        self.read_answers(now)
        for inputs in load_sites(now):
            report.sites += 1
            try:
                with transaction.atomic():
                    decision, commands = self.control(inputs, now)
            except Exception:
                report.errors += 1
                logger.exception("power: site %s failed", inputs.power.site_id)
                continue
            report.decisions[inputs.power.site_id] = decision
            report.commands += commands
        if self.history:
            # The chart's points of every site, in one insert.
            PowerSample.objects.bulk_create(self.history)
            self.history = []
        if self.last_purge is None or now - self.last_purge >= PURGE_EVERY:
            self.last_purge = now
            PowerSample.objects.with_scopes_disabled().filter(
                at__lt=now - timedelta(hours=settings.POWER_HISTORY_HOURS)
            ).delete()
        report.seconds = clock.perf_counter() - started
        return report

    # --- answers: who refuses profiles ---------------------------------------------------------
    def read_answers(self, now: datetime) -> None:
        """Flag chargers whose last charging profile was refused, unflag those that accepted one
        (answers come back through the event pipeline onto the command rows)."""
        since = self.answers_since or now - timedelta(minutes=5)
        self.answers_since = now - timedelta(seconds=5)  # overlap: answers recorded late
        rows = (
            ChargerCommand.objects.with_scopes_disabled()
            .filter(
                action=cp.SET,
                from_portal=True,
                asked_by__isnull=True,
                updated_at__gte=since,
                status__in=[
                    ChargerCommand.Status.ACCEPTED,
                    ChargerCommand.Status.REJECTED,
                    ChargerCommand.Status.FAILED,
                ],
            )
            .order_by("updated_at", "pk")
            .values_list("charger_id", "status", "payload")
        )
        # The last answer to each profile (by id) counts: a charger that accepts its failsafe
        # but refuses its max profile (or the reverse, in the same cycle) is refusing.
        last: dict[tuple[int, int | None], bool] = {}
        for charger_id, status, payload in rows:
            profile = cp.profile_id(payload) if isinstance(payload, dict) else None
            last[(charger_id, profile)] = status == ChargerCommand.Status.ACCEPTED
        verdict: dict[int, bool] = {}
        for (charger_id, _profile), ok in last.items():
            verdict[charger_id] = verdict.get(charger_id, True) and ok
        refused = [pk for pk, ok in verdict.items() if not ok]
        accepted = [pk for pk, ok in verdict.items() if ok]
        manager = ChargerPower.objects.with_scopes_disabled()
        if refused:
            manager.filter(charger_id__in=refused, rejected_at__isnull=True).update(rejected_at=now)
        if accepted:
            manager.filter(charger_id__in=accepted).update(rejected_at=None)

    # --- one site -----------------------------------------------------------------------------
    def control(self, inputs: SiteInputs, now: datetime) -> tuple[Allocation, int]:
        power, spec = inputs.power, inputs.spec
        safe = failsafe_limits(spec)
        commands: list[ChargerCommand] = []
        changed: dict[int, ChargerPower] = {}
        in_flight = inputs.in_flight

        # Measured draw and obedience first: they decide who is in the sharing.
        states: list[SessionState] = []
        by_charger: dict[int, list[OpenSession]] = defaultdict(list)
        for s in inputs.sessions:
            by_charger[s.charger_id].append(s)
        for charger_id, row in inputs.chargers.items():
            state = row.power
            draw, draw_w, draw_at = inputs.draws.get(charger_id, ((None, None, None), None, None))
            sessions = by_charger.get(charger_id, [])
            highest = max((v for v in draw if v is not None), default=None)
            if highest is not None and draw_at is not None:
                _set(state, changed, draw_a=highest, draw_w=draw_w, draw_at=draw_at)
            self.judge_obedience(state, changed, sessions, inputs.session_draws, now)
            if not sessions:
                _set(state, changed, running_since=None, paused_since=None, over_since=None)
                if state.limit_transaction:
                    _set(
                        state,
                        changed,
                        limit_a=None,
                        limit_transaction="",
                        limit_until=None,
                        outlet_limits={},
                    )
                continue
            disobeying = {
                outlet for outlet, e in (state.outlet_obedience or {}).items() if e.get("since")
            }
            for s in sessions:
                # A charger refusing profiles cannot be steered at all (counted at its maximum);
                # a non-compliant outlet alone leaves the sharing, counted at its last limit
                # or what it draws, and the charger's other outlets stay in it.
                excluded, fixed = "", None
                if state.rejected_at is not None:
                    excluded, fixed = "rejects", float(state.max_a)
                elif str(s.outlet) in disobeying:
                    excluded, fixed = "non_compliant", _outlet_limit(state, str(s.outlet))
                states.append(
                    SessionState(
                        charger_id=charger_id,
                        outlet=s.outlet,
                        started_at=s.started_at,
                        draw_a=inputs.session_draws.get(s.session_id, ((None,) * 3, None, None))[0],
                        running_since=state.running_since,
                        paused_since=state.paused_since,
                        excluded=excluded,
                        fixed_a=fixed,
                    )
                )

        decision = allocate(spec, states, inputs.measurement, now)

        validity = timedelta(seconds=settings.POWER_PROFILE_VALIDITY_SECONDS)
        for charger_id, row in inputs.chargers.items():
            state = row.power
            if not row.connected:
                continue
            # The failsafe, in advance: when never sent, changed, or the charger reconnected.
            wanted = safe.get(charger_id, 0.0)
            reconnected = (
                row.connected_since is not None
                and state.failsafe_at is not None
                and row.connected_since > state.failsafe_at
            )
            if row.last_boot_at is not None and state.failsafe_at is not None:
                reconnected = reconnected or row.last_boot_at > state.failsafe_at
            retry = state.rejected_at is not None and (
                state.failsafe_at is None or now - state.failsafe_at >= REJECTED_RETRY
            )
            if state.failsafe_a != wanted or state.failsafe_at is None or reconnected or retry:
                if charger_id not in in_flight or retry:
                    commands.append(
                        _command(
                            row,
                            cp.failsafe_profile(
                                row.version,
                                limit_a=wanted,
                                phases=len(row.phases),
                                voltage_v=power.voltage_v,
                                watts=cp.takes_watts_only(row.rate_unit),
                            ),
                        )
                    )
                    _set(state, changed, failsafe_a=wanted, failsafe_at=now)
            # The charger's own maximum, as a max profile: when never sent, changed (its
            # settings), after a reconnection or a boot, and again with the failsafe's retries.
            ceiling = float(state.max_a)
            renewed = state.max_profile_at is not None and any(
                at is not None and at > state.max_profile_at
                for at in (row.connected_since, row.last_boot_at)
            )
            retry_max = state.rejected_at is not None and (
                state.max_profile_at is None or now - state.max_profile_at >= REJECTED_RETRY
            )
            if (
                state.max_profile_a != ceiling
                or state.max_profile_at is None
                or renewed
                or retry_max
            ):
                if charger_id not in in_flight or retry_max:
                    commands.append(
                        _command(
                            row,
                            cp.max_profile(
                                row.version,
                                limit_a=ceiling,
                                phases=len(row.phases),
                                start=now,
                                voltage_v=power.voltage_v,
                                watts=cp.takes_watts_only(row.rate_unit),
                            ),
                        )
                    )
                    _set(state, changed, max_profile_a=ceiling, max_profile_at=now)
            if charger_id not in decision.limits:
                continue  # no session, or out of the sharing (its limit stays as it was)
            # Its outlets in the sharing get new limits; a non-compliant one keeps its last.
            sessions = [
                s
                for s in by_charger[charger_id]
                if (charger_id, s.outlet) in decision.outlet_limits
            ]
            limits = {
                **{
                    str(s.outlet): _outlet_limit(state, str(s.outlet)) or 0.0
                    for s in by_charger[charger_id]
                },
                **{str(s.outlet): decision.outlet_limits[(charger_id, s.outlet)] for s in sessions},
            }
            total = round(sum(limits.values()), 1)
            if total > 0:
                if state.running_since is None:
                    _set(state, changed, running_since=now, paused_since=None)
            elif state.paused_since is None:
                _set(state, changed, paused_since=now, running_since=None)
            transaction_key = ",".join(sorted(s.transaction_id for s in by_charger[charger_id]))
            busy = charger_id in in_flight
            if not any(
                self.should_send(
                    state, limits[str(s.outlet)], transaction_key, busy, now, str(s.outlet)
                )
                for s in sessions
            ):
                continue
            until = now + validity
            for s in sessions:
                commands.append(
                    _command(
                        row,
                        cp.dynamic_profile(
                            row.version,
                            outlet=s.outlet,
                            transaction_id=s.transaction_id,
                            limit_a=limits[str(s.outlet)],
                            phases=len(row.phases),
                            valid_to=until,
                            voltage_v=power.voltage_v,
                            watts=cp.takes_watts_only(row.rate_unit),
                            stack_level=cp.dynamic_stack_level(row.stack_level),
                        ),
                    )
                )
            _set(
                state,
                changed,
                limit_a=total,
                limit_at=now,
                limit_until=until,
                limit_transaction=transaction_key,
                outlet_limits=limits,
            )

        if commands:
            ChargerCommand.objects.bulk_create(commands)
        if changed:
            # Only the columns that moved: bulk_update writes a CASE per column and row.
            fields = sorted({n for state in changed.values() for n in state.__dict__["_moved"]})
            ChargerPower.objects.bulk_update(list(changed.values()), fields)
        self.record(inputs, decision, now)
        return decision, len(commands)

    def should_send(
        self,
        state: ChargerPower,
        limit: float,
        transaction_key: str,
        busy: bool,
        now: datetime,
        outlet: str = "1",
    ) -> bool:
        """Hysteresis, per outlet: a new session, a change of POWER_HYSTERESIS_A or more (down
        at once, up at most every POWER_MIN_INTERVAL_SECONDS), a pause or a resumption, or a
        limit about to expire (refreshed at half its validity). An unanswered profile holds
        back all but a decrease."""
        previous = _outlet_limit(state, outlet)
        if previous is None or state.limit_transaction != transaction_key:
            return not busy or previous is None or limit < previous
        if limit < previous - settings.POWER_HYSTERESIS_A + 1e-9 or (limit == 0 and previous > 0):
            return True  # lower: at once, whatever is in flight
        if busy:
            return False
        since = now - state.limit_at if state.limit_at else timedelta.max
        if limit > previous + settings.POWER_HYSTERESIS_A - 1e-9 or (limit > 0 and previous == 0):
            return since >= timedelta(seconds=settings.POWER_MIN_INTERVAL_SECONDS)
        half = timedelta(seconds=settings.POWER_PROFILE_VALIDITY_SECONDS / 2)
        return state.limit_until is None or state.limit_until - now <= half

    def judge_obedience(
        self,
        state: ChargerPower,
        changed: dict[int, ChargerPower],
        sessions: list[OpenSession],
        session_draws: dict[int, Draw],
        now: datetime,
    ) -> None:
        """Per outlet in session: over its limit (beyond the tolerance) since `over`;
        non-compliant (`since`) once that lasted POWER_OBEDIENCE_SECONDS; compliant again as
        soon as it draws within it. Judged only on samples taken POWER_APPLY_SECONDS after the
        charger's limits changed; an outlet without a limit or a recent sample keeps its
        verdict. The charger's `over_since` / `non_compliant_since` are the earliest of its
        outlets'."""
        book: dict[str, dict[str, Any]] = {}
        grace = timedelta(seconds=settings.POWER_APPLY_SECONDS)
        for s in sessions:
            outlet = str(s.outlet)
            entry = dict((state.outlet_obedience or {}).get(outlet) or {})
            limit = _outlet_limit(state, outlet)
            currents, _w, at = session_draws.get(s.session_id, ((None,) * 3, None, None))
            highest = max((v for v in currents if v is not None), default=None)
            if limit is None or highest is None or at is None:
                pass  # nothing measured, or no limit sent yet: no new verdict
            elif state.limit_at is not None and at < state.limit_at + grace:
                pass  # the charger has had no time to apply its limit yet
            elif highest > limit + tolerance(limit):
                over = datetime.fromisoformat(entry["over"]) if entry.get("over") else at
                entry.update(over=over.isoformat(), draw=round(highest, 1))
                lasted = (now - over).total_seconds()
                if not entry.get("since") and lasted >= settings.POWER_OBEDIENCE_SECONDS:
                    entry["since"] = now.isoformat()
                    logger.warning(
                        "power: charger %s outlet %s draws %.1f A over its %.1f A limit for %.0f s",
                        state.charger_id,
                        outlet,
                        highest,
                        limit,
                        lasted,
                    )
            else:
                entry = {}
            if entry:
                book[outlet] = entry
        overs = [datetime.fromisoformat(e["over"]) for e in book.values() if e.get("over")]
        sinces = [datetime.fromisoformat(e["since"]) for e in book.values() if e.get("since")]
        _set(
            state,
            changed,
            outlet_obedience=book,
            over_since=min(overs, default=None),
            non_compliant_since=min(sinces, default=None),
        )

    def record(self, inputs: SiteInputs, decision: Allocation, now: datetime) -> None:
        """A history point for the Power page every POWER_HISTORY_SECONDS."""
        site_id = inputs.power.site_id
        last = self.last_sample.get(site_id)
        if last is not None and (now - last).total_seconds() < settings.POWER_HISTORY_SECONDS:
            return
        self.last_sample[site_id] = now
        power, m = inputs.power, inputs.measurement
        grid_w = None
        if m is not None and not m.stale:
            phases = [p for p in m.grid_power_w if p is not None]
            grid_w = sum(phases) if phases else m.grid_power_total_w
        chargers_w = 0.0
        for draw, draw_w, _at in inputs.draws.values():
            if draw_w is not None:
                chargers_w += draw_w
            else:
                chargers_w += sum(v for v in draw if v is not None) * power.voltage_v
        limit_w = float(power.limit_a - power.margin_a) * power.voltage_v * power.phases
        if decision.peak_active and power.peak_limit_kw is not None:
            limit_w = min(limit_w, float(power.peak_limit_kw) * 1000)
        self.history.append(
            PowerSample(
                community_id=power.community_id,
                site_id=site_id,
                at=now,
                grid_w=grid_w,
                chargers_w=chargers_w,
                solar_w=m.solar_power_w if m is not None else None,
                limit_w=limit_w,
                failsafe=decision.failsafe,
            )
        )


def _set(state: ChargerPower, changed: dict[int, ChargerPower], **values: Any) -> None:
    """Change state columns, remembering the row and the columns that really changed."""
    for name, value in values.items():
        if getattr(state, name) != value:
            setattr(state, name, value)
            changed[state.pk] = state
            moved: set[str] = state.__dict__.setdefault("_moved", set())
            moved.add(name)


def _outlet_limit(state: ChargerPower, outlet: str) -> float | None:
    """The dynamic limit last sent to `outlet` (rows written before limits per outlet: the
    charger's)."""
    if state.limit_a is None:
        return None
    value = (state.outlet_limits or {}).get(outlet)
    return float(value) if value is not None else state.limit_a


def _command(row: ChargerRow, payload: dict[str, Any]) -> ChargerCommand:
    return ChargerCommand(
        community_id=row.community_id,
        charger_id=row.pk,
        action=cp.SET,
        payload=payload,
        from_portal=True,  # waits for the command bus, like every platform-initiated command
    )


def unanswered(charger_ids: list[int], now: datetime) -> set[int]:
    """Chargers with a charging profile still pending or sent (not answered yet)."""
    if not charger_ids:
        return set()
    return set(
        ChargerCommand.objects.with_scopes_disabled()
        .filter(
            charger_id__in=charger_ids,
            action=cp.SET,
            from_portal=True,
            status__in=[ChargerCommand.Status.PENDING, ChargerCommand.Status.SENT],
            created_at__gte=now - IN_FLIGHT,
        )
        .values_list("charger_id", flat=True)
    )


# --- reading a cycle's inputs --------------------------------------------------------------------
def site_spec(power: SitePower, circuits: list[Circuit], chargers: list[ChargerRow]) -> SiteSpec:
    """The allocation's view of a site."""
    tz = power.site.community.tz
    return SiteSpec(
        phases=power.phases,
        voltage_v=float(power.voltage_v),
        limit_a=float(power.limit_a),
        margin_a=float(power.margin_a),
        chargers=tuple(
            ChargerSpec(
                c.pk,
                tuple(sorted(set(c.phases))),
                float(c.power.min_a),
                float(c.power.max_a),
                c.power.circuit_id,
                c.outlets,
            )
            for c in chargers
        ),
        circuits=tuple(CircuitSpec(c.pk, float(c.limit_a), c.parent_id) for c in circuits),
        load_balancing=power.load_balancing,
        solar=power.solar,
        solar_minimum=power.solar_minimum,
        peak_shaving=power.peak_shaving,
        peak_limit_w=float(power.peak_limit_kw) * 1000 if power.peak_limit_kw is not None else None,
        windows=tuple(PeakWindow(frozenset(w.days), w.start, w.end) for w in power.windows.all()),
        first_come_first_served=power.sharing == Sharing.FIRST_COME,
        tz=tz,
    )


def load_sites(now: datetime, site_ids: list[int] | None = None) -> list[SiteInputs]:
    """Everything a cycle needs, for every managed site, in a handful of queries whatever the
    number of sites (plus one meter read per site)."""
    powers_qs = (
        SitePower.objects.with_scopes_disabled()
        .filter(Q(load_balancing=True) | Q(solar=True) | Q(peak_shaving=True))
        .select_related("site__community")
        .prefetch_related("windows")
    )
    if site_ids is not None:
        powers_qs = powers_qs.filter(site_id__in=site_ids)
    powers = list(powers_qs)
    if not powers:
        return []
    by_site = {p.site_id: p for p in powers}
    circuits: dict[int, list[Circuit]] = defaultdict(list)
    for circuit in Circuit.objects.with_scopes_disabled().filter(site_id__in=by_site):
        circuits[circuit.site_id].append(circuit)
    chargers = list(
        Charger.objects.with_scopes_disabled()
        .filter(site_id__in=by_site)
        .values(
            "pk",
            "identity",
            "site_id",
            "community_id",
            "ocpp_version",
            "connected",
            "connected_since",
            "last_boot_at",
            "configuration",
        )
    )
    ensure_charger_power(chargers)
    outlets = dict(
        Connector.objects.with_scopes_disabled()
        .filter(charger_id__in=[c["pk"] for c in chargers], evse_id__gt=0)
        .values("charger_id")
        .annotate(n=Count("evse_id", distinct=True))
        .values_list("charger_id", "n")
    )
    states = {
        p.charger_id: p
        for p in ChargerPower.objects.with_scopes_disabled().filter(
            charger_id__in=[c["pk"] for c in chargers]
        )
    }
    rows: dict[int, dict[int, ChargerRow]] = defaultdict(dict)
    for c in chargers:
        site_power = by_site[c["site_id"]]
        state = states[c["pk"]]
        configuration = c["configuration"] or {}
        rows[c["site_id"]][c["pk"]] = ChargerRow(
            pk=c["pk"],
            identity=c["identity"],
            community_id=c["community_id"],
            version=c["ocpp_version"] or "1.6",
            connected=c["connected"],
            connected_since=c["connected_since"],
            last_boot_at=c["last_boot_at"],
            rate_unit=cp.reported(configuration, cp.RATE_UNIT_KEYS),
            stack_level=cp.reported(configuration, cp.STACK_LEVEL_KEYS),
            power=state,
            phases=site_phases_of(state.wiring, site_power.phases),
            outlets=outlets.get(c["pk"]) or 1,
        )
    charger_site = {c["pk"]: c["site_id"] for c in chargers}
    sessions: dict[int, list[OpenSession]] = defaultdict(list)
    session_charger: dict[int, int] = {}
    for s in (
        ChargingSession.objects.with_scopes_disabled()
        .filter(charger_id__in=charger_site, state=ChargingSession.State.ACTIVE)
        .values("pk", "charger_id", "transaction_id", "started_at", "connector__evse_id")
    ):
        sessions[charger_site[s["charger_id"]]].append(
            OpenSession(
                charger_id=s["charger_id"],
                transaction_id=s["transaction_id"],
                outlet=s["connector__evse_id"] or 1,
                started_at=s["started_at"] or now,
                session_id=s["pk"],
            )
        )
        session_charger[s["pk"]] = s["charger_id"]
    draws, session_draws = measured_draws(session_charger, rows, by_site, charger_site, now)
    busy = unanswered(list(charger_site), now)
    result = []
    for site_id, power in by_site.items():
        site_rows = rows.get(site_id, {})
        result.append(
            SiteInputs(
                power=power,
                spec=site_spec(power, circuits.get(site_id, []), list(site_rows.values())),
                chargers=site_rows,
                sessions=sessions.get(site_id, []),
                draws={k: v for k, v in draws.items() if charger_site.get(k) == site_id},
                measurement=site_measurement(site_id=site_id),
                in_flight={pk for pk in site_rows if pk in busy},
                session_draws={
                    sid: d for sid, d in session_draws.items() if session_charger[sid] in site_rows
                },
            )
        )
    return result


def ensure_charger_power(chargers: list[dict[str, Any]]) -> None:
    """Chargers of a managed site without power settings get the defaults (three-phase on the
    site, 6–32 A): a charger registered after the site was configured is managed at once."""
    have = set(
        ChargerPower.objects.with_scopes_disabled()
        .filter(charger_id__in=[c["pk"] for c in chargers])
        .values_list("charger_id", flat=True)
    )
    missing = [
        ChargerPower(community_id=c["community_id"], charger_id=c["pk"])
        for c in chargers
        if c["pk"] not in have
    ]
    if missing:
        ChargerPower.objects.bulk_create(missing, ignore_conflicts=True)


def sample_age() -> timedelta:
    """Samples older than this say nothing about what a charger draws now."""
    return timedelta(seconds=max(30, 3 * settings.GATEWAY_METER_SAMPLE_INTERVAL))


_PHASE_NAMES = {"L1": 0, "L2": 1, "L3": 2, "L1-N": 0, "L2-N": 1, "L3-N": 2}


def measured_draws(
    session_charger: dict[int, int],
    rows: dict[int, dict[int, ChargerRow]],
    by_site: dict[int, SitePower],
    charger_site: dict[int, int],
    now: datetime,
) -> tuple[dict[int, Draw], dict[int, Draw]]:
    """Per session, then per charger (its sessions together): the measured current per *site*
    phase (the charger's own phases mapped through its wiring), the power (W) and the time of
    the newest sample used — from the latest Current.Import / Power.Active.Import samples of
    the sessions in progress."""
    if not session_charger:
        return {}, {}
    latest: dict[tuple[int, str, str], tuple[datetime, float]] = {}
    for session_id, measurand, phase, value, at in (
        MeterSample.objects.with_scopes_disabled()
        .filter(
            session_id__in=session_charger,
            measurand__in=[CURRENT, POWER],
            timestamp__gte=now - sample_age(),
        )
        .values_list("session_id", "measurand", "phase", "value", "timestamp")
    ):
        key = (session_id, measurand, phase or "")
        if key not in latest or at > latest[key][0]:
            latest[key] = (at, float(value))
    by_session: dict[int, dict[tuple[str, str], tuple[datetime, float]]] = defaultdict(dict)
    for (session_id, measurand, phase), entry in latest.items():
        by_session[session_id][(measurand, phase)] = entry
    sessions: dict[int, Draw] = {}
    chargers: dict[int, Draw] = {}
    for session_id, charger_id in session_charger.items():
        row = rows[charger_site[charger_id]][charger_id]
        voltage = float(by_site[charger_site[charger_id]].voltage_v)
        draw = _session_draw(by_session.get(session_id, {}), row.phases, voltage)
        sessions[session_id] = draw
        if charger_id not in chargers:
            chargers[charger_id] = draw
            continue
        (a, pa, ta), (b, pb, tb) = chargers[charger_id], draw
        currents = tuple(
            None if x is None and y is None else (x or 0.0) + (y or 0.0)
            for x, y in zip(a, b, strict=True)
        )
        chargers[charger_id] = (
            (currents[0], currents[1], currents[2]),
            None if pa is None and pb is None else (pa or 0.0) + (pb or 0.0),
            max((t for t in (ta, tb) if t is not None), default=None),
        )
    return chargers, sessions


def _session_draw(
    latest: dict[tuple[str, str], tuple[datetime, float]],
    phases: tuple[int, ...],
    voltage: float,
) -> Draw:
    own: list[float | None] = [None, None, None]
    newest: datetime | None = None
    for (measurand, phase), (at, value) in latest.items():
        if measurand != CURRENT:
            continue
        if phase in _PHASE_NAMES:
            own[_PHASE_NAMES[phase]] = value
            newest = max(newest or at, at)
        elif phase == "":
            # No phase: the current on each of its phases.
            for i in range(len(phases)):
                if own[i] is None:
                    own[i] = value
            newest = max(newest or at, at)
    power_entry = latest.get((POWER, ""))
    power_w = power_entry[1] if power_entry else None
    if all(v is None for v in own) and power_entry is not None:
        per_phase = power_entry[1] / voltage / len(phases)
        own = [per_phase if i < len(phases) else None for i in range(3)]
        newest = power_entry[0]
    if power_entry is not None:
        newest = max(newest or power_entry[0], power_entry[0])
    site_draw: list[float | None] = [None, None, None]
    for i, amperes in enumerate(own[: len(phases)]):
        if amperes is None:
            continue
        p = phases[i]
        site_draw[p] = (site_draw[p] or 0.0) + amperes
    return ((site_draw[0], site_draw[1], site_draw[2]), power_w, newest)
