"""Allocation: who may draw how many amperes, now. A pure function of the site's electrical
model, the sessions in progress with their measured draw, the site meter's last measurement and
the time — no database, no clock of its own — so it is tested exhaustively and benchmarked alone.

The rule, in the order it is applied:
1. Capacity per phase for the chargers: the site limit minus the safety margin, minus the
   building's load when a meter measures the grid (building = grid import − chargers' measured
   draw, per phase). Without a meter the whole limit (minus the margin) is shared: balancing runs
   on the chargers' own measured currents (their draw marks who obeys, see `SessionState.draw_a`).
   Peak shaving, inside one of its weekly windows (the community's wall clock, so DST-safe),
   lowers the grid import cap to its kW. Circuits add their own limits (nested: a charger on a
   circuit counts against that circuit, every circuit above it and the site).
2. Sessions that cannot be steered — their charger rejects charging profiles, or their outlet
   was found drawing more than it was told — are left out of the sharing: what they may draw
   (their fixed limit or what they were measured drawing, whichever is higher) is set aside
   first. A charger's other outlets stay in the sharing.
3. Solar balancing adds a power budget: the measured surplus (what the chargers could draw with
   the grid import at zero). "Minimum + solar" lets every session run at its minimum from the
   grid and shares the surplus above it.
4. Sessions are admitted at their minimum current, in order (first come first served, or for an
   equal share: sessions waiting for longer than the rotation period first, then the running
   ones — the longest-running last — then the others waiting), while every constraint holds.
   A session that does not fit is paused (0 A): never less than its minimum.
5. What is left is shared: equally (max-min fair: the lowest currents rise first) or first come
   first served (each in turn up to its maximum). Limits are floored to 0.1 A, so the sum on
   every phase and circuit never exceeds its capacity.
When the meter is silent (stale) the allocation is the failsafe: each charger's safe limit
(`failsafe_limits`), the same that is stored in the chargers in advance.

A charger with several outlets (connectors / EVSEs) may run several sessions at once: each
session is its own unit (limits per outlet, `Allocation.outlet_limits`, each between the
charger's minimum and maximum), and the charger's maximum caps the sum of its outlets (its own
supply, like a circuit without the margin). The failsafe counts outlets, not chargers: it is a
TxDefaultProfile on connector 0 / EVSE 0, which every outlet applies on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meters.readings import SiteMeasurement

PHASES = (0, 1, 2)
EPSILON = 1e-9
# Paused sessions that waited this long take their turn before running ones (equal share).
ROTATION = timedelta(minutes=15)


@dataclass(frozen=True)
class CircuitSpec:
    """A fuse feeding some chargers, under the site or under another circuit."""

    id: int
    limit_a: float
    parent_id: int | None = None


@dataclass(frozen=True)
class ChargerSpec:
    """A managed charger: the site phases it draws on (0 = L1), its current range, its circuit."""

    id: int
    phases: tuple[int, ...]
    min_a: float = 6.0
    max_a: float = 32.0
    circuit_id: int | None = None
    outlets: int = 1  # connectors (1.6) / EVSEs (2.0.1) that can charge at once


@dataclass(frozen=True)
class PeakWindow:
    """A weekly window of peak shaving in local (wall-clock) time; `end` ≤ `start` crosses
    midnight (22:00–06:00 starts on one of `days` and ends the next morning)."""

    days: frozenset[int]  # 0 = Monday
    start: time
    end: time

    def contains(self, local: datetime) -> bool:
        now = local.time().replace(tzinfo=None)
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= now < self.end
        return (day in self.days and now >= self.start) or (
            (day - 1) % 7 in self.days and now < self.end
        )


@dataclass(frozen=True)
class SiteSpec:
    """A site's electrical model and modes, as the allocation needs it."""

    phases: int  # 1 or 3
    voltage_v: float
    limit_a: float  # per phase
    margin_a: float
    chargers: tuple[ChargerSpec, ...]
    circuits: tuple[CircuitSpec, ...] = ()
    load_balancing: bool = True
    solar: bool = False
    solar_minimum: bool = False
    peak_shaving: bool = False
    peak_limit_w: float | None = None
    windows: tuple[PeakWindow, ...] = ()
    first_come_first_served: bool = False
    tz: tzinfo | None = None

    @property
    def site_phases(self) -> tuple[int, ...]:
        return PHASES if self.phases == 3 else (0,)

    def charger(self, charger_id: int) -> ChargerSpec | None:
        for c in self.chargers:
            if c.id == charger_id:
                return c
        return None

    def peak_active(self, now: datetime) -> bool:
        if not self.peak_shaving or self.peak_limit_w is None:
            return False
        local = now.astimezone(self.tz) if self.tz is not None else now
        return any(w.contains(local) for w in self.windows)


