"""Power management end to end: three simulated chargers on a 3 × 32 A site, a real worker,
gateway, `run_meters` reading the grid meter — an MQTT meter on the machine's Mosquitto, or a
Modbus TCP meter (a pymodbus server serving an Eastron SDM630's registers, updated in place):
the test feeds it the building load plus what the chargers draw, as a real meter at the
connection point would — and a Modbus TCP solar meter (another SDM630), and `run_power`. The building load jumps → within 10 s the limits the chargers apply keep the
site under its limit; the meter goes silent → the failsafe limits apply; one charger ignores its
profile → it is flagged non-compliant and the others are lowered."""

import asyncio
import contextlib
import json
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from chargers.models import ChargerCommand
from meters.models import Meter
from meters.readings import site_measurement
from power.models import ChargerPower
from simulator.fleet import connect_charger
from tests import builders
from tests.meters.servers import ModbusMeterServer

from .processes import Process, free_port, gateway, wait_for_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.community_scope("power_site")]

CARD = "PWR-E2E-CARD"
LIMIT_A = 32.0
IDENTITIES = ["PWR-E2E-1", "PWR-E2E-2", "PWR-E2E-3"]
SOLAR_W = {"power_w_l1": 800.0, "power_w_l2": 800.0, "power_w_l3": 800.0, "power_w_total": 2400.0}
FAST = {
    "POWER_CYCLE_SECONDS": "0.5",
    "POWER_OBEDIENCE_SECONDS": "3",
    "POWER_APPLY_SECONDS": "2",
    "POWER_MIN_INTERVAL_SECONDS": "1",
    "METER_SILENT_SECONDS": "4",
    "GATEWAY_COMMAND_POLL_SECONDS": "0.2",
}


@pytest.fixture(params=["mqtt", "modbus"])
def power_site(e2e_env, request):
    from tests.power.conftest import make_site_power

    community = builders.make_community(name="E2E Power", slug="e2e-power")
    builders.make_price(community)
    driver = builders.make_member(community).user
    builders.make_card(community, holder=driver, uid=CARD)
    site = builders.make_site(community, name="Warehouse")
    make_site_power(site, limit_a=LIMIT_A, margin_a=0)
    topic = f"power-{uuid.uuid4().hex[:10]}/grid"
    grid = None
    if request.param == "mqtt":
        builders.make_meter(
            site,
            kind=Meter.Kind.MQTT,
            config={
                "broker": "mqtt://127.0.0.1:1883",
                "topic": topic,
                "paths": {"power_w_l1": "l1", "power_w_l2": "l2", "power_w_l3": "l3"},
            },
        )
    else:
        # The connection point's SDM630 on Modbus TCP, read every second.
        grid = ModbusMeterServer("sdm630", {}, unit=1)
        builders.make_meter(
            site,
            kind=Meter.Kind.MODBUS,
            name="Grid SDM630",
            config={
                "host": "127.0.0.1",
                "port": grid.port,
                "unit": 1,
                "model": "sdm630",
                "interval": 1,
            },
        )
    # The roof's inverter behind an SDM630 on Modbus TCP: 2.4 kW of production.
    solar = ModbusMeterServer("sdm630", SOLAR_W, unit=2)
    builders.make_meter(
        site,
        kind=Meter.Kind.MODBUS,
        role=Meter.Role.SOLAR,
        config={
            "host": "127.0.0.1",
            "port": solar.port,
            "unit": 2,
            "model": "sdm630",
            "interval": 1,
        },
    )
    chargers = [builders.make_charger(community, site=site, identity=i) for i in IDENTITIES]
    for c in chargers:
        ChargerPower.objects.create(community=community, charger=c)
    yield {
        "community": community,
        "site": site,
        "topic": topic,
        "grid": grid,
        "chargers": chargers,
    }
    solar.close()
    if grid is not None:
        grid.close()


class Fleet:
    """The three chargers charging in an asyncio loop of their own, and the grid meter: every
    0.5 s it publishes (MQTT) or serves (Modbus) building load + what the cars draw, per phase;
    while `silent` the MQTT meter says nothing and the Modbus one is off the network."""

    def __init__(self, url: str, topic: str, grid: ModbusMeterServer | None = None):
        self.url, self.topic, self.grid = url, topic, grid
        self.chargers: dict[str, object] = {}
        self.building_a = 5.0
        self.silent = False
        self.stop = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.future = asyncio.run_coroutine_threadsafe(self._run(), self.loop)
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.mqtt.connect("127.0.0.1", 1883, 30)
        self.mqtt.loop_start()
        self.meter = threading.Thread(target=self._publish, daemon=True)
        self.meter.start()

    async def _one(self, identity: str) -> None:
        async with connect_charger(self.url, identity, "1.6", response_timeout=30) as cp:
            cp.car_max_a = 32.0
            self.chargers[identity] = cp
            await cp.boot()
            await cp.status(1, "Available")
            with contextlib.suppress(asyncio.CancelledError):
                await cp.charge(card=CARD, energy_wh=50_000, samples=10_000, interval=1.0)

    async def _run(self) -> None:
        tasks = [asyncio.create_task(self._one(i)) for i in IDENTITIES]
        await asyncio.gather(*tasks, return_exceptions=True)

    def draws(self) -> list[float]:
        return [cp.draw_a() or 0.0 for cp in self.chargers.values()]

    def limits(self) -> dict[str, float | None]:
        return {i: cp.limit_a() for i, cp in self.chargers.items()}

    def _publish(self) -> None:
        while not self.stop.is_set():
            amperes = self.building_a + sum(self.draws())
            load = {p: round(amperes * 230.0, 1) for p in ("l1", "l2", "l3")}
            if self.grid is not None:
                if self.silent and self.grid.server is not None:
                    self.grid.stop()
                elif not self.silent:
                    if self.grid.server is None:
                        self.grid.start()
                    # A real SDM630 gives currents too (the controller prefers them).
                    self.grid.update(
                        **{f"power_w_{p}": w for p, w in load.items()},
                        **{f"current_a_{p}": amperes for p in load},
                        power_w_total=sum(load.values()),
                    )
            elif not self.silent:
                self.mqtt.publish(self.topic, json.dumps(load))
            self.stop.wait(0.5)

    def close(self) -> None:
        self.stop.set()
        for task in asyncio.all_tasks(self.loop):
            self.loop.call_soon_threadsafe(task.cancel)
        with contextlib.suppress(Exception):
            self.future.result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.mqtt.loop_stop()
        self.mqtt.disconnect()


