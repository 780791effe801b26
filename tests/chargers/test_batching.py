"""The worker's batching consumer (`chargers/batching.py`) with a stand-in consumer: several
`process_events` messages applied as one batch, each acknowledged only once its events are
committed (or quarantined, or published again for a retry), requeued when the job fails or its
process dies, and a charger's poison still isolated inside the merged batch."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import OperationalError

from chargers import batching
from chargers.models import ChargingSession, QuarantinedEvents
from chargers.tasks import process_events as process_events_task

from .. import builders
from .test_events import tx

pytestmark = pytest.mark.community_scope


class FakeQoS:
    def __init__(self):
        self.value = 4

    def increment_eventually(self, n=1):
        self.value += n

    def decrement_eventually(self, n=1):
        self.value -= n


class FakeTimer:
    def __init__(self):
        self.entries = []

    def call_after(self, secs, fun, args=()):
        entry = Entry(secs, fun, args)
        self.entries.append(entry)
        return entry

    def fire(self):
        entries, self.entries = self.entries, []
        for entry in entries:
            if not entry.cancelled:
                entry.fun(*entry.args)


class Entry:
    def __init__(self, secs, fun, args):
        self.secs, self.fun, self.args, self.cancelled = secs, fun, args, False

    def cancel(self):
        self.cancelled = True


class SoloPool:
    """Celery's solo pool: the job runs in the consumer, then its callback."""

    def __init__(self, die=False):
        self.jobs = []
        self.die = die

    def apply_async(self, target, args, callback, error_callback):
        self.jobs.append(args)
        if self.die:  # the pool process was lost (kill -9, out of memory)
            error_callback(RuntimeError("WorkerLostError"))
        else:
            callback(target(*args))


class FakeConsumer:
    connection_errors = (ConnectionError,)

    def __init__(self, pool=None):
        self.qos = FakeQoS()
        self.timer = FakeTimer()
        self.pool = pool or SoloPool()


class FakeRequest:
    """A received message: acknowledged or rejected at once, on its channel."""

    def __init__(self, events, retries=0, eta=None):
        self.args = (events,)
        self.request_dict = {"retries": retries}
        self.eta = eta
        self.outcome = None
        self.message = self

    def ack_log_error(self, logger, errors):
        assert self.outcome is None
        self.outcome = "ack"

    def reject_log_error(self, logger, errors, requeue=False):
        assert self.outcome is None
        self.outcome = "requeue" if requeue else "drop"


def buffer(consumer, window=0.05, max_events=1000):
    return batching.Buffer(process_events_task, consumer, window=window, max_events=max_events)


def sessions(*chargers):
    return {s.transaction_id: s for s in ChargingSession.objects.filter(charger__in=list(chargers))}


@pytest.mark.django_db
def test_messages_waiting_are_applied_as_one_batch_then_acknowledged(charger, monkeypatch):
    from chargers import events

    calls = []

    original = events.process_events

    def counting(batch):
        calls.append(len(batch))
        return original(batch)

    monkeypatch.setattr(events, "process_events", counting)
    consumer = FakeConsumer()
    buf = buffer(consumer)
    requests = [
        FakeRequest([tx(charger, "started", "b-1", 0, meter_wh=100)]),
        FakeRequest([tx(charger, "updated", "b-1", 1, meter_wh=150)]),
        FakeRequest([tx(charger, "ended", "b-1", 2, meter_wh=200, reason="Local")]),
    ]
    for request in requests:
        buf.receive(request)
    # Held, not applied, not acknowledged, and not counted against the prefetch limit (plus
    # a lookahead of four messages per message the window received).
    assert calls == [] and all(r.outcome is None for r in requests)
    assert consumer.qos.value == 4 + 3 + 12
    assert len(consumer.timer.entries) == 1 and consumer.timer.entries[0].secs == 0.05

    consumer.timer.fire()
    assert calls == [3]  # one batch of the three messages' events
    assert [r.outcome for r in requests] == ["ack", "ack", "ack"]
    assert consumer.qos.value == 4
    session = sessions(charger)["b-1"]
    assert session.state == ChargingSession.State.COMPLETED and session.energy_wh == 100


