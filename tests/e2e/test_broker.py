"""The gateway's publisher against a real RabbitMQ (the test vhost): a publish returns only once
the broker confirmed a persistent message on a durable queue, and a broker that is away or
silent makes it raise within its timeout instead of blocking the publishing thread."""

import json
import socket
import threading
import time

import pytest
from django.conf import settings
from kombu.exceptions import OperationalError

from ocpp_gateway.batcher import Publisher
from sparklin.celery import app

from .conftest import purge_broker
from .processes import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def broker():
    if not settings.BROKER_IS_AMQP:
        pytest.fail("Needs CELERY_BROKER_URL=amqp://… (make test-e2e passes TEST_BROKER_URL)")
    purge_broker(settings.CELERY_BROKER_URL)
    app.conf.task_always_eager = False  # publish for real (the unit tests' fixture runs eager)
    yield settings.CELERY_BROKER_URL
    app.conf.task_always_eager = True
    purge_broker(settings.CELERY_BROKER_URL)


def test_the_broker_configuration_is_durable_and_confirmed():
    assert app.conf.broker_transport_options["confirm_publish"] is True
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    queue = app.amqp.queues[app.conf.task_default_queue]
    assert queue.durable and not queue.auto_delete


def test_a_published_batch_is_a_persistent_message_on_the_durable_queue(broker):
    publisher = Publisher(timeout=5)
    events = [{"identity": "CP-1", "kind": "heartbeat", "payload": {}, "received_at": "x"}]
    try:
        publisher(events)
        publisher(events)  # the same connection serves the next batch
    finally:
        publisher.close()
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        name = app.conf.task_default_queue
        _, count, _ = channel.queue_declare(name, durable=True, passive=True)
        assert count == 2
        message = channel.basic_get(name, no_ack=True)
    assert message.properties["delivery_mode"] == 2  # persistent
    assert message.headers["task"] == "chargers.tasks.process_events"


def test_the_published_message_is_the_one_celery_would_publish(broker):
    """The publisher builds Celery's task message itself (not through `apply_async`, whose
    per-call overhead was most of the publishing thread's CPU): same route, headers and
    properties, and a body the worker decodes to the same arguments."""
    from chargers.tasks import process_events

    events = [{"identity": "CP-é", "kind": "heartbeat", "payload": {"n": 1.5}, "received_at": "x"}]
    publisher = Publisher(timeout=5)
    try:
        publisher(events)
    finally:
        publisher.close()
    process_events.apply_async(args=(events,), argsrepr="[<1 events>]", kwargsrepr="{}")
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        name = app.conf.task_default_queue
        ours, celerys = channel.basic_get(name, no_ack=True), channel.basic_get(name, no_ack=True)
    assert ours.delivery_info["routing_key"] == celerys.delivery_info["routing_key"] == name
    assert ours.delivery_info["exchange"] == celerys.delivery_info["exchange"]
    varying = {"id", "root_id", "correlation_id", "reply_to"}
    assert {k: v for k, v in ours.headers.items() if k not in varying} == {
        k: v for k, v in celerys.headers.items() if k not in varying
    }
    assert ours.headers["id"] == ours.headers["root_id"] == ours.properties["correlation_id"]
    for key in ("content_type", "content_encoding", "delivery_mode", "priority"):
        assert ours.properties[key] == celerys.properties[key], key
    assert json.loads(ours.body) == json.loads(celerys.body)


def test_the_publisher_declares_the_queue_once_per_connection_so_no_batch_is_unroutable(broker):
    """Each publish skips Celery's declaration (declare=[]): the connection declared the queue
    when it opened, so a batch published before any worker declared it is kept, not dropped."""
    name = app.conf.task_default_queue
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(name)
    publisher = Publisher(timeout=5)
    events = [{"identity": "CP-1", "kind": "heartbeat", "payload": {}, "received_at": "x"}]
    try:
        publisher(events)
    finally:
        publisher.close()
    with app.connection_for_write() as conn:
        _, count, _ = conn.default_channel.queue_declare(name, durable=True, passive=True)
    assert count == 1


def test_publishing_to_a_broker_that_is_down_raises_quickly(broker):
    publisher = Publisher(timeout=2, url=f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    started = time.monotonic()
    with pytest.raises((OSError, OperationalError)):
        publisher([{"identity": "CP-1", "kind": "heartbeat", "payload": {}}])
    assert time.monotonic() - started < 5


def test_a_silent_broker_makes_the_publish_raise_after_its_timeout_not_hang(broker):
    """A peer that accepts the TCP connection and never answers (a hung broker, a black-holed
    network): the publish gives up after its timeout, so the batcher keeps the events."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(listener.accept()[0])
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    publisher = Publisher(timeout=1.5, url=f"amqp://guest:guest@127.0.0.1:{port}//")
    started = time.monotonic()
    try:
        with pytest.raises((OSError, OperationalError)):
            publisher([{"identity": "CP-1", "kind": "heartbeat", "payload": {}}])
        assert time.monotonic() - started < 8
    finally:
        listener.close()
        for sock in accepted:
            sock.close()


def _queued() -> int:
    with app.connection_for_write() as conn:
        _, count, _ = conn.default_channel.queue_declare(
            app.conf.task_default_queue, durable=True, passive=True
        )
    return count


def test_sync_returns_only_once_the_broker_confirmed_the_events(broker):
    """The engine's contract (handler: emit, `await batcher.sync()`, answer) with the real
    publisher: when sync() returns, the batch is already a confirmed message on the queue, and
    the events of several chargers waiting together share one message."""
    import asyncio

    from ocpp_gateway.batcher import EventBatcher

    async def scenario():
        batcher = EventBatcher(flush_seconds=1.0, durable_window=0.02, durable_timeout=10)
        flusher = asyncio.create_task(batcher.run())

        async def handler(identity):
            batcher.emit(identity, "transaction", {"event": "started"})
            await batcher.sync()
            return _queued()  # what the broker holds at the moment the handler would answer

        seen = await asyncio.gather(*(handler(f"CP-{n}") for n in range(5)))
        flusher.cancel()
        await batcher.close()
        return seen

    seen = asyncio.run(scenario())
    assert all(count >= 1 for count in seen)
    assert _queued() == 1  # one persistent message for the five chargers
