"""The power controller: every POWER_CYCLE_SECONDS, for every managed site, read what the meters
and the chargers measure, decide the limits (`power.allocation`), and write the charging
profiles that changed as `ChargerCommand` rows — the one command path: whichever gateway holds
the charger claims and sends them, so the controller works with any number of gateways and
never talks to a charger itself. `python manage.py run_power` runs it (its own process).

Per charger it keeps (in `ChargerPower`'s state columns) what it last sent and saw:
- the failsafe (TxDefaultProfile, `charging_profiles`) is sent in advance to every connected
  managed charger, again when it changes or after the charger reconnects;
- a session's dynamic limit (TxProfile valid POWER_PROFILE_VALIDITY_SECONDS) is sent when it
  differs from the last one by POWER_HYSTERESIS_A or more — at once when it goes down, at most
  every POWER_MIN_INTERVAL_SECONDS when it goes up — and refreshed before it expires; nothing is
  sent when nothing changed;
- obedience: a charger measured above its limit (tolerance: 1 A or 10 %) for longer than
  POWER_OBEDIENCE_SECONDS is non-compliant: left out of the sharing and counted at what it
  draws, so the others are lowered; it is compliant again once it draws within its limit;
- a charger that refuses a charging profile is flagged and left out of the sharing, counted at
  its maximum (it cannot be steered); the failsafe is offered again every REJECTED_RETRY.
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
from django.db.models import Q
from django.utils import timezone
from django_scopes import scopes_disabled

from chargers.models import Charger, ChargerCommand, ChargingSession, MeterSample
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


@dataclass
class OpenSession:
    charger_id: int
    transaction_id: str
    outlet: int
    started_at: datetime
    session_id: int


@dataclass
class SiteInputs:
    power: SitePower
    spec: SiteSpec
    chargers: dict[int, ChargerRow]
    sessions: list[OpenSession]
    draws: dict[
        int, tuple[tuple[float | None, float | None, float | None], float | None, datetime | None]
    ]
    measurement: SiteMeasurement | None
    in_flight: set[int] = field(default_factory=set)


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
            .order_by("updated_at")
            .values_list("charger_id", "status")
        )
        verdict: dict[int, bool] = {}
        for charger_id, status in rows:
            verdict[charger_id] = status == ChargerCommand.Status.ACCEPTED
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
            self.judge_obedience(state, changed, sessions, highest, draw_at, now)
            if not sessions:
                _set(state, changed, running_since=None, paused_since=None, over_since=None)
                if state.limit_transaction:
                    _set(state, changed, limit_a=None, limit_transaction="", limit_until=None)
                continue
            excluded = ""
            fixed = None
            if state.rejected_at is not None:
                excluded, fixed = "rejects", float(state.max_a)
            elif state.non_compliant_since is not None:
                excluded, fixed = "non_compliant", state.limit_a
            states.append(
                SessionState(
                    charger_id=charger_id,
                    started_at=min(s.started_at for s in sessions),
                    draw_a=draw,
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
            if charger_id not in decision.limits:
                continue  # no session, or out of the sharing (its limit stays as it was)
            sessions = by_charger[charger_id]
            limit = decision.limits[charger_id] / len(sessions)
            limit = limit if limit >= float(state.min_a) else 0.0
            if limit > 0:
                if state.running_since is None:
                    _set(state, changed, running_since=now, paused_since=None)
            elif state.paused_since is None:
                _set(state, changed, paused_since=now, running_since=None)
            transaction_key = ",".join(sorted(s.transaction_id for s in sessions))
            if not self.should_send(state, limit, transaction_key, charger_id in in_flight, now):
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
                            limit_a=limit,
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
                limit_a=limit,
                limit_at=now,
                limit_until=until,
                limit_transaction=transaction_key,
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
        self, state: ChargerPower, limit: float, transaction_key: str, busy: bool, now: datetime
    ) -> bool:
        """Hysteresis: a new session, a change of POWER_HYSTERESIS_A or more (down at once, up
        at most every POWER_MIN_INTERVAL_SECONDS), a pause or a resumption, or a limit about to
        expire (refreshed at half its validity). An unanswered profile holds back all but a
        decrease."""
        if state.limit_a is None or state.limit_transaction != transaction_key:
            return not busy or state.limit_a is None or limit < state.limit_a
        if limit < state.limit_a - settings.POWER_HYSTERESIS_A + 1e-9 or (
            limit == 0 and state.limit_a > 0
        ):
            return True  # lower: at once, whatever is in flight
        if busy:
            return False
        since = now - state.limit_at if state.limit_at else timedelta.max
        if limit > state.limit_a + settings.POWER_HYSTERESIS_A - 1e-9 or (
            limit > 0 and state.limit_a == 0
        ):
            return since >= timedelta(seconds=settings.POWER_MIN_INTERVAL_SECONDS)
        half = timedelta(seconds=settings.POWER_PROFILE_VALIDITY_SECONDS / 2)
        return state.limit_until is None or state.limit_until - now <= half

    def judge_obedience(
        self,
        state: ChargerPower,
        changed: dict[int, ChargerPower],
        sessions: list[OpenSession],
        draw_a: float | None,
        draw_at: datetime | None,
        now: datetime,
    ) -> None:
        """Over its limit (beyond the tolerance) since `over_since`; non-compliant once that
        lasted POWER_OBEDIENCE_SECONDS; compliant again as soon as it draws within it. Judged
        only on samples taken POWER_APPLY_SECONDS after its limit changed."""
        if not sessions or state.limit_a is None or draw_a is None or draw_at is None:
            if state.non_compliant_since is not None and not sessions:
                _set(state, changed, non_compliant_since=None, over_since=None)
            return
        grace = timedelta(seconds=settings.POWER_APPLY_SECONDS)
        if state.limit_at is not None and draw_at < state.limit_at + grace:
            return  # the charger has had no time to apply its limit yet
        if draw_a > state.limit_a + tolerance(state.limit_a):
            over = state.over_since or draw_at
            _set(state, changed, over_since=over)
            lasted = (now - over).total_seconds()
            if state.non_compliant_since is None and lasted >= settings.POWER_OBEDIENCE_SECONDS:
                _set(state, changed, non_compliant_since=now)
                logger.warning(
                    "power: charger %s draws %.1f A over its %.1f A limit for %.0f s",
                    state.charger_id,
                    draw_a,
                    state.limit_a,
                    lasted,
                )
        else:
            _set(state, changed, over_since=None, non_compliant_since=None)

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
            "configuration",
        )
    )
    ensure_charger_power(chargers)
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
            rate_unit=_first(configuration, cp.RATE_UNIT_KEYS),
            stack_level=_first(configuration, cp.STACK_LEVEL_KEYS),
            power=state,
            phases=site_phases_of(state.wiring, site_power.phases),
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
    draws = measured_draws(session_charger, rows, by_site, charger_site, now)
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
            )
        )
    return result


def _first(configuration: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = configuration.get(key)
        if value not in (None, ""):
            return str(value)
    return None


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
) -> dict[
    int, tuple[tuple[float | None, float | None, float | None], float | None, datetime | None]
]:
    """Per charger: its measured current per *site* phase (its own phases mapped through its
    wiring), its power (W) and the time of the newest sample used — from the latest
    Current.Import / Power.Active.Import samples of its sessions in progress."""
    if not session_charger:
        return {}
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
        charger_id = session_charger[session_id]
        key = (charger_id, measurand, phase or "")
        if key not in latest or at > latest[key][0]:
            latest[key] = (at, float(value))
    result = {}
    for charger_id in set(session_charger.values()):
        row = rows[charger_site[charger_id]][charger_id]
        voltage = float(by_site[charger_site[charger_id]].voltage_v)
        own: list[float | None] = [None, None, None]
        newest: datetime | None = None
        for (cid, measurand, phase), (at, value) in latest.items():
            if cid != charger_id or measurand != CURRENT:
                continue
            if phase in _PHASE_NAMES:
                own[_PHASE_NAMES[phase]] = value
                newest = max(newest or at, at)
            elif phase == "":
                # No phase: the current on each of its phases.
                for i in range(len(row.phases)):
                    if own[i] is None:
                        own[i] = value
                newest = max(newest or at, at)
        power_entry = latest.get((charger_id, POWER, ""))
        power_w = power_entry[1] if power_entry else None
        if all(v is None for v in own) and power_entry is not None:
            per_phase = power_entry[1] / voltage / len(row.phases)
            own = [per_phase if i < len(row.phases) else None for i in range(3)]
            newest = power_entry[0]
        if power_entry is not None:
            newest = max(newest or power_entry[0], power_entry[0])
        site_draw: list[float | None] = [None, None, None]
        for i, value in enumerate(own[: len(row.phases)]):
            if value is None:
                continue
            p = row.phases[i]
            site_draw[p] = (site_draw[p] or 0.0) + value
        result[charger_id] = ((site_draw[0], site_draw[1], site_draw[2]), power_w, newest)
    return result