@pytest.mark.django_db
def test_an_open_window_lets_the_broker_send_more_as_messages_come(charger):
    """While a buffer waits for its window, the QoS is raised by four messages per message the
    window received (a backlog multiplies what is in flight at each QoS round trip, instead
    of a prefetch count of 4 per round trip), never beyond what should fill the batch
    (`max_events` over the mean events per message); released at the flush, the prefetch
    limit is as before."""
    assert batching.LOOKAHEAD_GROWTH == 4
    consumer = FakeConsumer()
    buf = buffer(consumer, max_events=100)
    ten = [tx(charger, "updated", "w-1", n, meter_wh=n) for n in range(10)]
    first = FakeRequest(ten)
    buf.receive(first)
    assert consumer.qos.value == 4 + 1 + 4  # held, plus a lookahead of four messages
    buf.receive(FakeRequest(ten))
    # 20 events here, 10 per message: 8 more messages fill the batch.
    assert consumer.qos.value == 4 + 2 + 8
    buf.receive(FakeRequest(ten))
    assert consumer.qos.value == 4 + 3 + 8  # 7 would do now; never lowered before the flush
    consumer.timer.fire()
    assert consumer.qos.value == 4 and buf.held == 0
    assert first.outcome == "ack"


@pytest.mark.django_db
def test_a_trickle_of_messages_raises_the_prefetch_by_little(charger):
    consumer = FakeConsumer()
    buf = buffer(consumer, max_events=5000)
    buf.receive(FakeRequest([tx(charger, "started", "s-1", 0)]))
    assert consumer.qos.value == 4 + 1 + 4  # not a batch's worth (4,999 messages)
    consumer.timer.fire()
    assert consumer.qos.value == 4


@pytest.mark.django_db
def test_a_full_buffer_is_applied_at_once(charger):
    consumer = FakeConsumer()
    buf = buffer(consumer, max_events=2)
    first = FakeRequest([tx(charger, "started", "f-1", 0, meter_wh=1)])
    second = FakeRequest([tx(charger, "updated", "f-1", 1, meter_wh=2)])
    buf.receive(first)
    assert first.outcome is None
    buf.receive(second)
    assert first.outcome == "ack" and second.outcome == "ack"
    assert consumer.timer.entries[0].cancelled  # the window's timer has nothing left to do


def _transient():
    error = OperationalError("could not serialize access")
    error.__cause__ = psycopg.errors.SerializationFailure("could not serialize access")
    return error


@pytest.mark.django_db
def test_nothing_is_acknowledged_before_the_commit(charger, monkeypatch):
    """A transient error: the events are published again (one message, with a backoff and the
    retry count), and the originals acknowledged only after that publish."""
    from chargers import events

    published = []
    monkeypatch.setattr(events, "process_events", lambda batch: (_ for _ in ()).throw(_transient()))

    def apply_async(args, countdown, retries):
        assert all(r.outcome is None for r in requests)  # not acknowledged before
        published.append((args[0], countdown, retries))

    monkeypatch.setattr(process_events_task, "apply_async", apply_async)
    consumer = FakeConsumer()
    buf = buffer(consumer)
    requests = [FakeRequest([tx(charger, "started", "t-1", 0)], retries=2), FakeRequest([])]
    for request in requests:
        buf.receive(request)
    consumer.timer.fire()
    assert [r.outcome for r in requests] == ["ack", "ack"]
    [(events_again, countdown, retries)] = published
    assert len(events_again) == 1 and retries == 3 and countdown > 0


@pytest.mark.django_db
def test_messages_are_requeued_when_the_retry_cannot_be_published(charger, monkeypatch):
    from chargers import events

    monkeypatch.setattr(events, "process_events", lambda batch: (_ for _ in ()).throw(_transient()))

    def broker_down(**kwargs):
        raise ConnectionRefusedError("broker away")

    monkeypatch.setattr(process_events_task, "apply_async", broker_down)
    consumer = FakeConsumer()
    buf = buffer(consumer)
    request = FakeRequest([tx(charger, "started", "q-1", 0)])
    buf.receive(request)
    consumer.timer.fire()
    assert request.outcome == "requeue"  # delivered again by the broker
    assert not ChargingSession.objects.exists()


@pytest.mark.django_db
def test_messages_are_requeued_when_the_pool_process_dies(charger):
    consumer = FakeConsumer(pool=SoloPool(die=True))
    buf = buffer(consumer)
    requests = [FakeRequest([tx(charger, "started", "d-1", 0)]) for _ in range(2)]
    for request in requests:
        buf.receive(request)
    consumer.timer.fire()
    assert [r.outcome for r in requests] == ["requeue", "requeue"]
    assert consumer.qos.value == 4


@pytest.mark.django_db
def test_a_poison_register_in_one_message_is_quarantined_and_the_others_commit(
    community, site, charger
):
    poison = builders.make_charger(community, site=site, identity="CP-POISON")
    consumer = FakeConsumer()
    buf = buffer(consumer)
    requests = [
        FakeRequest([tx(poison, "started", "p-1", 0, meter_wh=10**15)]),
        FakeRequest([tx(charger, "started", "h-1", 0, meter_wh=1000)]),
        FakeRequest([tx(charger, "ended", "h-1", 30, meter_wh=4000, reason="Local")]),
    ]
    for request in requests:
        buf.receive(request)
    consumer.timer.fire()
    assert [r.outcome for r in requests] == ["ack", "ack", "ack"]
    assert sessions(charger)["h-1"].energy_wh == 3000
    entry = QuarantinedEvents.objects.get(charger=poison)
    assert "absurd energy register" in entry.error
    assert not sessions(poison)


