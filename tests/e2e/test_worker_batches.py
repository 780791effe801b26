"""The worker applies several queued `process_events` messages as one batch
(`chargers/batching.py`), and acknowledges a message only once its events are committed: a real
worker over RabbitMQ, messages published as the gateway publishes them."""

import psycopg
import pytest
from django.db import connection

from chargers.models import MeterSample, OcppMessage, QuarantinedEvents
from ocpp_gateway.batcher import Publisher
from sparklin.celery import app
from tests import builders

from .processes import celery_worker, wait_until

# Test bodies run in the community's scope (the worker is another process, with its own).
pytestmark = [pytest.mark.e2e, pytest.mark.community_scope]


@pytest.fixture
def publish(e2e_env):
    """Publish event batches to the test broker as the gateway does (confirmed, persistent)."""
    app.conf.task_always_eager = False
    publisher = Publisher(timeout=5)
    yield publisher
    publisher.close()
    app.conf.task_always_eager = True


@pytest.fixture
def community(e2e_env):
    return builders.make_community(name="Batches", slug="batches")


@pytest.fixture
def chargers(community):
    site = builders.make_site(community, name="Parking")
    return [builders.make_charger(community, site=site, identity=f"WB-{n}") for n in range(3)]


def _message(identity: str, uid: str) -> dict:
    return {
        "identity": identity,
        "kind": "message",
        "payload": {
            "direction": "in",
            "message_type": 2,
            "unique_id": uid,
            "action": "Heartbeat",
            "frame": f'[2,"{uid}","Heartbeat",{{}}]',
        },
        "received_at": "2026-03-02T08:00:00+00:00",
    }


def _transaction(identity: str, tid: str, event: str, wh: int, at: str) -> dict:
    return {
        "identity": identity,
        "kind": "transaction",
        "payload": {
            "event": event,
            "transaction_id": tid,
            "evse_id": 1,
            "connector_id": 1,
            "id_tag": None,
            "timestamp": at,
            "meter_wh": wh,
            "reason": "",
            "seq_no": None,
            "offline": False,
            "samples": [
                {
                    "timestamp": at,
                    "measurand": "Energy.Active.Import.Register",
                    "phase": "",
                    "context": "Sample.Periodic",
                    "value": str(wh),
                    "unit": "Wh",
                }
            ],
        },
        "received_at": at,
    }


def _batches(chargers, count: int) -> list[list[dict]]:
    """`count` gateway flushes: each logs a frame of every charger and moves its session on."""
    batches = []
    for n in range(count):
        at = f"2026-03-02T08:{n // 60:02d}:{n % 60:02d}+00:00"
        batch = []
        for charger in chargers:
            batch.append(_message(charger.identity, f"{charger.identity}-m{n}"))
            event = "started" if n == 0 else "updated"
            batch.append(
                _transaction(charger.identity, f"T-{charger.identity}", event, 1000 + n, at)
            )
        batches.append(batch)
    return batches


def _transactions_of_rows() -> dict[str, set[str]]:
    """Log rows grouped by the transaction that inserted them (PostgreSQL's xmin)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text, unique_id FROM chargers_ocppmessage")
        grouped: dict[str, set[str]] = {}
        for xmin, uid in cursor.fetchall():
            grouped.setdefault(xmin, set()).add(uid.rsplit("-m", 1)[1])
    return grouped


def test_queued_messages_are_applied_together_in_one_transaction(e2e_env, chargers, publish):
    batches = _batches(chargers, 30)
    for batch in batches:  # the worker is not running yet: 30 messages wait in the queue
        publish(batch)
    worker = celery_worker(e2e_env).start(timeout=60)
    try:
        wait_until(lambda: OcppMessage.objects.count() == 90, timeout=60, what="all log rows")
        wait_until(lambda: MeterSample.objects.count() == 90, timeout=30, what="all samples")
    finally:
        worker.stop()
        print(f"--- worker output ---\n{worker.output()}")
    # Rows of several gateway messages were inserted by one database transaction…
    grouped = _transactions_of_rows()
    assert max(len(messages) for messages in grouped.values()) >= 5, grouped
    assert len(grouped) < 30
    # …and the worker says how many messages each batch held.
    assert "messages in" in worker.output()
    assert not QuarantinedEvents.objects.exists()


def _lock_charger(identity: str):
    """Hold the charger's row lock from another connection: the worker's batch waits on it,
    mid-batch, with its messages received and not acknowledged."""
    db = connection.settings_dict
    conn = psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname=db["NAME"],
    )
    conn.execute("SELECT id FROM chargers_charger WHERE identity = %s FOR UPDATE", [identity])
    return conn


def _worker_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_a_worker_killed_mid_batch_loses_nothing(e2e_env, chargers, publish):
    batches = _batches(chargers, 20)
    lock = _lock_charger(chargers[0].identity)
    worker = celery_worker(e2e_env)
    try:
        for batch in batches:
            publish(batch)
        worker.start(timeout=60)
        wait_until(_worker_waits_on_a_lock, timeout=30, what="the worker's batch waiting")
        worker.kill()  # kill -9 while its batch holds messages it has not acknowledged
    finally:
        lock.rollback()
        lock.close()
        worker.stop()
        print(f"--- killed worker output ---\n{worker.output()}")
    assert OcppMessage.objects.count() == 0  # nothing was committed…
    worker = celery_worker(e2e_env).start(timeout=60)  # …and nothing is lost
    try:
        wait_until(lambda: OcppMessage.objects.count() == 60, timeout=60, what="all log rows")
        wait_until(lambda: MeterSample.objects.count() == 60, timeout=30, what="all samples")
    finally:
        worker.stop()
        print(f"--- worker output ---\n{worker.output()}")
    for charger in chargers:
        session = charger.sessions.get()
        assert session.meter_start_wh == 1000 and session.meter_last_wh == 1019
    assert not QuarantinedEvents.objects.exists()