def started(env, name, args):
    return Process(name, [sys.executable, "manage.py", *args], env).start()


def test_limits_follow_the_building_failsafe_and_obedience(power_site, e2e_env, worker):
    env = {**e2e_env, **FAST}
    port = free_port()
    gw = gateway(env, port).start()
    meters = started(env, "run_meters", ["run_meters", "--reload", "0.5"])
    power = started(env, "run_power", ["run_power"])
    fleet = None
    try:
        wait_for_port(port, timeout=60)  # a busy shared machine starts it slowly
        fleet = Fleet(f"ws://127.0.0.1:{port}/ocpp/", power_site["topic"], power_site["grid"])

        def balanced(building):
            limits = fleet.limits()
            if len(limits) < 3 or any(v is None for v in limits.values()):
                return None
            # Only dynamic limits count (the failsafe alone is 10.6 A each).
            total = sum(limits.values())
            return limits if total + building <= LIMIT_A + 1e-6 and total > 0 else None

        # Steady: 5 A of building, 27 A shared by three sessions.
        steady = wait_until(
            lambda: (lim := balanced(5.0)) and all(v == 9.0 for v in lim.values()) and lim,
            timeout=90,
            what="the first limits",
        )
        assert sum(steady.values()) == 27.0

        # Each charger holds its own maximum as a ChargePointMaxProfile, its answer recorded.
        def maxima_accepted():
            rows = ChargerCommand.objects.filter(
                charger__identity__in=IDENTITIES, action="SetChargingProfile"
            ).values_list("charger__identity", "payload", "status")
            return {
                identity
                for identity, payload, status in rows
                if payload["csChargingProfiles"]["chargingProfilePurpose"]
                == "ChargePointMaxProfile"
                and status == "accepted"
            } == set(IDENTITIES)

        wait_until(maxima_accepted, timeout=30, what="the max profiles answered")
        assert all(
            any(
                p["charging_profile_purpose"] == "ChargePointMaxProfile"
                for p in c.profiles.values()
            )
            for c in fleet.chargers.values()
        )
        # The solar meter is read over Modbus by the same run_meters, next to the MQTT one.
        measured = wait_until(
            lambda: (
                (m := site_measurement(site_id=power_site["site"].pk)) and m.solar_power_w and m
            ),
            timeout=20,
            what="the Modbus solar meter read",
        )
        assert measured.solar_power_w == pytest.approx(2400.0)

        # The building load jumps to 20 A: within 10 s the chargers are under the limit.
        fleet.building_a = 20.0
        jumped = time.monotonic()
        after = wait_until(lambda: balanced(20.0), timeout=10, what="limits after the jump")
        assert time.monotonic() - jumped <= 10
        assert sorted(after.values()) == [0.0, 6.0, 6.0]  # one paused rather than under 6 A

        # The meter goes silent: the controller applies the failsafe (32 A ÷ 3 chargers).
        fleet.silent = True
        wait_until(
            lambda: all(v == 10.6 for v in fleet.limits().values()),
            timeout=20,
            what="failsafe limits",
        )

        # The meter speaks again (5 A of building) and one charger ignores its profile.
        fleet.building_a, fleet.silent = 5.0, False
        wait_until(lambda: balanced(5.0), timeout=20, what="balancing again")
        rogue = fleet.chargers[IDENTITIES[0]]
        rogue.disobey = True
        state = ChargerPower.objects.get(charger__identity=IDENTITIES[0])
        wait_until(
            lambda: ChargerPower.objects.filter(
                pk=state.pk, non_compliant_since__isnull=False
            ).exists(),
            timeout=30,
            what="the disobeying charger flagged",
        )
        # It draws 32 A: nothing is left for the others on a 32 A connection.
        others = IDENTITIES[1:]
        wait_until(
            lambda: all(fleet.limits()[i] == 0.0 for i in others),
            timeout=15,
            what="the others lowered",
        )
    finally:
        if fleet is not None:
            fleet.close()
        for process in (power, meters, gw):
            process.stop()
        print(f"--- run_power ---\n{power.output()}\n--- run_meters ---\n{meters.output()}")
        print(f"--- gateway ---\n{gw.output()[-5000:]}")
