"""Fuzzing the production shape (issue 13): a gateway process and a real Celery worker process,
4 connections sending ~20,000 frames of every class — broken JSON, wrong shapes, unknown types
and actions, overlong ids, binary frames, 600- and 1,500-deep nesting, unsolicited answers,
schema violations and schema-valid poison values — while honest chargers run whole sessions.
It ends with every honest session recorded, every fuzz connection still open and answered, and
the worker and the gateway alive.

The gateway answers or ignores every frame as OCPP-J says and sends the worker nothing but text;
the worker quarantines the poison values and decodes frames with bounds."""

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from chargers.models import ChargingSession
from communities.models import Role
from simulator.fleet import run_session
from simulator.fuzz import fuzz
from tests import builders

from .processes import wait_until

pytestmark = pytest.mark.e2e

CARD = "FUZZ-CARD-01"
HONEST = [("FZ-H16-1", "1.6"), ("FZ-H16-2", "1.6"), ("FZ-H201-1", "2.0.1"), ("FZ-H201-2", "2.0.1")]
FUZZERS = [("FZ-F16-1", "1.6"), ("FZ-F16-2", "1.6"), ("FZ-F201-1", "2.0.1"), ("FZ-F201-2", "2.0.1")]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def fleet(e2e_env):
    community = builders.make_community(name="Fuzz", slug="fuzz")
    builders.make_price(community, price="0.2500", valid_from="2020-01-01")
    driver = builders.make_member(community, Role.INDIVIDUAL).user
    builders.make_card(community, holder=driver, uid=CARD)
    site = builders.make_site(community, name="Parking")
    return {
        identity: builders.make_charger(community, site=site, identity=identity)
        for identity, _ in HONEST + FUZZERS
    }


def test_fuzzed_frames_never_stop_the_gateway_or_the_worker(fleet, worker, gateway_process):
    pid = gateway_process.proc.pid
    rss_before = _rss_mb(pid)

    async def main():
        fuzzing = [
            fuzz(gateway_process.url, identity, version, seed)
            for seed, (identity, version) in enumerate(FUZZERS)
        ]
        honest = [
            run_session(
                gateway_process.url, identity, version, card=CARD, energy_wh=5000, timeout=240
            )
            for identity, version in HONEST
        ]
        return await asyncio.gather(*fuzzing, *honest)

    results = asyncio.run(asyncio.wait_for(main(), 300))
    fuzzed, sessions = results[: len(FUZZERS)], results[len(FUZZERS) :]
    rss_after = _rss_mb(pid)
    print(f"gateway RSS {rss_before:.0f} MB → {rss_after:.0f} MB; fuzz results {fuzzed}")
    assert all(r["open"] for r in fuzzed), fuzzed
    for (identity, _), result in zip(HONEST, sessions, strict=True):
        session = wait_until(
            lambda identity=identity, result=result: (
                ChargingSession.objects.with_scopes_disabled()
                .filter(
                    charger=fleet[identity],
                    transaction_id=result["transaction_id"],
                    state=ChargingSession.State.COMPLETED,
                )
                .first()
            ),
            timeout=120,
            what=f"{identity}'s session",
        )
        assert session.energy_wh == Decimal("5000")
    assert worker.proc.poll() is None, worker.output()
    assert gateway_process.proc.poll() is None, gateway_process.output()
    assert rss_after - rss_before < 100
