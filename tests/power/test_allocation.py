"""The allocation, alone: equal share, first come first served, minimums, phases, circuits,
building load, solar, peak windows (DST included), pause and fair rotation, excluded chargers,
failsafe — and, over random sites, the sums never exceed a limit."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from meters.readings import SiteMeasurement
from power.allocation import (
    ROTATION,
    ChargerSpec,
    CircuitSpec,
    PeakWindow,
    SessionState,
    SiteSpec,
    allocate,
    failsafe_limits,
)

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday
THREE = (0, 1, 2)


def site(chargers, **overrides):
    fields = {"phases": 3, "voltage_v": 230.0, "limit_a": 32.0, "margin_a": 0.0}
    fields.update(overrides)
    return SiteSpec(chargers=tuple(chargers), **fields)


def sessions(*ids, minutes_ago=None):
    return [
        SessionState(charger_id=i, started_at=NOW - timedelta(minutes=(minutes_ago or 60) - n))
        for n, i in enumerate(ids)
    ]


def grid(watts_per_phase, stale=False, solar=None):
    return SiteMeasurement(
        at=NOW,
        grid_power_w=tuple(watts_per_phase),
        grid_current_a=(None, None, None),
        solar_power_w=solar,
        stale=stale,
        grid_power_total_w=sum(w for w in watts_per_phase if w is not None),
    )


def test_equal_share_on_three_phases():
    s = site([ChargerSpec(i, THREE) for i in (1, 2, 3)])
    result = allocate(s, sessions(1, 2, 3), None, NOW)
    assert result.limits == {1: 10.6, 2: 10.6, 3: 10.6}


def test_the_safety_margin_is_kept():
    s = site([ChargerSpec(i, THREE) for i in (1, 2)], margin_a=2.0)
    assert allocate(s, sessions(1, 2), None, NOW).limits == {1: 15.0, 2: 15.0}


def test_maximum_leaves_the_rest_to_the_others():
    s = site([ChargerSpec(1, THREE, max_a=8), ChargerSpec(2, THREE), ChargerSpec(3, THREE)])
    assert allocate(s, sessions(1, 2, 3), None, NOW).limits == {1: 8.0, 2: 12.0, 3: 12.0}


def test_chargers_without_a_session_get_nothing_and_count_for_nothing():
    s = site([ChargerSpec(i, THREE) for i in (1, 2, 3)])
    assert allocate(s, sessions(2), None, NOW).limits == {2: 32.0}


def test_a_session_that_cannot_get_its_minimum_is_paused_not_starved():
    s = site([ChargerSpec(i, THREE) for i in (1, 2, 3)], limit_a=16.0)
    limits = allocate(s, sessions(1, 2, 3), None, NOW).limits
    assert sorted(limits.values()) == [0.0, 8.0, 8.0]
    assert all(v == 0 or v >= 6 for v in limits.values())


def test_single_phase_chargers_share_their_own_phase_only():
    s = site(
        [ChargerSpec(1, (0,)), ChargerSpec(2, (0,)), ChargerSpec(3, (1,)), ChargerSpec(4, THREE)]
    )
    limits = allocate(s, sessions(1, 2, 3, 4), None, NOW).limits
    # L1 holds 1, 2 and the three-phase 4: 32 / 3; L2 holds 3 and 4: 3 takes what 4 leaves.
    assert limits[1] == limits[2] == limits[4] == 10.6
    assert limits[3] == 21.3


def test_circuits_nested_under_the_site():
    s = site(
        [
            ChargerSpec(1, THREE, circuit_id=10),
            ChargerSpec(2, THREE, circuit_id=11),
            ChargerSpec(3, THREE),
        ],
        circuits=(CircuitSpec(10, 16.0), CircuitSpec(11, 10.0, parent_id=10)),
        limit_a=63.0,
    )
    limits = allocate(s, sessions(1, 2, 3), None, NOW).limits
    assert limits[1] + limits[2] <= 16.0 and limits[2] <= 10.0
    assert limits == {1: 8.0, 2: 8.0, 3: 32.0}


def test_building_load_measured_by_the_grid_meter_is_left_to_the_building():
    s = site([ChargerSpec(i, THREE) for i in (1, 2)])
    measured = [
        SessionState(1, NOW, draw_a=(10.0, 10.0, 10.0)),
        SessionState(2, NOW, draw_a=(10.0, 10.0, 10.0)),
    ]
    # Grid: 30 A per phase = the chargers' 20 A + 10 A of building.
    result = allocate(s, measured, grid([30 * 230.0] * 3), NOW)
    assert result.building_a == (10.0, 10.0, 10.0)
    assert result.limits == {1: 11.0, 2: 11.0}


def test_a_building_load_jump_lowers_the_chargers():
    s = site([ChargerSpec(i, THREE) for i in (1, 2, 3)])
    drawing = [SessionState(i, NOW, draw_a=(10.0, 10.0, 10.0)) for i in (1, 2, 3)]
    calm = allocate(s, drawing, grid([30 * 230.0] * 3), NOW).limits
    jump = allocate(s, drawing, grid([44 * 230.0] * 3), NOW).limits
    assert calm == {1: 10.6, 2: 10.6, 3: 10.6}
    assert jump == {1: 6.0, 2: 6.0, 3: 6.0}  # 14 A of building: 18 A left for three


def test_a_stale_meter_gives_the_failsafe_limits():
    s = site([ChargerSpec(i, THREE) for i in (1, 2, 3, 4)])
    result = allocate(s, sessions(1, 2), grid([0, 0, 0], stale=True), NOW)
    assert result.failsafe and result.limits == {1: 8.0, 2: 8.0}


def test_failsafe_divides_by_every_charger_and_pauses_below_the_minimum():
    s = site([ChargerSpec(i, THREE) for i in range(1, 5)], margin_a=2.0)
    assert failsafe_limits(s) == {1: 7.5, 2: 7.5, 3: 7.5, 4: 7.5}
    crowded = site([ChargerSpec(i, THREE) for i in range(1, 7)])
    assert set(failsafe_limits(crowded).values()) == {0.0}  # 32 / 6 < 6 A
    mixed = site([ChargerSpec(1, (0,)), ChargerSpec(2, (1,)), ChargerSpec(3, THREE, max_a=16)])
    assert failsafe_limits(mixed) == {1: 16.0, 2: 16.0, 3: 16.0}


def test_solar_balancing_charges_from_the_surplus_only():
    s = site([ChargerSpec(1, THREE), ChargerSpec(2, (0,))], solar=True)
    # Exporting 4,600 W while the chargers draw nothing: 4,600 W to share.
    result = allocate(s, sessions(1, 2), grid([-4600 / 3] * 3), NOW)
    assert result.solar_budget_w == 4600
    used = result.limits[1] * 230 * 3 + result.limits[2] * 230
    assert used <= 4600 and all(v == 0 or v >= 6 for v in result.limits.values())
    assert result.limits[1] == 0 and result.limits[2] == 20.0  # only one fits its minimum


def test_solar_surplus_counts_what_the_chargers_already_draw():
    s = site([ChargerSpec(1, THREE)], solar=True)
    drawing = [SessionState(1, NOW, draw_a=(8.0, 8.0, 8.0))]
    # Importing nothing, exporting 690 W more while charging at 8 A: 8 A + 1 A.
    result = allocate(s, drawing, grid([-230.0] * 3), NOW)
    assert result.limits == {1: 9.0}


def test_no_surplus_pauses_pure_solar_but_minimum_plus_solar_keeps_the_minimum():
    chargers = [ChargerSpec(1, THREE), ChargerSpec(2, THREE)]
    importing = grid([1000.0] * 3)
    assert allocate(site(chargers, solar=True), sessions(1, 2), importing, NOW).limits == {
        1: 0.0,
        2: 0.0,
    }
    both = allocate(site(chargers, solar=True, solar_minimum=True), sessions(1, 2), importing, NOW)
    assert both.limits == {1: 6.0, 2: 6.0}
    sunny = grid([-2 * 230.0 * 3] * 3)  # 2 A × 3 phases × 2 chargers of surplus
    assert allocate(
        site(chargers, solar=True, solar_minimum=True), sessions(1, 2), sunny, NOW
    ).limits == {1: 9.0, 2: 9.0}


def test_peak_shaving_caps_the_grid_import_inside_its_window_only():
    weekday = PeakWindow(frozenset({0, 1, 2, 3, 4}), time(11, 0), time(14, 0))
    s = site(
        [ChargerSpec(1, THREE), ChargerSpec(2, THREE)],
        limit_a=63.0,
        peak_shaving=True,
        peak_limit_w=13_800.0,
        windows=(weekday,),
        tz=ZoneInfo("Europe/Paris"),
    )
    inside = allocate(s, sessions(1, 2), None, NOW)  # 13:00 in Paris
    assert inside.peak_active and inside.limits == {1: 10.0, 2: 10.0}
    evening = allocate(s, sessions(1, 2), None, NOW + timedelta(hours=6))
    assert not evening.peak_active and evening.limits == {1: 31.5, 2: 31.5}


def test_peak_windows_follow_the_local_wall_clock_across_dst():
    window = PeakWindow(frozenset({6}), time(17, 0), time(20, 0))  # Sundays 17–20 local
    paris = ZoneInfo("Europe/Paris")
    s = site(
        [ChargerSpec(1, THREE)], peak_shaving=True, peak_limit_w=1.0, windows=(window,), tz=paris
    )
    for day in (datetime(2026, 3, 29), datetime(2026, 10, 25)):  # the two DST Sundays
        assert s.peak_active(day.replace(hour=17, minute=30, tzinfo=paris))
        assert not s.peak_active(day.replace(hour=16, minute=59, tzinfo=paris))
        assert not s.peak_active(day.replace(hour=20, minute=0, tzinfo=paris))


def test_a_window_crossing_midnight():
    night = PeakWindow(frozenset({4}), time(22, 0), time(6, 0))  # Friday night
    assert night.contains(datetime(2026, 3, 6, 23, 0))
    assert night.contains(datetime(2026, 3, 7, 5, 59))
    assert not night.contains(datetime(2026, 3, 7, 6, 0))
    assert not night.contains(datetime(2026, 3, 5, 23, 0))


def test_first_come_first_served_fills_the_oldest_session_first():
    s = site([ChargerSpec(i, THREE) for i in (1, 2, 3)], first_come_first_served=True)
    limits = allocate(s, sessions(3, 1, 2), None, NOW).limits
    assert limits == {3: 20.0, 1: 6.0, 2: 6.0}


def test_fair_rotation_gives_a_long_paused_session_its_turn():
    s = site([ChargerSpec(i, THREE) for i in (1, 2, 3)], limit_a=12.0)
    running = [
        SessionState(1, NOW - timedelta(hours=2), running_since=NOW - timedelta(hours=2)),
        SessionState(2, NOW - timedelta(hours=1), running_since=NOW - timedelta(hours=1)),
        SessionState(3, NOW - timedelta(minutes=5), paused_since=NOW - timedelta(minutes=5)),
    ]
    assert allocate(s, running, None, NOW).limits == {1: 6.0, 2: 6.0, 3: 0.0}
    later = NOW + ROTATION
    # Session 3 waited long enough: it runs, the longest-running session (1) waits.
    assert allocate(s, running, None, later).limits == {1: 0.0, 2: 6.0, 3: 6.0}


def test_chargers_out_of_the_sharing_are_set_aside_first():
    s = site([ChargerSpec(i, THREE) for i in (1, 2, 3)])
    disobeying = SessionState(
        1, NOW, draw_a=(16.0, 16.0, 16.0), excluded="non_compliant", fixed_a=8
    )
    result = allocate(s, [disobeying, *sessions(2, 3)], None, NOW)
    assert result.reserved == {1: 16.0}
    assert result.limits == {2: 8.0, 3: 8.0}
    rejecting = SessionState(1, NOW, excluded="rejects", fixed_a=10.0)
    assert allocate(s, [rejecting, *sessions(2, 3)], None, NOW).limits == {2: 11.0, 3: 11.0}


def test_a_single_phase_connection_counts_every_charger_on_it():
    s = site([ChargerSpec(1, (0,)), ChargerSpec(2, (0,))], phases=1, limit_a=40.0)
    measured = grid([230.0 * 10, None, None])
    assert allocate(s, sessions(1, 2), measured, NOW).limits == {1: 15.0, 2: 15.0}


# --- property: whatever the site, the sums hold ------------------------------------------------
PHASE_SETS = st.sampled_from([THREE, (0,), (1,), (2,)])


@st.composite
def scenarios(draw):
    n_circuits = draw(st.integers(0, 3))
    circuits = []
    for cid in range(100, 100 + n_circuits):
        parent = draw(st.sampled_from([None, *[c.id for c in circuits]]))
        circuits.append(CircuitSpec(cid, draw(st.floats(6, 80)), parent))
    chargers = []
    for i in range(1, draw(st.integers(1, 10)) + 1):
        low = draw(st.integers(60, 160)) / 10  # the model keeps one decimal
        chargers.append(
            ChargerSpec(
                i,
                draw(PHASE_SETS),
                min_a=low,
                max_a=draw(st.integers(int(low * 10), 630)) / 10,
                circuit_id=draw(st.sampled_from([None, *[c.id for c in circuits]])),
            )
        )
    spec = site(
        chargers,
        limit_a=draw(st.floats(10, 200)),
        margin_a=draw(st.floats(0, 5)),
        circuits=tuple(circuits),
        first_come_first_served=draw(st.booleans()),
        solar=draw(st.booleans()),
        solar_minimum=draw(st.booleans()),
    )
    active = draw(st.lists(st.sampled_from([c.id for c in chargers]), unique=True))
    states = [
        SessionState(
            i,
            NOW - timedelta(minutes=draw(st.integers(0, 300))),
            paused_since=draw(st.sampled_from([None, NOW - timedelta(minutes=20)])),
        )
        for i in active
    ]
    building = draw(st.lists(st.floats(-20, 40), min_size=3, max_size=3))
    measurement = draw(st.sampled_from([None, grid([b * 230.0 for b in building])]))
    return spec, states, measurement


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_no_phase_or_circuit_ever_exceeds_its_limit(scenario):
    spec, states, measurement = scenario
    result = allocate(spec, states, measurement, NOW)
    by_id = {c.id: c for c in spec.chargers}
    for cid, limit in result.limits.items():
        assert limit == 0 or by_id[cid].min_a - 1e-9 <= limit <= by_id[cid].max_a + 1e-9
    building = list(result.building_a) + [0.0] * 3
    for p in spec.site_phases:
        on_phase = sum(v for cid, v in result.limits.items() if p in by_id[cid].phases)
        capacity = spec.limit_a - spec.margin_a - building[p]
        assert on_phase <= max(capacity, 0) + 1e-6
    for circuit in spec.circuits:
        for p in spec.site_phases:
            members = [
                cid
                for cid in result.limits
                if p in by_id[cid].phases and _under(spec, by_id[cid].circuit_id, circuit.id)
            ]
            assert sum(result.limits[c] for c in members) <= circuit.limit_a - spec.margin_a + 1e-6
    if spec.solar and not spec.solar_minimum and result.solar_budget_w is not None:
        used = sum(v * 230.0 * len(by_id[cid].phases) for cid, v in result.limits.items())
        assert used <= result.solar_budget_w + 1e-6


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_the_failsafe_limits_hold_with_every_charger_at_once(scenario):
    spec, _, _ = scenario
    safe = failsafe_limits(spec)
    by_id = {c.id: c for c in spec.chargers}
    for p in spec.site_phases:
        assert (
            sum(v for cid, v in safe.items() if p in by_id[cid].phases)
            <= max(spec.limit_a - spec.margin_a, 0) + 1e-6
        )
    for circuit in spec.circuits:
        for p in spec.site_phases:
            total = sum(
                v
                for cid, v in safe.items()
                if p in by_id[cid].phases and _under(spec, by_id[cid].circuit_id, circuit.id)
            )
            assert total <= circuit.limit_a - spec.margin_a + 1e-6


def _under(spec, circuit_id, ancestor):
    parents = {c.id: c.parent_id for c in spec.circuits}
    while circuit_id is not None:
        if circuit_id == ancestor:
            return True
        circuit_id = parents[circuit_id]
    return False


# --- several outlets on one charger ------------------------------------------------------------
def outlet_sessions(charger_id, *outlets, **fields):
    return [
        SessionState(
            charger_id=charger_id,
            outlet=o,
            started_at=NOW - timedelta(minutes=60 - n),
            **fields,
        )
        for n, o in enumerate(outlets)
    ]


def test_two_sessions_on_one_charger_each_get_an_outlet_limit_within_its_maximum():
    twin = ChargerSpec(1, THREE, max_a=32.0, outlets=2)
    result = allocate(site([twin], limit_a=63.0), outlet_sessions(1, 1, 2), None, NOW)
    assert result.outlet_limits == {(1, 1): 16.0, (1, 2): 16.0}
    assert result.limits == {1: 32.0}  # the charger's own maximum caps the sum


def test_outlets_share_the_site_with_the_other_chargers_and_pause_rather_than_go_below_6_a():
    twin = ChargerSpec(1, THREE, max_a=32.0, outlets=2)
    single = ChargerSpec(2, THREE, max_a=32.0)
    result = allocate(
        site([twin, single], limit_a=16.0),
        [*outlet_sessions(1, 1, 2), *sessions(2, minutes_ago=10)],
        None,
        NOW,
    )
    # 16 A for three sessions: two at 8 A, the longest-running one paused.
    assert sorted(result.outlet_limits.values()) == [0.0, 8.0, 8.0]
    assert result.outlet_limits[(1, 1)] == 0.0


def test_a_charger_out_of_the_sharing_is_reserved_once_for_all_its_outlets():
    twin = ChargerSpec(1, THREE, max_a=32.0, outlets=2)
    single = ChargerSpec(2, THREE, max_a=32.0)
    rogue = outlet_sessions(1, 1, 2, excluded="non_compliant", fixed_a=5.0)
    rogue = [
        SessionState(**{**s.__dict__, "draw_a": (6.0, 6.0, 6.0)})  # 12 A together
        for s in rogue
    ]
    result = allocate(site([twin, single]), [*rogue, *sessions(2)], None, NOW)
    assert result.reserved == {1: 12.0}  # what they draw together, above their 2 × 5 A
    assert result.outlet_limits == {(2, 1): 20.0}
    # Two outlets set aside with their own last limits (8 A and 10 A) count for both.
    quiet = [
        SessionState(**{**s.__dict__, "fixed_a": fixed, "draw_a": (1.0, 1.0, 1.0)})
        for s, fixed in zip(rogue, (8.0, 10.0), strict=True)
    ]
    assert allocate(site([twin, single]), [*quiet, *sessions(2)], None, NOW).reserved == {1: 18.0}
    # A charger refusing profiles is counted at its maximum once, not once per outlet.
    refusing = outlet_sessions(1, 1, 2, excluded="rejects", fixed_a=32.0)
    result = allocate(site([twin, single], limit_a=40.0), [*refusing, *sessions(2)], None, NOW)
    assert result.reserved == {1: 32.0}
    assert result.outlet_limits == {(2, 1): 8.0}


def test_one_non_compliant_outlet_leaves_the_sharing_alone_and_its_neighbour_is_lowered():
    """Outlet 2 of a twin charger draws 20 A for its 8 A: it alone is set aside at what it
    draws; outlet 1 of the same charger stays in the sharing with the other charger, and the
    charger's own maximum counts the rogue outlet too."""
    twin = ChargerSpec(1, THREE, max_a=32.0, outlets=2)
    single = ChargerSpec(2, THREE, max_a=32.0)
    good, rogue = outlet_sessions(1, 1, 2)
    rogue = SessionState(
        **{
            **rogue.__dict__,
            "draw_a": (20.0, 20.0, 20.0),
            "excluded": "non_compliant",
            "fixed_a": 8.0,
        }
    )
    result = allocate(site([twin, single]), [good, rogue, *sessions(2)], None, NOW)
    assert result.reserved == {1: 20.0}
    assert result.outlet_limits == {(1, 1): 6.0, (2, 1): 6.0}
    assert result.limits == {1: 6.0, 2: 6.0}
    # On a roomy site the twin's own 32 A maximum is what holds outlet 1 back.
    result = allocate(site([twin, single], limit_a=100.0), [good, rogue, *sessions(2)], None, NOW)
    assert result.outlet_limits == {(1, 1): 12.0, (2, 1): 32.0}


def test_the_failsafe_counts_outlets_not_chargers():
    """A TxDefaultProfile on connector 0 applies to every outlet on its own: 32 A over one
    twin charger and one single one is 10.6 A per outlet, and the twin's own 20 A maximum
    gives each of its outlets at most 10 A."""
    twin = ChargerSpec(1, THREE, max_a=20.0, outlets=2)
    single = ChargerSpec(2, THREE, max_a=32.0)
    assert failsafe_limits(site([twin, single])) == {1: 10.0, 2: 10.6}
    assert failsafe_limits(site([ChargerSpec(1, THREE, outlets=2)])) == {1: 16.0}
