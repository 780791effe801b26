"""Charging profiles over loopback: the controller writes command rows, a real gateway holding
simulated 1.6 and 2.0.1 chargers claims and sends them, the chargers apply them (the simulator
computes the limit in force) and their answers are recorded on the rows; a charger that refuses
is flagged by the controller."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chargers.models import ChargerCommand
from power.controller import Controller
from power.models import ChargerPower
from simulator.fleet import connect_charger

from ..ocpp_gateway.test_command_bus import configured
from ..ocpp_gateway.test_gateway import run, until
from .conftest import make_managed_charger, make_site_power, start_session

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GATEWAY_HEARTBEAT_INTERVAL = 120
    settings.GATEWAY_METER_SAMPLE_INTERVAL = 30


def statuses(charger):
    return list(
        ChargerCommand.objects.filter(charger=charger, action="SetChargingProfile")
        .order_by("pk")
        .values_list("status", flat=True)
    )


async def answered(charger, count, timeout=30.0):
    async with asyncio.timeout(timeout):
        while True:
            found = await sync_to_async(statuses)(charger)
            if len(found) >= count and all(s not in ("pending", "sent") for s in found):
                return found
            await asyncio.sleep(0.05)


def test_16_and_201_chargers_get_their_profiles_and_answers_are_recorded(site):
    make_site_power(site)
    old = make_managed_charger(site, "PWR-16", version="1.6")
    new = make_managed_charger(site, "PWR-201", version="2.0.1", max_a=12)
    settled_16, settled_201 = configured(old.charger, "1.6"), configured(new.charger, "2.0.1")
    start_session(old.charger, "7001")
    start_session(new.charger, "tx-201-a")
    controller = Controller()

    async def scenario(gw):
        async with (
            connect_charger(gw.url, "PWR-16", "1.6", configuration=settled_16) as a,
            connect_charger(gw.url, "PWR-201", "2.0.1", configuration=settled_201) as b,
        ):
            await a.boot()
            await b.boot()
            await sync_to_async(controller.cycle)()
            await until(
                lambda: a.count("SetChargingProfile") == 3 and b.count("SetChargingProfile") == 3
            )
            await answered(old.charger, 3)
            await answered(new.charger, 3)
            # A TxProfile above the station's own maximum (left over from elsewhere) is
            # capped by the max profile it holds.
            b.profiles[999] = {
                **b.profiles[100 + 1],
                "stack_level": 5,
                "charging_schedule": [
                    {"charging_rate_unit": "A", "charging_schedule_period": [{"limit": 40.0}]}
                ],
            }
            return (
                a.limit_a("7001"),
                a.limit_a(None),
                b.limit_a("tx-201-a"),
                [p for _, p in a.received if "cs_charging_profiles" in p],
                [p for _, p in b.received if "charging_profile" in p],
            )

    limit_16, default_16, limit_201, sent_16, sent_201 = run(scenario, command_poll_seconds=0.05)
    # Two sessions on 32 A: the 2.0.1 station at its own 12 A maximum, the 1.6 charger the
    # 20 A left; the stray 40 A TxProfile is held to 12 A by the station's max profile. The
    # failsafe is 32 A ÷ 2 chargers.
    assert limit_16 == 20.0 and limit_201 == 12.0
    assert default_16 == 20.0  # the limit in force without naming the transaction
    (failsafe_16,) = [
        p["cs_charging_profiles"]
        for p in sent_16
        if p["cs_charging_profiles"]["charging_profile_purpose"] == "TxDefaultProfile"
    ]
    assert failsafe_16["charging_schedule"]["charging_schedule_period"][0]["limit"] == 16.0
    purposes_16 = {p["cs_charging_profiles"]["charging_profile_purpose"] for p in sent_16}
    assert purposes_16 == {"TxDefaultProfile", "ChargePointMaxProfile", "TxProfile"}
    by_purpose = {p["charging_profile"]["charging_profile_purpose"]: p for p in sent_201}
    tx = by_purpose["TxProfile"]
    assert tx["evse_id"] == 1 and tx["charging_profile"]["transaction_id"] == "tx-201-a"
    ceiling = by_purpose["ChargingStationMaxProfile"]
    assert ceiling["evse_id"] == 0
    assert ceiling["charging_profile"]["charging_schedule"][0]["charging_schedule_period"] == [
        {"start_period": 0, "limit": 12.0, "number_phases": 3}
    ]
    assert statuses(old.charger) == statuses(new.charger) == ["accepted"] * 3
    row = ChargerCommand.objects.filter(charger=new.charger).last()
    assert row.response == {"status": "Accepted"}


def test_a_charger_refusing_profiles_is_flagged(site):
    make_site_power(site)
    state = make_managed_charger(site, "PWR-NO", version="1.6")
    settled = configured(state.charger, "1.6")
    start_session(state.charger, "8001")
    controller = Controller()

    async def scenario(gw):
        async with connect_charger(gw.url, "PWR-NO", "1.6", configuration=settled) as charger:
            charger.reject_profiles = True
            await charger.boot()
            await sync_to_async(controller.cycle)()
            await answered(state.charger, 3)
            await sync_to_async(controller.cycle)()

    run(scenario, command_poll_seconds=0.05)
    assert statuses(state.charger)[:3] == ["rejected"] * 3
    assert ChargerPower.objects.get(pk=state.pk).rejected_at is not None


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_charger_refusing_its_max_profile_is_flagged(site, version):
    """A charger that takes the failsafe and the session's limit but refuses the max profile
    (ChargePointMaxProfile / ChargingStationMaxProfile unsupported) is flagged like any
    refusal: the answers are recorded per command, the controller reads them per profile."""
    make_site_power(site)
    state = make_managed_charger(site, f"PWR-NOMAX-{version}", version=version)
    settled = configured(state.charger, version)
    start_session(state.charger, "8101")
    controller = Controller()

    async def scenario(gw):
        async with connect_charger(
            gw.url, state.charger.identity, version, configuration=settled
        ) as charger:
            charger.reject_purposes = {"ChargePointMaxProfile", "ChargingStationMaxProfile"}
            await charger.boot()
            await sync_to_async(controller.cycle)()
            await answered(state.charger, 3)
            await sync_to_async(controller.cycle)()

    run(scenario, command_poll_seconds=0.05)
    rows = ChargerCommand.objects.filter(charger=state.charger, action="SetChargingProfile")
    answers = {
        (r.payload.get("csChargingProfiles") or r.payload.get("chargingProfile"))[
            "chargingProfilePurpose"
        ]: r.status
        for r in rows
    }
    assert answers == {
        "TxDefaultProfile": "accepted",
        "TxProfile": "accepted",
        ("ChargePointMaxProfile" if version == "1.6" else "ChargingStationMaxProfile"): (
            "rejected"
        ),
    }
    assert ChargerPower.objects.get(pk=state.pk).rejected_at is not None