@dataclass(frozen=True)
class SessionState:
    """A session in progress on outlet `outlet` of a managed charger. `draw_a` is its measured
    current per site phase (None: not measured); `excluded` says why it is out of the sharing
    ("rejects": its charger refuses profiles; "non_compliant": this outlet does not obey), with
    `fixed_a` what it may draw (its last limit, or the charger's maximum)."""

    charger_id: int
    started_at: datetime
    draw_a: tuple[float | None, float | None, float | None] = (None, None, None)
    running_since: datetime | None = None
    paused_since: datetime | None = None
    excluded: str = ""
    fixed_a: float | None = None
    outlet: int = 1

    @property
    def key(self) -> tuple[int, int]:
        return (self.charger_id, self.outlet)


Key = tuple[int, int]  # (charger id, outlet)


@dataclass
class Allocation:
    """The decision for one site: `outlet_limits` per (charger id, outlet) in A (0 = paused)
    for every session in progress on a managed charger, `limits` their sum per charger;
    `reserved` what the excluded chargers are counted for."""

    limits: dict[int, float] = field(default_factory=dict)
    outlet_limits: dict[Key, float] = field(default_factory=dict)
    reserved: dict[int, float] = field(default_factory=dict)
    failsafe: bool = False
    peak_active: bool = False
    capacity_a: tuple[float, ...] = ()
    building_a: tuple[float, ...] = ()
    solar_budget_w: float | None = None


@dataclass
class _Constraint:
    """Σ weight(i) × current(i) ≤ capacity over `members`."""

    capacity: float
    members: dict[Key, float]  # session unit → weight

    def used(self, current: dict[Key, float]) -> float:
        return sum(w * current[i] for i, w in self.members.items() if i in current)


def floor_a(value: float) -> float:
    """Amperes floored to 0.1 A (what is sent never exceeds what was computed)."""
    return math.floor(value * 10 + EPSILON) / 10 if value > 0 else 0.0


def draw_on(session: SessionState, phase: int) -> float:
    value = session.draw_a[phase] if phase < len(session.draw_a) else None
    return max(value or 0.0, 0.0)


def failsafe_limits(site: SiteSpec) -> dict[int, float]:
    """Each charger's safe limit per outlet, valid whatever the building draws and whoever
    charges: the site's and its circuits' capacity (minus the margin) divided by the outlets on
    each phase, the smallest share over the charger's phases and circuits, and at most the
    charger's maximum divided by its outlets; 0 when that share is below the charger's minimum
    (a charger cannot charge below it, and more would risk the fuse)."""
    counts: dict[tuple[int | None, int], int] = {}
    for c in site.chargers:
        for key in _circuit_chain(site, c.circuit_id):
            for p in c.phases:
                counts[(key, p)] = counts.get((key, p), 0) + max(1, c.outlets)
    limits = {}
    for c in site.chargers:
        share = c.max_a / max(1, c.outlets)
        for key in _circuit_chain(site, c.circuit_id):
            capacity = (
                site.limit_a if key is None else _circuit(site, key).limit_a
            ) - site.margin_a
            for p in c.phases:
                share = min(share, capacity / counts[(key, p)])
        limits[c.id] = floor_a(share) if share >= c.min_a else 0.0
    return limits


def _circuit(site: SiteSpec, circuit_id: int) -> CircuitSpec:
    for circuit in site.circuits:
        if circuit.id == circuit_id:
            return circuit
    raise KeyError(circuit_id)


def _circuit_chain(site: SiteSpec, circuit_id: int | None) -> list[int | None]:
    """The circuits above a charger, itself first, and None (the site) last."""
    chain: list[int | None] = []
    seen = set()
    while circuit_id is not None and circuit_id not in seen:
        seen.add(circuit_id)
        chain.append(circuit_id)
        circuit_id = _circuit(site, circuit_id).parent_id
    chain.append(None)
    return chain


def grid_current(site: SiteSpec, measurement: SiteMeasurement) -> tuple[float, float, float]:
    """The grid import per phase in A (signed: − export): measured currents where the meter
    gives them (signed like the power), else power ÷ nominal voltage."""
    if all(v is None for v in measurement.grid_power_w + measurement.grid_current_a):
        # A meter that measures only the total: spread over the connection's phases.
        total = measurement.grid_power_total_w or 0.0
        share = total / site.voltage_v / len(site.site_phases)
        return (share, share, share) if site.phases == 3 else (share, 0.0, 0.0)
    values = []
    for p in PHASES:
        current = measurement.grid_current_a[p]
        power = measurement.grid_power_w[p]
        if current is not None:
            sign = -1.0 if (power is not None and power < 0) else 1.0
            values.append(sign * abs(current))
        elif power is not None:
            values.append(power / site.voltage_v)
        else:
            values.append(0.0)
    if site.phases == 1:  # a single-phase connection: the meter's phases are all one
        return (sum(values), 0.0, 0.0)
    return (values[0], values[1], values[2])