@pytest.mark.django_db
def test_a_bug_outside_the_quarantine_fails_only_its_own_message(charger, monkeypatch):
    from chargers import events

    original = events.process_events

    def broken_for_marked(batch):
        if any(e.get("kind") == "boom" for e in batch):
            raise ValueError("a bug outside the per-charger isolation")
        return original(batch)

    monkeypatch.setattr(events, "process_events", broken_for_marked)
    consumer = FakeConsumer()
    buf = buffer(consumer)
    good = FakeRequest([tx(charger, "started", "g-1", 0, meter_wh=5)])
    bad = FakeRequest([{"identity": charger.identity, "kind": "boom", "payload": {}}])
    buf.receive(good)
    buf.receive(bad)
    consumer.timer.fire()
    # The good message committed; the broken one is acknowledged as a failed task is.
    assert good.outcome == "ack" and bad.outcome == "ack"
    assert "g-1" in sessions(charger)


@pytest.mark.django_db
def test_a_retry_waits_for_its_eta_before_joining_a_batch(charger):
    consumer = FakeConsumer()
    buf = buffer(consumer)
    later = FakeRequest(
        [tx(charger, "started", "e-1", 0)], retries=1, eta=datetime.now(UTC) + timedelta(seconds=8)
    )
    buf.receive(later)
    assert consumer.qos.value == 5  # held meanwhile, outside the prefetch limit (no window yet)
    [entry] = consumer.timer.entries
    assert 7 < entry.secs <= 8 and not buf.requests
    consumer.timer.fire()  # the ETA: it joins a buffer, whose window starts
    assert buf.requests == [later]
    consumer.timer.fire()
    assert later.outcome == "ack" and "e-1" in sessions(charger)


@pytest.mark.django_db
def test_a_message_that_is_not_a_batch_of_events_is_dropped_not_retried():
    consumer = FakeConsumer()
    buf = buffer(consumer)
    odd = FakeRequest(None)
    odd.args = ("not", "events")
    buf.receive(odd)
    consumer.timer.fire()
    assert odd.outcome == "ack"


@pytest.mark.django_db
def test_messages_held_beyond_the_bound_count_against_the_prefetch_limit(charger, monkeypatch):
    """A prefork pool whose processes are all busy: jobs wait, and past MAX_HELD messages the
    consumer stops raising its prefetch limit, so the broker stops delivering."""
    monkeypatch.setattr(batching, "MAX_HELD", 3)
    consumer = FakeConsumer(pool=BusyPool())
    buf = buffer(consumer, max_events=1)  # every message is a job of its own
    requests = [FakeRequest([tx(charger, "started", f"h-{n}", 0)]) for n in range(5)]
    for request in requests:
        buf.receive(request)
    assert consumer.qos.value == 4 + 3 and buf.held == 5
    consumer.pool.finish()
    assert consumer.qos.value == 4 and buf.held == 0
    assert [r.outcome for r in requests] == ["ack"] * 5


@pytest.mark.django_db
def test_no_lookahead_while_the_held_messages_are_at_their_bound(charger, monkeypatch):
    monkeypatch.setattr(batching, "MAX_HELD", 3)
    consumer = FakeConsumer(pool=BusyPool())
    buf = buffer(consumer, max_events=2)  # two one-event messages make a job
    requests = [FakeRequest([tx(charger, "started", f"b-{n}", 0)]) for n in range(5)]
    for request in requests[:4]:
        buf.receive(request)  # two jobs waiting in the pool: 4 held, 3 of them outside QoS
    assert consumer.qos.value == 4 + 3
    buf.receive(requests[4])  # a new window opens, without a lookahead
    assert consumer.qos.value == 4 + 3
    consumer.timer.fire()
    consumer.pool.finish()
    assert consumer.qos.value == 4 and buf.held == 0
    assert [r.outcome for r in requests] == ["ack"] * 5


class BusyPool:
    """Jobs wait until `finish()`, as in a prefork pool with every process busy."""

    def __init__(self):
        self.waiting = []

    def apply_async(self, target, args, callback, error_callback):
        self.waiting.append((target, args, callback))

    def finish(self):
        for target, args, callback in self.waiting:
            callback(target(*args))
        self.waiting = []
