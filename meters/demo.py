"""The demo's site meter: a building load that moves during the day, so a newcomer sees load
balancing react on the Power page.

`building_load` is a deterministic function of the time (a working-day profile, a compressor
that starts every hour, noise drawn from the time itself), shared by two stand-ins:

- the `simulated` meter kind, computed in-process by run_meters — what `make demo` uses on a
  laptop without an MQTT broker. It is a demo meter, shown as such in the portal, never a
  measurement;
- `python -m meters.demo --broker mqtt://…` publishes the same load over MQTT, for a demo that
  goes through a real broker (scripts/run-demo starts it when one answers).

`ensure_demo_meter(site)` gives the demo site its grid meter (seed_demo calls it)."""

from __future__ import annotations

import argparse
import json
import math
import random
import time
import zoneinfo
from datetime import UTC, datetime

from .config import SimulatedConfig

DEMO_SITE_NAME = "Entrepôt de Bercy"
DEMO_METER_NAME = "Compteur général (démo)"
DEMO_TOPIC = "sparklin-demo/bercy/grid"
# How the building's load spreads over the phases (a three-phase site is never balanced).
PHASE_SHARES = (0.45, 0.32, 0.23)
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


def building_load(at: datetime, config: SimulatedConfig) -> tuple[float, float, float]:
    """Import per phase (W) of the demo building at `at`."""
    local = at.astimezone(PARIS)
    hour = local.hour + local.minute / 60 + local.second / 3600
    working = local.weekday() < 5
    activity = 0.85 * _bump(hour, 10.5, 2.5) + 0.7 * _bump(hour, 15.0, 2.0)
    load = config.base_w + config.peak_w * activity * (1.0 if working else 0.25)
    # A cold-room compressor: 3 kW for the first 12 minutes of every hour (the "jump").
    if local.minute < 12:
        load += 3000.0
    slot = int(at.timestamp() // max(config.interval, 1))
    noise = random.Random(slot * 7919 + config.seed).uniform(-0.05, 0.05)
    load *= 1 + noise
    return tuple(round(load * share, 1) for share in PHASE_SHARES)  # type: ignore[return-value]


def ensure_demo_meter(site, *, kind: str = "simulated"):
    """The demo site's grid meter, created once (idempotent). `kind="mqtt"` reads the load
    that `python -m meters.demo` publishes on DEMO_TOPIC instead of computing it."""
    from django_scopes import scope

    from .models import Meter

    config = (
        {"topic": DEMO_TOPIC, "paths": {"power_w_l1": "l1", "power_w_l2": "l2", "power_w_l3": "l3"}}
        if kind == Meter.Kind.MQTT
        else SimulatedConfig().to_json()
    )
    with scope(community=site.community):
        meter, created = Meter.objects.get_or_create(
            community=site.community,
            site=site,
            name=DEMO_METER_NAME,
            defaults={"kind": kind, "role": Meter.Role.GRID, "config": config},
        )
        if not created and (meter.kind != kind or meter.config != config):
            meter.kind = kind
            meter.config = config
            meter.save()
    return meter


def publish_forever(broker_url: str, topic: str, interval: float) -> None:
    """Publish the demo load every `interval` seconds as {"l1": W, "l2": W, "l3": W}."""
    import paho.mqtt.client as mqtt

    from .config import parse_broker

    broker = parse_broker(broker_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sparklin-demo-meter")
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    client.connect_async(broker.host, broker.port, 30)
    client.loop_start()
    config = SimulatedConfig(interval=int(interval))
    try:
        while True:
            l1, l2, l3 = building_load(datetime.now(UTC), config)
            client.publish(topic, json.dumps({"l1": l1, "l2": l2, "l3": l3}), qos=0)
            time.sleep(interval)
    finally:
        client.loop_stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Publish the demo building load over MQTT.")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--topic", default=DEMO_TOPIC)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    publish_forever(args.broker, args.topic, args.interval)


if __name__ == "__main__":
    main()
