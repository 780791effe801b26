"""The controller's cycle against the database: failsafe profiles in advance, dynamic limits
through the command path with hysteresis, refresh before expiry, obedience, refusals, a silent
meter, and OCPP payloads the gateway accepts for both versions."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from chargers.models import ChargerCommand
from meters.readings import NewReading, record_readings
from ocpp_gateway import validation
from power import charging_profiles as cp
from power.controller import Controller
from power.models import ChargerPower

from .. import builders
from .conftest import make_managed_charger, sample_current, start_session

pytestmark = [pytest.mark.django_db, pytest.mark.community_scope("managed")]


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.POWER_HYSTERESIS_A = 1.0
    settings.POWER_MIN_INTERVAL_SECONDS = 10
    settings.POWER_PROFILE_VALIDITY_SECONDS = 120
    settings.POWER_OBEDIENCE_SECONDS = 60
    settings.METER_SILENT_SECONDS = 60


def commands(**filters):
    return list(ChargerCommand.objects.filter(action=cp.SET, **filters).order_by("pk"))


def purpose(row):
    return (row.payload.get("csChargingProfiles") or row.payload.get("chargingProfile"))[
        "chargingProfilePurpose"
    ]


def dynamic(charger):
    return [c for c in commands(charger=charger) if purpose(c) == "TxProfile"]


def maxima(**filters):
    return [c for c in commands(**filters) if purpose(c).endswith("MaxProfile")]


def answer(status="accepted"):
    ChargerCommand.objects.filter(status__in=["pending", "sent"]).update(status=status)


def test_first_cycle_sends_failsafe_to_all_and_limits_to_sessions(managed):
    Controller().cycle()
    rows = commands()
    assert all(r.from_portal and r.asked_by is None and r.status == "pending" for r in rows)
    defaults = [r for r in rows if purpose(r) == "TxDefaultProfile"]
    assert len(defaults) == 3  # every managed charger, in session or not
    assert all(r.payload["connectorId"] == 0 for r in defaults)
    assert {cp.profile_limit(r.payload) for r in defaults} == {10.6}  # 32 A ÷ 3
    for r in rows:
        validation.validate("1.6", cp.SET, r.payload)
    one, two, three = (p.charger for p in managed["chargers"])
    assert [cp.profile_limit(c.payload) for c in dynamic(one) + dynamic(two)] == [16.0, 16.0]
    assert dynamic(three) == []
    profile = dynamic(one)[0].payload["csChargingProfiles"]
    assert profile["transactionId"] == 100 and profile["stackLevel"] == 1
    assert profile["validTo"] and profile["chargingProfileKind"] == "Relative"


def test_nothing_is_sent_when_nothing_changed(managed):
    controller = Controller()
    controller.cycle()
    answer()
    before = len(commands())
    controller.cycle()
    controller.cycle()
    assert len(commands()) == before


def test_a_building_load_jump_lowers_at_once_and_a_drop_raises_after_the_interval(managed):
    site = managed["power"].site
    meter = builders.make_meter(site)
    controller = Controller()
    one = managed["chargers"][0].charger

    def grid(amperes):
        record_readings(
            [
                NewReading(
                    meter_id=meter.pk,
                    at=timezone.now(),
                    power_w_l1=amperes * 230.0,
                    power_w_l2=amperes * 230.0,
                    power_w_l3=amperes * 230.0,
                )
            ]
        )

    grid(10)  # 10 A of building, chargers not drawing yet
    controller.cycle()
    answer()
    assert cp.profile_limit(dynamic(one)[-1].payload) == 11.0
    grid(20)
    controller.cycle()
    assert cp.profile_limit(dynamic(one)[-1].payload) == 6.0  # lowered at once
    answer()
    grid(10)
    controller.cycle()
    assert cp.profile_limit(dynamic(one)[-1].payload) == 6.0  # up: not before the interval
    with time_machine.travel(timezone.now() + timedelta(seconds=11)):
        grid(10)
        controller.cycle()
    assert cp.profile_limit(dynamic(one)[-1].payload) == 11.0


def test_a_limit_is_refreshed_before_it_expires(managed):
    controller = Controller()
    controller.cycle()
    answer()
    one = managed["chargers"][0].charger
    with time_machine.travel(timezone.now() + timedelta(seconds=30)):
        controller.cycle()
    assert len(dynamic(one)) == 1
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        controller.cycle()
    assert len(dynamic(one)) == 2
    assert cp.profile_limit(dynamic(one)[-1].payload) == 16.0


def test_a_silent_meter_applies_the_failsafe_limits(managed):
    meter = builders.make_meter(managed["power"].site)
    old = timezone.now() - timedelta(minutes=5)
    record_readings(
        [NewReading(meter_id=meter.pk, at=old, power_w_l1=0, power_w_l2=0, power_w_l3=0)]
    )
    Controller().cycle()
    one = managed["chargers"][0].charger
    assert cp.profile_limit(dynamic(one)[-1].payload) == 10.6


def test_a_charger_over_its_limit_becomes_non_compliant_and_the_others_are_lowered(managed):
    controller = Controller()
    controller.cycle()
    answer()
    one, two, three = managed["chargers"]
    third = start_session(three.charger, "300")
    start = timezone.now()
    with time_machine.travel(start + timedelta(seconds=20)):
        controller.cycle()  # three sessions: 10.6 A each
        answer()
    for seconds in (40, 70, 105):
        with time_machine.travel(start + timedelta(seconds=seconds)):
            sample_current(managed["sessions"][0], 16.0)  # told 10.6, keeps drawing 16
            sample_current(managed["sessions"][1], 10.0)
            sample_current(third, 10.0)
            controller.cycle()
            answer()
    one.refresh_from_db()
    assert one.over_since is not None and one.non_compliant_since is not None
    # Counted at its 16 A: the two others share 16 A.
    assert cp.profile_limit(dynamic(two.charger)[-1].payload) == 8.0
    assert cp.profile_limit(dynamic(three.charger)[-1].payload) == 8.0
    with time_machine.travel(start + timedelta(seconds=140)):
        sample_current(managed["sessions"][0], 10.0)
        controller.cycle()
    one.refresh_from_db()
    assert one.non_compliant_since is None  # obeys again


def test_a_charger_refusing_profiles_is_flagged_and_set_aside_at_its_maximum(managed):
    controller = Controller()
    controller.cycle()
    one, two, _ = managed["chargers"]
    ChargerCommand.objects.filter(charger=one.charger).update(status="rejected")
    answer()
    ChargerPower.objects.filter(pk=one.pk).update(max_a=20)
    with time_machine.travel(timezone.now() + timedelta(seconds=11)):
        controller.cycle()
    one.refresh_from_db()
    assert one.rejected_at is not None
    assert cp.profile_limit(dynamic(two.charger)[-1].payload) == 12.0  # 32 − its 20 A


def test_2_0_1_payloads_validate_and_name_the_transaction(managed, site):
    station = make_managed_charger(site, "PWR-201", version="2.0.1")
    start_session(station.charger, "a1b2-c3")
    Controller().cycle()
    rows = commands(charger=station.charger)
    for r in rows:
        validation.validate("2.0.1", cp.SET, r.payload)
    tx = dynamic(station.charger)[0].payload
    assert tx["evseId"] == 1 and tx["chargingProfile"]["transactionId"] == "a1b2-c3"
    default = [r for r in rows if purpose(r) == "TxDefaultProfile"][0].payload["chargingProfile"]
    assert default["chargingProfilePurpose"] == "TxDefaultProfile" and "validTo" not in default


def test_a_charger_taking_watts_only_gets_watts(managed):
    one = managed["chargers"][0].charger
    one.configuration = {"ChargingScheduleAllowedChargingRateUnit": "Power"}
    one.save(update_fields=["configuration"])
    Controller().cycle()
    schedule = dynamic(one)[0].payload["csChargingProfiles"]["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "W"
    assert schedule["chargingSchedulePeriod"][0]["limit"] == 16.0 * 230 * 3


def test_a_charger_with_one_stack_level_gets_its_limits_at_level_0(managed):
    """ChargeProfileMaxStackLevel read back at boot: a charger that has only level 0 gets its
    TxProfiles there (a TxProfile still overrules the TxDefaultProfile); the others level 1."""
    one, two = (p.charger for p in managed["chargers"][:2])
    one.configuration = {"ChargeProfileMaxStackLevel": "0"}
    one.save(update_fields=["configuration"])
    Controller().cycle()
    assert dynamic(one)[0].payload["csChargingProfiles"]["stackLevel"] == 0
    assert dynamic(two)[0].payload["csChargingProfiles"]["stackLevel"] == 1


def test_an_unmanaged_site_gets_no_profile(managed):
    power = managed["power"]
    power.load_balancing = False
    power.save()
    Controller().cycle()
    assert commands() == []


def test_history_points_are_recorded(managed):
    from power.models import PowerSample

    Controller().cycle()
    point = PowerSample.objects.get()
    assert point.limit_w == 32 * 230 * 3 and point.failsafe is False


def test_measured_currents_are_mapped_to_the_site_phases_through_the_wiring(managed, site):
    from chargers.models import MeterSample
    from power.controller import load_sites

    rotated = make_managed_charger(site, "PWR-ROT", wiring="l2l3l1")
    session = start_session(rotated.charger, "900")
    now = timezone.now()
    for phase, amperes in (("L1", 10), ("L2", 5), ("L3", 0)):
        MeterSample.objects.create(
            community=site.community,
            session=session,
            timestamp=now,
            measurand="Current.Import",
            phase=phase,
            value=amperes,
            unit="A",
        )
    single = make_managed_charger(site, "PWR-L3", wiring="l3")
    other = start_session(single.charger, "901")
    MeterSample.objects.create(
        community=site.community,
        session=other,
        timestamp=now,
        measurand="Power.Active.Import",
        value=2300,
        unit="W",
    )
    (inputs,) = load_sites(now)
    # Its L1 is the site's L2, its L2 the site's L3, its L3 the site's L1.
    assert inputs.draws[rotated.charger_id][0] == (0.0, 10.0, 5.0)
    # Power only, single-phase on L3: 2,300 W / 230 V on the site's L3.
    assert inputs.draws[single.charger_id][0] == (None, None, 10.0)
    assert inputs.spec.charger(single.charger_id).phases == (2,)


@pytest.mark.community_scope("community")
def test_a_charger_with_two_sessions_gets_a_profile_per_connector_judged_per_connector(
    community, site
):
    """Two cars on one two-connector charger (32 A maximum) on a 3 × 63 A site: a TxProfile
    per connector with its own transaction and 16 A, the failsafe per connector (32 ÷ 2).
    Connector 2 drawing 30 A while connector 1 draws nothing keeps the charger under its
    32 A, yet connector 2 exceeds its own 16 A: the charger is non-compliant."""
    from .conftest import make_site_power

    make_site_power(site, limit_a=63)
    state = make_managed_charger(site, "TWIN-1", max_a=32)
    builders.make_connector(state.charger, 2)
    first = start_session(state.charger, "501")
    second = start_session(state.charger, "502", started_minutes_ago=20)
    second.connector = state.charger.connectors.get(connector_id=2)
    second.save()
    controller = Controller()
    start = timezone.now()
    with time_machine.travel(start):
        controller.cycle()
        answer()
    failsafe = [c for c in commands(charger=state.charger) if purpose(c) == "TxDefaultProfile"]
    assert [cp.profile_limit(c.payload) for c in failsafe] == [16.0]
    profiles = {
        c.payload["connectorId"]: c.payload["csChargingProfiles"] for c in dynamic(state.charger)
    }
    assert {
        k: (p["transactionId"], cp.profile_limit({"csChargingProfiles": p}))
        for k, p in profiles.items()
    } == {1: (501, 16.0), 2: (502, 16.0)}
    state.refresh_from_db()
    assert state.limit_a == 32.0 and state.outlet_limits == {"1": 16.0, "2": 16.0}
    for seconds in (30, 60, 95):
        with time_machine.travel(start + timedelta(seconds=seconds)):
            sample_current(first, 0.0)
            sample_current(second, 30.0)
            controller.cycle()
            answer()
    state.refresh_from_db()
    assert state.non_compliant_since is not None
    # Nothing changed, nothing is sent again per connector.
    sent = len(dynamic(state.charger))
    with time_machine.travel(start + timedelta(seconds=96)):
        controller.cycle()
    assert len(dynamic(state.charger)) == sent


# --- the charger's own maximum as a max profile ------------------------------------------------
def test_the_chargers_maximum_goes_as_a_max_profile_in_advance_and_again_when_it_changes(
    managed, manager
):
    """Every connected managed charger gets its own maximum as a ChargePointMaxProfile on
    connector 0 (Absolute from now, stack level 0, no expiry), in session or not; nothing again
    while nothing changed; again when its maximum is changed in the portal, after a boot and
    after a reconnection."""
    from power import services

    controller = Controller()
    start = timezone.now()
    with time_machine.travel(start):
        controller.cycle()
    rows = maxima()
    assert len(rows) == 3
    for row in rows:
        validation.validate("1.6", cp.SET, row.payload)
        assert row.payload["connectorId"] == 0
        profile = row.payload["csChargingProfiles"]
        assert profile["chargingProfilePurpose"] == "ChargePointMaxProfile"
        assert profile["chargingProfileKind"] == "Absolute" and "validTo" not in profile
        assert profile["stackLevel"] == 0 and profile["chargingProfileId"] == cp.MAX_PROFILE_ID
        assert profile["chargingSchedule"]["startSchedule"] == cp.iso(start)
        assert cp.profile_limit(row.payload) == 32.0
    answer()
    with time_machine.travel(start + timedelta(seconds=5)):
        controller.cycle()
    assert len(maxima()) == 3

    one, two, three = managed["chargers"]
    services.configure_charger(
        charger=one.charger, actor=manager, wiring=one.wiring, min_a=one.min_a, max_a=20
    )
    with time_machine.travel(start + timedelta(seconds=10)):
        controller.cycle()
    again = maxima(charger=one.charger)
    assert [cp.profile_limit(r.payload) for r in again] == [32.0, 20.0]
    answer()
    one.refresh_from_db()
    assert one.max_profile_a == 20.0

    # A reboot (BootNotification recorded) and a reconnection both send it again.
    two.charger.last_boot_at = start + timedelta(seconds=12)
    two.charger.save(update_fields=["last_boot_at"])
    three.charger.connected_since = start + timedelta(seconds=12)
    three.charger.save(update_fields=["connected_since"])
    with time_machine.travel(start + timedelta(seconds=15)):
        controller.cycle()
    assert len(maxima(charger=two.charger)) == len(maxima(charger=three.charger)) == 2
    assert len(maxima(charger=one.charger)) == 2
    answer()
    with time_machine.travel(start + timedelta(seconds=20)):
        controller.cycle()
    assert len(maxima()) == 6


def test_a_2_0_1_station_gets_a_charging_station_max_profile_in_its_unit(managed, site):
    station = make_managed_charger(site, "PWR-MAX-201", version="2.0.1", max_a=24)
    station.charger.configuration = {
        "SmartChargingCtrlr/RateUnit": "W",
        "SmartChargingCtrlr/ProfileStackLevel": "0",
    }
    station.charger.save(update_fields=["configuration"])
    Controller().cycle()
    (row,) = maxima(charger=station.charger)
    validation.validate("2.0.1", cp.SET, row.payload)
    assert row.payload["evseId"] == 0
    profile = row.payload["chargingProfile"]
    assert profile["chargingProfilePurpose"] == "ChargingStationMaxProfile"
    assert profile["chargingProfileKind"] == "Absolute"  # K01.FR.38: never Relative
    assert profile["stackLevel"] == 0 and profile["id"] == cp.MAX_PROFILE_ID
    (schedule,) = profile["chargingSchedule"]
    assert schedule["startSchedule"] and schedule["chargingRateUnit"] == "W"
    assert schedule["chargingSchedulePeriod"][0]["limit"] == 24 * 230 * 3


def test_a_charger_refusing_only_its_max_profile_is_flagged(managed):
    """Answers are judged per profile: the failsafe and the session's limit accepted after the
    max profile was refused (same cycle) still leave the charger flagged, and the max profile
    is offered again with the failsafe after REJECTED_RETRY."""
    controller = Controller()
    start = timezone.now()
    with time_machine.travel(start):
        controller.cycle()
    one, two, _ = managed["chargers"]
    (refused,) = maxima(charger=one.charger)
    ChargerCommand.objects.filter(pk=refused.pk).update(status="rejected", updated_at=start)
    ChargerCommand.objects.filter(charger=one.charger).exclude(pk=refused.pk).update(
        status="accepted", updated_at=start + timedelta(seconds=1)
    )
    answer()
    with time_machine.travel(start + timedelta(seconds=11)):
        controller.cycle()
    one.refresh_from_db()
    assert one.rejected_at is not None
    assert cp.profile_limit(dynamic(two.charger)[-1].payload) == 0.0  # 32 − its 32 A: paused
    with time_machine.travel(start + timedelta(minutes=11)):
        controller.cycle()
    assert len(maxima(charger=one.charger)) == 2
    # Accepted this time: back in the sharing.
    ChargerCommand.objects.filter(charger=one.charger, status="pending").update(
        status="accepted", updated_at=start + timedelta(minutes=11, seconds=1)
    )
    with time_machine.travel(start + timedelta(minutes=11, seconds=5)):
        controller.cycle()
    one.refresh_from_db()
    assert one.rejected_at is None


# --- obedience per outlet ---------------------------------------------------------------------
@pytest.mark.community_scope("community")
def test_a_non_compliant_outlet_leaves_the_sharing_alone_and_its_neighbour_keeps_being_steered(
    community, site
):
    """Two cars on one two-connector charger (32 A maximum) on 3 × 63 A: 16 A each. Connector 2
    draws 20 A for longer than POWER_OBEDIENCE_SECONDS: connector 2 alone is non-compliant —
    counted at what it draws, its profile left alone — while connector 1 stays in the sharing
    and is lowered to what the charger's maximum leaves (32 − 20 = 12 A). Once connector 2
    draws within its limit it rejoins."""
    from .conftest import make_site_power

    make_site_power(site, limit_a=63)
    state = make_managed_charger(site, "TWIN-2", max_a=32)
    builders.make_connector(state.charger, 2)
    first = start_session(state.charger, "601")
    second = start_session(state.charger, "602", started_minutes_ago=20)
    second.connector = state.charger.connectors.get(connector_id=2)
    second.save()

    def sent(connector):
        return [
            cp.profile_limit(c.payload)
            for c in dynamic(state.charger)
            if c.payload["connectorId"] == connector
        ]

    controller = Controller()
    start = timezone.now()
    with time_machine.travel(start):
        controller.cycle()
        answer()
    assert sent(1) == sent(2) == [16.0]
    for seconds in (30, 60, 95):
        before = len(sent(2))
        with time_machine.travel(start + timedelta(seconds=seconds)):
            sample_current(first, 16.0)
            sample_current(second, 20.0)
            controller.cycle()
            answer()
    state.refresh_from_db()
    assert set(state.outlet_obedience) == {"2"}
    assert state.outlet_obedience["2"]["since"] and state.outlet_obedience["2"]["draw"] == 20.0
    assert state.non_compliant_since is not None
    assert sent(1)[-1] == 12.0  # steered: the charger's 32 A less connector 2's 20 A
    assert len(sent(2)) == before  # left alone once non-compliant: it keeps its last limit
    assert state.outlet_limits == {"1": 12.0, "2": 16.0}
    (line,) = state.disobeying_outlets()
    assert (line.outlet, line.draw_a, line.limit_a, line.several) == ("2", 20.0, 16.0, True)
    with time_machine.travel(start + timedelta(seconds=130)):
        sample_current(first, 12.0)
        sample_current(second, 12.0)
        controller.cycle()
        answer()
    state.refresh_from_db()
    assert state.outlet_obedience == {} and state.non_compliant_since is None
    assert sent(1)[-1] == 16.0 and sent(2)[-1] == 16.0  # both back in the sharing
