"""The worker against a real database: two workers on overlapping batches never deadlock nor
interleave on a charger, and a task survives its database connection being terminated (a
PostgreSQL restart or fail-over) by retrying on a new one."""

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections

from chargers import events as ev
from chargers import tasks
from chargers.models import ChargingSession, MeterSample

from .. import builders
from .test_events import sample, tx

# Test bodies read tenant data in the community fixture's scope (tests/conftest.py).
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.community_scope("fleet_community"),
]


@pytest.fixture
def fleet_community(db):
    community = builders.make_community(slug="concurrency")
    builders.make_price(community)
    return community


@pytest.fixture
def fleet(fleet_community):
    site = builders.make_site(fleet_community)
    return [builders.make_charger(fleet_community, site=site) for _ in range(12)]


def session_batch(chargers, minute, reverse=False):
    events = []
    for c in reversed(chargers) if reverse else chargers:
        tid = f"c-{c.pk}"
        if minute == 0:
            events.append(tx(c, "started", tid, 0, meter_wh=1000))
        events.append(tx(c, "updated", tid, minute, samples=[sample(1000 + minute * 10, minute)]))
    return events


def test_two_workers_on_overlapping_batches_neither_deadlock_nor_lose_anything(fleet):
    ev.process_events(session_batch(fleet, 0))
    errors = []

    def worker(minutes, reverse):
        try:
            for m in minutes:
                ev.process_events(session_batch(fleet, m, reverse=reverse))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=worker, args=(range(1, 30, 2), False)),
        threading.Thread(target=worker, args=(range(2, 30, 2), True)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert MeterSample.objects.count() == 12 * 30
    for s in ChargingSession.objects.all():
        assert s.meter_last_wh == Decimal("1290.0")  # the newest reading, whatever the order


def test_a_database_connection_terminated_mid_task_is_retried_on_a_new_one(fleet, monkeypatch):
    """pg_terminate_backend on the worker's own backend while the task runs, as a restart or a
    fail-over does: the attempt fails with a transient error, the retry reconnects and records
    the batch."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    real = tasks.event_services.process_events
    attempts = []
    killed = []

    def terminated_first(events):
        attempts.append(1)
        if len(attempts) == 1:
            connection.ensure_connection()
            pid = connection.connection.info.backend_pid
            killed.append(pid)
            admin = connections.create_connection("default")
            try:
                with admin.cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            finally:
                admin.close()
        return real(events)

    monkeypatch.setattr(tasks.event_services, "process_events", terminated_first)
    result = tasks.process_events.apply(args=[session_batch(fleet[:2], 0)], throw=False)
    assert result.get()["chargers"] == 2
    # Recorded on a new connection: Django's health check (CONN_HEALTH_CHECKS) replaces the
    # terminated one before the first query, else the task's transient-error retry does.
    connection.ensure_connection()
    assert connection.connection.info.backend_pid != killed[0]
    assert 1 <= len(attempts) <= 2
    assert ChargingSession.objects.count() == 2
