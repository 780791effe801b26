"""The embedded default (issue 7.6): SQLite, no broker, tasks run in the gateway's publishing
thread — the demo's shape with five chargers charging back to back. Nothing answered is lost
and the gateway logs no "database is locked" and no traceback."""

import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from .faults import Traffic
from .processes import ROOT, Process, free_port, wait_for_port

pytestmark = pytest.mark.e2e

FLEET = [
    ("DEMO-SPARK1-01", "1.6"),
    ("DEMO-ZAPTEC-01", "1.6"),
    ("DEMO-VOLTTIME-01", "2.0.1"),
    ("DEMO-EXTRA-01", "1.6"),
    ("DEMO-EXTRA-02", "2.0.1"),
]
EXTRA = """
from django_scopes import scopes_disabled
from chargers.models import Charger
with scopes_disabled():
    base = Charger.objects.get(identity="DEMO-SPARK1-01")
    for identity in ("DEMO-EXTRA-01", "DEMO-EXTRA-02"):
        Charger.objects.create(identity=identity, community=base.community, site=base.site)
"""


def embedded_env(path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER")
    }
    env.update(SQLITE_PATH=str(path), DJANGO_SETTINGS_MODULE="sparklin.settings", DEBUG="true")
    return env


def manage(env, *args):
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True
    )


def recorded(path):
    """(identity, tx) → (started_at, price, energy, state) and the energy samples, from SQLite."""
    with sqlite3.connect(path) as db:
        sessions = {
            (identity, tx): (started, price, energy, state)
            for identity, tx, started, price, energy, state in db.execute(
                "SELECT c.identity, s.transaction_id, s.started_at, s.price_per_kwh, "
                "s.energy_wh, s.state FROM chargers_chargingsession s "
                "JOIN chargers_charger c ON c.id = s.charger_id"
            )
        }
        samples = set()
        for identity, tx, timestamp in db.execute(
            "SELECT c.identity, s.transaction_id, m.timestamp FROM chargers_metersample m "
            "JOIN chargers_chargingsession s ON s.id = m.session_id "
            "JOIN chargers_charger c ON c.id = s.charger_id"
        ):
            at = datetime.fromisoformat(timestamp).replace(tzinfo=UTC)
            samples.add((identity, tx, round(at.timestamp() * 1000)))
    return sessions, samples


def test_five_chargers_on_sqlite_lose_nothing_and_log_no_lock_error(tmp_path):
    path = tmp_path / "demo.sqlite3"
    env = embedded_env(path)
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")
    manage(env, "shell", "-c", EXTRA)
    port = free_port()
    gateway = Process(
        "gateway",
        [sys.executable, "manage.py", "run_gateway", "--host", "127.0.0.1", "--port", str(port)],
        env,
    ).start()
    try:
        wait_for_port(port)
        traffic = Traffic(
            f"ws://127.0.0.1:{port}/ocpp/", FLEET, duration=10, interval=0.1, card="DEMO-CARD-01"
        )
        chargers = traffic.start().join()
        problems = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            sessions, samples = recorded(path)
            problems = []
            for charger in chargers:
                for tx in charger.answered.starts:
                    session = sessions.get((charger.identity, tx))
                    if session is None or session[0] is None or session[1] is None:
                        problems.append(f"{charger.identity} {tx}: start {session}")
                    elif tx in charger.answered.stops and session[3] != "completed":
                        problems.append(f"{charger.identity} {tx}: not completed {session}")
                for tx, sent, _ in charger.answered.samples:
                    if (charger.identity, tx, round(sent * 1000)) not in samples:
                        problems.append(f"{charger.identity} {tx}: sample {sent}")
            if not problems:
                break
            time.sleep(0.5)
        assert not problems, problems[:20]
        assert sum(len(c.answered.samples) for c in chargers) >= 100
    finally:
        gateway.stop()
    output = gateway.output()
    assert "database is locked" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def _portal_traffic(base: str, until: float) -> int:
    """What a newcomer does in the demo's portal meanwhile: pages read, login codes asked (each
    a write to the same SQLite file). Returns the number of answers."""
    import re
    import urllib.error
    import urllib.parse
    import urllib.request
    from http.cookiejar import CookieJar

    answers = 0
    while time.monotonic() < until:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        try:
            page = opener.open(f"{base}/accounts/login/", timeout=10).read().decode()
            answers += 1
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
            data = urllib.parse.urlencode(
                {"csrfmiddlewaretoken": token.group(1) if token else "", "phone": "+33600000001"}
            ).encode()
            opener.open(
                urllib.request.Request(
                    f"{base}/accounts/login/", data=data, headers={"Referer": base}
                ),
                timeout=10,
            )
            answers += 1
        except urllib.error.HTTPError:
            answers += 1  # a rate limit (429) is an answer too
        time.sleep(0.2)
    return answers


def test_the_demo_logs_no_lock_error_with_the_portal_in_use(tmp_path):
    """`make demo` as a newcomer runs it (scripts/run-demo: portal, gateway, the simulated
    fleet and the in-process beat, one SQLite file), two more chargers charging back to back
    and the portal in use at the same time: no "database is locked", no traceback in anything
    it prints, and the periodic work runs."""
    import threading

    path = tmp_path / "demo.sqlite3"
    env = embedded_env(path)
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")
    manage(env, "shell", "-c", EXTRA)
    web_port, gateway_port = free_port(), free_port()
    env.update(WEB_PORT=str(web_port), GATEWAY_PORT=str(gateway_port))
    # The demo's beat (run_periodic): local lists every 20 s (30 s by default), so the first
    # sync is seen soon after the traffic below.
    env.update(RULES_LOCAL_LIST_SECONDS="20")
    env.pop("DEBUG")
    demo = Process("demo", ["bash", "scripts/run-demo"], env).start()
    try:
        wait_for_port(gateway_port, timeout=60)
        wait_for_port(web_port, timeout=60)
        portal: list[int] = []
        until = time.monotonic() + 12
        reader = threading.Thread(
            target=lambda: portal.append(_portal_traffic(f"http://127.0.0.1:{web_port}", until))
        )
        reader.start()
        traffic = Traffic(
            f"ws://127.0.0.1:{gateway_port}/ocpp/",
            FLEET[3:],
            duration=10,
            interval=0.1,
            card="DEMO-CARD-01",
        )
        chargers = traffic.start().join()
        reader.join(30)
        assert portal and portal[0] >= 10
        assert sum(len(c.answered.samples) for c in chargers) >= 40
        sessions, samples = recorded(path)
        for charger in chargers:
            for tx, sent, _ in charger.answered.samples:
                assert (charger.identity, tx, round(sent * 1000)) in samples
        # The periodic work runs in the demo (no Celery beat there): the local lists of the
        # demo's simulated chargers (connected all along) are looked at.
        demo_chargers = {identity for identity, _ in FLEET[:3]}
        synced: set[str] = set()
        deadline = time.monotonic() + 60
        while not demo_chargers <= synced and time.monotonic() < deadline:
            time.sleep(1)
            with sqlite3.connect(path) as db:
                synced = {
                    identity
                    for (identity,) in db.execute(
                        "SELECT c.identity FROM rules_locallist l "
                        "JOIN chargers_charger c ON c.id = l.charger_id"
                    )
                }
        assert demo_chargers <= synced, synced
    finally:
        demo.stop()
    output = demo.output()
    assert "Periodic task" not in output, output[-3000:]  # none failed
    assert "Sparklin demo" in output
    assert "database is locked" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
