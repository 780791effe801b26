"""What the fault tests share: a fleet of lean chargers sending real traffic from a thread while
the test breaks something, and the check that everything the chargers got an answer for is in
PostgreSQL exactly once.

The chargers behave like real ones: a transaction message or meter value that got no answer
(or a CALLERROR) is sent again — the same message, same timestamp — after reconnecting when the
connection dropped. Only what was answered counts: a CALLRESULT told the charger it may forget
the message, so that is what must never be lost."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from decimal import Decimal
from functools import partial

from django.db import connection
from django_scopes import scope

from bench.lag import LeanCharger, now_ms, retrying
from billing.prices import session_cost
from chargers.models import ChargingSession, MeterSample
from tests import builders

CARD = "FAULT-CARD"
PRICE = Decimal("0.2500")


def make_fleet(count: int, prefix: str = "FLT") -> list[tuple[str, str]]:
    """Register `count` chargers (half 1.6, half 2.0.1) in one community with a price and a
    card; returns (identity, version) pairs."""
    community = builders.make_community(name="Fault tests", slug=f"faults-{prefix.lower()}")
    fleet = []
    with scope(community=community):
        builders.make_price(community, price=str(PRICE), valid_from="2020-01-01")
        builders.make_card(community, uid=CARD, name="Fault card")
        site = builders.make_site(community, name="Parking")
        for n in range(count):
            identity = f"{prefix}-{n:03d}"
            builders.make_charger(community, site=site, identity=identity)
            fleet.append((identity, "1.6" if n % 2 == 0 else "2.0.1"))
    return fleet


class Traffic:
    """Runs the fleet in its own thread and event loop: each charger boots, then charges
    session after session (start, a sample every `interval` s, stop) until `duration` has
    passed; the last session is always stopped. `join()` returns the chargers."""

    def __init__(
        self,
        url: str,
        fleet: list[tuple[str, str]],
        *,
        duration: float,
        interval: float = 0.3,
        samples: tuple[int, int] = (3, 6),
        card: str = CARD,
    ):
        self.url, self.fleet, self.duration, self.card = url, fleet, duration, card
        self.interval, self.samples = interval, samples
        self.chargers = [LeanCharger(url, i, v, timeout=8) for i, v in fleet]
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fault-traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def join(self, timeout: float = 180) -> list[LeanCharger]:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the simulated fleet did not finish within {timeout}s")
        if self.error is not None:
            raise self.error
        return self.chargers

    @property
    def answered_samples(self) -> int:
        return sum(len(c.answered.samples) for c in self.chargers)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # re-raised in join()
            self.error = exc

    async def _run(self) -> None:
        until = time.monotonic() + self.duration
        await asyncio.gather(*(self._charge(c, until) for c in self.chargers))

    async def _charge(self, charger: LeanCharger, until: float) -> None:
        card = self.card
        try:
            await retrying(charger, charger.boot)
            await retrying(charger, lambda: charger.status("Available"))
            while time.monotonic() < until:
                sent, tx_201 = now_ms(), uuid.uuid4().hex[:20]
                tx = await retrying(charger, partial(charger.start, card, sent=sent, tx=tx_201))
                for _ in range(random.randint(*self.samples)):
                    await asyncio.sleep(self.interval)
                    charger.register_wh += random.randint(100, 400)
                    sent = now_ms()
                    await retrying(charger, partial(charger.meter, tx, sent=sent))
                sent = now_ms()
                await retrying(charger, partial(charger.stop, tx, card, sent=sent))
                await asyncio.sleep(self.interval)
        finally:
            await charger.close()


def terminate_backends() -> int:
    """pg_terminate_backend on every other backend of the test database (the worker's and the
    gateway's), never another database's; returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def _snapshot(chargers: list[LeanCharger]):
    identities = [c.identity for c in chargers]
    sessions = {
        (s.charger.identity, s.transaction_id): s
        for s in ChargingSession.objects.with_scopes_disabled()
        .filter(charger__identity__in=identities)
        .select_related("charger")
    }
    samples: dict[tuple[str, str, int], int] = {}
    rows = (
        MeterSample.objects.with_scopes_disabled()
        .filter(session__charger__identity__in=identities)
        .values_list(
            "session__charger__identity", "session__transaction_id", "timestamp", "measurand"
        )
    )
    for identity, tx, timestamp, measurand in rows:
        if measurand == "Energy.Active.Import.Register":
            key = (identity, tx, round(timestamp.timestamp() * 1000))
            samples[key] = samples.get(key, 0) + 1
    return sessions, samples


def problems(chargers: list[LeanCharger]) -> list[str]:
    """Everything answered that PostgreSQL does not show right (empty when all is well)."""
    sessions, samples = _snapshot(chargers)
    found = []
    for charger in chargers:
        answered = charger.answered
        for tx, meter_start in answered.starts.items():
            session = sessions.get((charger.identity, tx))
            if session is None:
                found.append(f"{charger.identity} tx {tx}: answered start, no session")
                continue
            if session.started_at is None or session.price_per_kwh != PRICE:
                found.append(f"{charger.identity} tx {tx}: no start time or price")
            if session.meter_start_wh is not None and session.meter_start_wh != meter_start:
                found.append(f"{charger.identity} tx {tx}: meter start {session.meter_start_wh}")
            if tx in answered.stops:
                energy = Decimal(answered.stops[tx] - meter_start)
                if session.state != ChargingSession.State.COMPLETED:
                    found.append(f"{charger.identity} tx {tx}: answered stop, {session.state}")
                elif session.energy_wh != energy:
                    found.append(
                        f"{charger.identity} tx {tx}: energy {session.energy_wh} != {energy}"
                    )
                elif session.cost != session_cost(energy, PRICE):
                    found.append(f"{charger.identity} tx {tx}: cost {session.cost}")
        for tx, sent, _ in answered.samples:
            count = samples.get((charger.identity, tx, round(sent * 1000)), 0)
            if count != 1:
                found.append(f"{charger.identity} tx {tx}: sample at {sent} recorded {count}×")
    return found


def assert_all_recorded(chargers: list[LeanCharger], timeout: float = 120, stall: float = 20):
    """Wait until every answered start, stop and sample is in PostgreSQL, once: at most
    `timeout` s, and no longer than `stall` s without progress (a lost message never comes)."""
    starts = sum(len(c.answered.starts) for c in chargers)
    samples = sum(len(c.answered.samples) for c in chargers)
    assert starts and samples, "the fleet got no answers at all"
    deadline = time.monotonic() + timeout
    best, progress_at = None, time.monotonic()
    while True:
        found = problems(chargers)
        if not found:
            return
        now = time.monotonic()
        if best is None or len(found) < best:
            best, progress_at = len(found), now
        if now >= deadline or now - progress_at >= stall:
            shown = "\n".join(found[:30])
            raise AssertionError(
                f"{len(found)} problems out of {starts} answered starts and {samples} answered "
                f"samples:\n{shown}"
            )
        time.sleep(1)