def allocate(
    site: SiteSpec,
    sessions: Sequence[SessionState],
    measurement: SiteMeasurement | None,
    now: datetime,
) -> Allocation:
    """The limits for every session in progress on a managed charger (see the module)."""
    sessions = [s for s in sessions if site.charger(s.charger_id) is not None]
    result = Allocation(peak_active=site.peak_active(now))
    if measurement is not None and measurement.stale:
        safe = failsafe_limits(site)
        result.failsafe = True
        for s in sessions:
            if not s.excluded:
                result.outlet_limits[s.key] = safe[s.charger_id]
                result.limits[s.charger_id] = (
                    result.limits.get(s.charger_id, 0.0) + safe[s.charger_id]
                )
        result.reserved = _reservations(site, [s for s in sessions if s.excluded])
        return result

    chargers_draw = [sum(draw_on(s, p) for s in sessions) for p in PHASES]
    if measurement is not None:
        grid = grid_current(site, measurement)
        building = [grid[p] - chargers_draw[p] for p in PHASES]
    else:
        building = [0.0, 0.0, 0.0]
    result.building_a = tuple(building[p] for p in site.site_phases)

    constraints: list[_Constraint] = []
    phase_caps = []
    for p in site.site_phases:
        cap = site.limit_a - site.margin_a - building[p]
        if result.peak_active and site.peak_limit_w is not None:
            building_w = sum(building[q] for q in site.site_phases) * site.voltage_v
            per_phase = (site.peak_limit_w - building_w) / (site.voltage_v * len(site.site_phases))
            cap = min(cap, per_phase)
        phase_caps.append(cap)
        members = {s.key: 1.0 for s in sessions if p in _spec(site, s).phases}
        constraints.append(_Constraint(cap, members))
    result.capacity_a = tuple(phase_caps)
    for circuit in site.circuits:
        for p in site.site_phases:
            members = {
                s.key: 1.0
                for s in sessions
                if p in _spec(site, s).phases
                and circuit.id in _circuit_chain(site, _spec(site, s).circuit_id)
            }
            if members:
                constraints.append(_Constraint(circuit.limit_a - site.margin_a, members))
    # A charger with several sessions: its own maximum caps the sum of its outlets.
    by_charger: dict[int, list[SessionState]] = {}
    for s in sessions:
        by_charger.setdefault(s.charger_id, []).append(s)
    for charger_id, own in by_charger.items():
        if len(own) > 1:
            spec = _spec_by_id(site, charger_id)
            constraints.append(_Constraint(spec.max_a, {s.key: 1.0 for s in own}))
    solar: _Constraint | None = None
    if site.solar:
        budget = 0.0
        if measurement is not None:
            grid_w = sum(grid_current(site, measurement)) * site.voltage_v
            budget = max(0.0, sum(chargers_draw) * site.voltage_v - grid_w)
        result.solar_budget_w = budget
        solar = _Constraint(
            budget,
            {s.key: site.voltage_v * len(_spec(site, s).phases) for s in sessions},
        )

    # Chargers out of the sharing: their share is set aside, on every constraint they touch.
    shared = [s for s in sessions if not s.excluded]
    excluded = [s for s in sessions if s.excluded]
    result.reserved = _reservations(site, excluded)
    for charger_id, reserved in result.reserved.items():
        keys = {s.key for s in excluded if s.charger_id == charger_id}
        for con in [*constraints, *([solar] if solar is not None else [])]:
            weights = [con.members.pop(k) for k in keys if k in con.members]
            if weights:
                con.capacity -= reserved * weights[0]

    admission = list(constraints)
    if solar is not None and not site.solar_minimum:
        admission.append(solar)
    current: dict[Key, float] = {}
    for s in _order(site, shared, now):
        spec = _spec(site, s)
        trial = {**current, s.key: spec.min_a}
        if spec.min_a <= spec.max_a and all(
            con.used(trial) <= con.capacity + EPSILON for con in admission
        ):
            current = trial
    filling = list(constraints)
    if solar is not None:
        if site.solar_minimum:
            # The minimum comes from the grid; the surplus is shared above it.
            above = _Constraint(solar.capacity, dict(solar.members))
            base = {i: current[i] for i in current}
            filling.append(_Shifted(above, base))
        else:
            filling.append(solar)
    if site.first_come_first_served:
        _fill_in_order(
            site,
            [s for s in _order(site, shared, now) if s.key in current],
            current,
            filling,
        )
    else:
        _fill_equally(site, current, filling)
    for s in shared:
        limit = floor_a(current.get(s.key, 0.0))
        # A minimum with more than one decimal could floor below itself: pause rather than that.
        limit = limit if limit >= _spec(site, s).min_a - EPSILON else 0.0
        result.outlet_limits[s.key] = limit
        result.limits[s.charger_id] = result.limits.get(s.charger_id, 0.0) + limit
    return result


