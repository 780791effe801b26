"""`python -m bench.gateway [--chargers N] [--messages M]`: the OCPP gateway under load.

Starts `manage.py run_gateway` as its own process (events published to Redis as Celery tasks,
as in production; no worker runs, so the queue is dropped afterwards), connects N chargers over
real websockets on 127.0.0.1, and measures:
- memory: the gateway's resident memory per idle, booted connection;
- throughput: M MeterValues per charger, each charger waiting for every answer (as chargers
  do), all chargers at once; messages answered per second and the answer latency.
Not a timed test: numbers for the README and docs/architecture.md. Needs PostgreSQL and Redis
(DATABASE_URL, REDIS_URL); it creates and drops its own database `sparklin_bench_gw`."""

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import prepare_database

ROOT = Path(__file__).resolve().parent.parent


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _register(count: int) -> list[str]:
    from django_scopes import scopes_disabled

    from chargers.models import Charger
    from communities.models import Community, Site

    with scopes_disabled():
        community = Community.objects.create(name="Gateway bench", slug="gw-bench")
        site = Site.objects.create(community=community, name="Parking")
        Charger.objects.bulk_create(
            [Charger(community=community, site=site, identity=f"GWB-{n:05d}") for n in range(count)]
        )
    return [f"GWB-{n:05d}" for n in range(count)]


def _frame(unique_id: str, action: str, payload: dict) -> str:
    return json.dumps([2, unique_id, action, payload])


def _meter_values(n: int) -> dict:
    return {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": "2026-01-01T00:00:00Z",
                "sampledValue": [
                    {
                        "value": str(1000 + n),
                        "measurand": "Energy.Active.Import.Register",
                        "unit": "Wh",
                    }
                ],
            }
        ],
    }


async def _connect(url: str, identity: str):
    from websockets.asyncio.client import connect

    ws = await connect(url + identity, subprotocols=["ocpp1.6"], compression=None, open_timeout=30)
    await ws.send(
        _frame("boot", "BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "B"})
    )
    await ws.recv()
    await ws.send(
        _frame(
            "st",
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
        )
    )
    await ws.recv()
    return ws


async def _drain(ws):
    """Answer what the gateway asks at first connection (GetConfiguration, ChangeConfiguration)
    so it does not wait for us; returns when a CALLRESULT for one of our calls arrives."""
    while True:
        message = json.loads(await ws.recv())
        if message[0] == 2:  # a call from the gateway
            answer = (
                {"configurationKey": []}
                if message[2] == "GetConfiguration"
                else {"status": "Accepted"}
            )
            await ws.send(json.dumps([3, message[1], answer]))
            continue
        return message


async def _load(url: str, identities: list[str], messages: int, gateway_pid: int) -> dict:
    rss_start = _rss_mb(gateway_pid)
    connections = []
    for start in range(0, len(identities), 100):  # open in waves, as a fleet reconnecting would
        connections += await asyncio.gather(
            *(_connect(url, i) for i in identities[start : start + 100])
        )
    await asyncio.sleep(2)
    rss_connected = _rss_mb(gateway_pid)
    latencies: list[float] = []

    async def run(ws):
        for n in range(messages):
            sent = time.perf_counter()
            await ws.send(_frame(f"mv{n}", "MeterValues", _meter_values(n)))
            await _drain(ws)
            latencies.append(time.perf_counter() - sent)

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(run(ws) for ws in connections)), 600)
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*(ws.close() for ws in connections))
    latencies.sort()
    return {
        "rss_start": rss_start,
        "rss_connected": rss_connected,
        "elapsed": elapsed,
        "answered": len(latencies),
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20, help="MeterValues per charger")
    args = parser.parse_args(argv)
    if not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL", "").startswith(
        "postgres"
    ):
        print("bench.gateway needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2

    database, cleanup = prepare_database("sparklin_bench_gw")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    identities = _register(args.chargers)
    port = _free_port()
    env = dict(os.environ, CELERY_TASK_ALWAYS_EAGER="false", LOG_LEVEL="WARNING")
    gateway = subprocess.Popen(
        [sys.executable, "manage.py", "run_gateway", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        result = asyncio.run(
            _load(f"ws://127.0.0.1:{port}/ocpp/", identities, args.messages, gateway.pid)
        )
    finally:
        gateway.terminate()
        gateway.wait(30)
        import redis

        redis.Redis.from_url(os.environ["REDIS_URL"]).delete("celery")  # the unconsumed tasks
        cleanup()

    per_conn_kb = (result["rss_connected"] - result["rss_start"]) * 1024 / args.chargers
    rate = result["answered"] / result["elapsed"]
    print(
        f"machine       : {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()}"
    )
    print(f"database      : {database}; events published to Redis as Celery tasks")
    print(f"connections   : {args.chargers} booted 1.6J chargers")
    print(
        f"memory        : {result['rss_start']:.0f} MB → {result['rss_connected']:.0f} MB, ~{per_conn_kb:.0f} KB per connection"
    )
    print(
        f"throughput    : {result['answered']} MeterValues in {result['elapsed']:.1f} s = {rate:.0f} msg/s"
    )
    print(
        f"answer latency: p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms (all chargers sending at once)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