class _Shifted(_Constraint):
    """A constraint on what exceeds a base current (minimum + solar: the surplus above the
    minimums)."""

    def __init__(self, inner: _Constraint, base: dict[Key, float]):
        super().__init__(inner.capacity, inner.members)
        self.base = base

    def used(self, current: dict[Key, float]) -> float:
        return sum(
            w * (current[i] - self.base.get(i, 0.0))
            for i, w in self.members.items()
            if i in current
        )


def _spec(site: SiteSpec, session: SessionState) -> ChargerSpec:
    spec = site.charger(session.charger_id)
    assert spec is not None
    return spec


def _reservations(site: SiteSpec, excluded: Sequence[SessionState]) -> dict[int, float]:
    """What each charger's sessions out of the sharing are counted for together: their fixed
    limits (an outlet's maximum when it has none), at most the charger's maximum, or what they
    are measured drawing, whichever is higher. Only those sessions: the charger's other outlets
    may stay in the sharing (one non-compliant outlet does not take its neighbours out)."""
    result: dict[int, float] = {}
    for charger_id in dict.fromkeys(s.charger_id for s in excluded):
        own = [s for s in excluded if s.charger_id == charger_id]
        spec = _spec(site, own[0])
        fixed = min(
            spec.max_a, sum(s.fixed_a if s.fixed_a is not None else spec.max_a for s in own)
        )
        measured = max((sum(draw_on(s, p) for s in own) for p in spec.phases), default=0.0)
        result[charger_id] = max(fixed, measured)
    return result


def _order(site: SiteSpec, sessions: Iterable[SessionState], now: datetime) -> list[SessionState]:
    """Admission order. First come first served: by start. Equal share with fair rotation:
    sessions paused for longer than ROTATION (longest wait first), then running ones (the
    longest running last, so it is the one paused when room is short), then the other waiting
    ones (longest wait first)."""
    sessions = list(sessions)
    if site.first_come_first_served:
        return sorted(sessions, key=lambda s: (s.started_at, s.key))

    def key(s: SessionState) -> tuple[int, float, Key]:
        if s.paused_since is not None:
            waited = (now - s.paused_since).total_seconds()
            return (0 if waited >= ROTATION.total_seconds() else 2, -waited, s.key)
        since = s.running_since or s.started_at
        return (1, -since.timestamp(), s.key)

    return sorted(sessions, key=key)


def _slack(con: _Constraint, current: dict[Key, float]) -> float:
    return con.capacity - con.used(current)


def _fill_in_order(
    site: SiteSpec,
    ordered: list[SessionState],
    current: dict[Key, float],
    constraints: list[_Constraint],
) -> None:
    for s in ordered:
        spec = _spec(site, s)
        room = spec.max_a - current[s.key]
        for con in constraints:
            weight = con.members.get(s.key)
            if weight:
                room = min(room, _slack(con, current) / weight)
        if room > 0:
            current[s.key] += room


def _fill_equally(
    site: SiteSpec, current: dict[Key, float], constraints: list[_Constraint]
) -> None:
    """Max-min fair progressive filling: the sessions at the lowest current rise together until
    they reach the next one, a maximum, or a constraint; then the next round."""
    maximum = {i: _spec_by_id(site, i[0]).max_a for i in current}
    active = {i for i in current if current[i] < maximum[i] - EPSILON}
    for con in constraints:
        if _slack(con, current) <= EPSILON:
            active -= set(con.members)
    for _round in range(4 * len(current) + len(constraints) + 4):
        if not active:
            return
        level = min(current[i] for i in active)
        rising = {i for i in active if current[i] <= level + EPSILON}
        higher = [current[i] for i in active if current[i] > level + EPSILON]
        step = min(
            min(maximum[i] - current[i] for i in rising),
            (min(higher) - level) if higher else math.inf,
        )
        for con in constraints:
            weight = sum(w for i, w in con.members.items() if i in rising)
            if weight > 0:
                step = min(step, _slack(con, current) / weight)
        step = max(step, 0.0)
        for i in rising:
            current[i] += step
        for i in list(active):
            if current[i] >= maximum[i] - EPSILON:
                active.discard(i)
        for con in constraints:
            if _slack(con, current) <= EPSILON:
                active -= set(con.members)


def _spec_by_id(site: SiteSpec, charger_id: int) -> ChargerSpec:
    spec = site.charger(charger_id)
    assert spec is not None
    return spec
