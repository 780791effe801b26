"""The worker under real-world charger behaviour and faults: samples kept whatever their seqNo or
order, stale sessions closed, unknown stops flagged, poison values and permanent errors
quarantined without blocking the rest of a batch, only transient errors retried, and a bounded
number of queries per batch."""

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import DataError, IntegrityError, OperationalError
from django.urls import reverse

from chargers import events as ev
from chargers import tasks
from chargers.events import batch as batch_module
from chargers.events import handlers
from chargers.models import (
    Anomaly,
    Charger,
    ChargingSession,
    Connector,
    MeterSample,
    OcppMessage,
    QuarantinedEvents,
)
from communities.models import AuditEvent, Role

from .. import builders
from .test_events import T0, at, event, sample, tx

# Test bodies read tenant data in the community fixture's scope (tests/conftest.py).
pytestmark = pytest.mark.community_scope


def samples_of(charger, tid):
    return MeterSample.objects.filter(session__charger=charger, session__transaction_id=tid)


def session_of(charger, tid) -> ChargingSession:
    return ChargingSession.objects.get(charger=charger, transaction_id=tid)


def meter(charger, tid, value, minutes, connector=1):
    return event(
        charger,
        "meter_values",
        {
            "transaction_id": tid,
            "evse_id": connector,
            "connector_id": connector,
            "samples": [sample(value, minutes)],
        },
        received=at(minutes, 1),
    )


# --- integrity: samples -------------------------------------------------------------------------
@pytest.mark.django_db
def test_seqno_zero_in_every_event_keeps_every_sample(charger):
    """Issue 7.8: a 2.0.1 charger sending seqNo 0 every time lost all its live meter values."""
    events = [tx(charger, "started", "z-1", 0, seq_no=0, meter_wh=1000)]
    events += [
        tx(charger, "updated", "z-1", m, seq_no=0, samples=[sample(1000 + m * 100, m)])
        for m in range(1, 11)
    ]
    for e in events:  # one per batch, as they arrive
        ev.process_events([e])
    assert samples_of(charger, "z-1").count() == 10
    s = session_of(charger, "z-1")
    assert s.meter_last_wh == Decimal("2000.0") and s.energy_wh == Decimal("1000.0")


@pytest.mark.django_db
def test_redelivered_older_batch_after_a_newer_one_keeps_every_sample(charger):
    """Issue 13.3: a retried batch applied after a newer one lost its Updated samples."""
    start = [tx(charger, "started", "r-1", 0, seq_no=0, meter_wh=0)]
    older = [
        tx(charger, "updated", "r-1", m, seq_no=m, samples=[sample(m * 10, m)]) for m in (1, 2)
    ]
    newer = [
        tx(charger, "updated", "r-1", m, seq_no=m, samples=[sample(m * 10, m)]) for m in (3, 4)
    ]
    ev.process_events(start)
    ev.process_events(newer)
    ev.process_events(older)  # redelivered late
    ev.process_events(older)  # and twice
    assert samples_of(charger, "r-1").count() == 4
    s = session_of(charger, "r-1")
    assert s.meter_last_wh == Decimal("40.0")  # the live reading only moves forward in time
    assert s.last_seq_no == 4


# --- integrity: sessions ------------------------------------------------------------------------
@pytest.mark.django_db
def test_new_transaction_closes_the_stale_session_on_its_outlet(charger):
    ev.process_events(
        [tx(charger, "started", "old", 0, meter_wh=5000), meter(charger, "old", 6200, 10)]
    )
    ev.process_events([tx(charger, "started", "new", 60, meter_wh=9000)])
    old, new = session_of(charger, "old"), session_of(charger, "new")
    assert new.state == ChargingSession.State.ACTIVE
    assert old.state == ChargingSession.State.COMPLETED
    assert old.anomaly == Anomaly.CLOSED_NEW_TRANSACTION
    # Energy from its last reading, stopped at that reading.
    assert old.meter_stop_wh == Decimal("6200.0") and old.energy_wh == Decimal("1200.0")
    assert old.stopped_at == T0 + timedelta(minutes=10)
    # Replays change nothing.
    ev.process_events([tx(charger, "started", "old", 0, meter_wh=5000)])
    ev.process_events([tx(charger, "started", "new", 60, meter_wh=9000)])
    assert session_of(charger, "new").state == ChargingSession.State.ACTIVE
    assert ChargingSession.objects.filter(charger=charger).count() == 2


@pytest.mark.django_db
def test_a_start_on_another_outlet_leaves_a_session_alone(charger):
    ev.process_events([tx(charger, "started", "a", 0, meter_wh=0)])
    ev.process_events([tx(charger, "started", "b", 5, meter_wh=0, evse_id=2, connector_id=2)])
    assert session_of(charger, "a").state == ChargingSession.State.ACTIVE


@pytest.mark.django_db
def test_older_start_applied_after_a_newer_one_is_the_stale_session(charger):
    ev.process_events([tx(charger, "started", "new", 60, meter_wh=9000)])
    ev.process_events([tx(charger, "started", "old", 0, meter_wh=5000)])  # batches out of order
    assert session_of(charger, "new").state == ChargingSession.State.ACTIVE
    old = session_of(charger, "old")
    assert old.state == ChargingSession.State.COMPLETED
    assert old.anomaly == Anomaly.CLOSED_NEW_TRANSACTION


@pytest.mark.django_db
def test_reboot_closes_the_unfinished_session_and_a_later_offline_stop_completes_it(charger):
    ev.process_events(
        [tx(charger, "started", "7", 0, meter_wh=1000), meter(charger, "7", 1800, 20)]
    )
    ev.process_events([event(charger, "boot", {"vendor": "V", "model": "M"}, received=at(45))])
    s = session_of(charger, "7")
    assert s.state == ChargingSession.State.COMPLETED and s.anomaly == Anomaly.CLOSED_REBOOT
    assert s.energy_wh == Decimal("800.0")
    assert s.stopped_at == T0 + timedelta(minutes=20)
    # The charger replays its StopTransaction (stored offline) after the boot.
    ev.process_events([tx(charger, "ended", "7", 30, meter_wh=2100, reason="PowerLoss")])
    s = session_of(charger, "7")
    assert s.anomaly == "" and s.stop_reason == "PowerLoss"
    assert s.energy_wh == Decimal("1100.0") and s.stopped_at == T0 + timedelta(minutes=30)
    # A replay of the boot, or of the stop, changes nothing.
    ev.process_events([event(charger, "boot", {"vendor": "V", "model": "M"}, received=at(45))])
    ev.process_events([tx(charger, "ended", "7", 30, meter_wh=2100, reason="PowerLoss")])
    s = session_of(charger, "7")
    assert s.anomaly == "" and s.energy_wh == Decimal("1100.0")


@pytest.mark.django_db
def test_a_session_started_after_the_boot_is_left_alone(charger):
    boot = event(charger, "boot", {"vendor": "V"}, received=at(5))
    ev.process_events([boot, tx(charger, "started", "8", 6, meter_wh=0)])
    ev.process_events([boot])  # replayed
    assert session_of(charger, "8").state == ChargingSession.State.ACTIVE


@pytest.mark.django_db
def test_stop_for_an_unknown_transaction_is_kept_and_flagged(charger, client, community):
    ev.process_events([tx(charger, "ended", "999", 30, meter_wh=5000, reason="Local")])
    s = session_of(charger, "999")
    assert s.state == ChargingSession.State.COMPLETED and s.meter_stop_wh == Decimal("5000.0")
    assert s.anomaly == Anomaly.STOP_WITHOUT_START
    # Visible to managers on the sessions page.
    manager = builders.make_member(community, Role.MANAGER).user
    client.force_login(manager)
    page = client.get(reverse("chargers:session-list", kwargs={"community": community.slug}))
    assert str(Anomaly.STOP_WITHOUT_START.label) in page.content.decode()
    # The start arriving late (batches out of order) completes the picture and clears the flag.
    ev.process_events([tx(charger, "started", "999", 0, meter_wh=4000)])
    s = session_of(charger, "999")
    assert s.anomaly == "" and s.energy_wh == Decimal("1000.0")


# --- isolation: values refused before the database ----------------------------------------------
@pytest.mark.django_db
def test_poison_register_next_to_a_healthy_charger(community, site, charger, manager_client):
    """Issue 7.2: a 10^15 Wh register failed the whole batch and blocked every charger after it."""
    poison = builders.make_charger(community, site=site, identity="CP-POISON")
    batch = [
        tx(poison, "started", "p-1", 0, meter_wh=10**15),
        tx(charger, "started", "h-1", 0, meter_wh=1000),
        meter(poison, "p-1", 10**15 + 5, 5),
        tx(charger, "ended", "h-1", 30, meter_wh=4000, reason="Local"),
        event(poison, "heartbeat", received=at(31)),
    ]
    result = ev.process_events(batch)
    assert result["quarantined"] == 2
    healthy = session_of(charger, "h-1")
    assert healthy.state == ChargingSession.State.COMPLETED
    assert healthy.energy_wh == Decimal("3000.0")
    # The poison's events are kept aside, with the value, and its other events recorded.
    entries = QuarantinedEvents.objects.filter(charger=poison)
    assert entries.count() == 2 and {e.cause for e in entries} == {"invalid"}
    assert all("absurd energy register" in e.error for e in entries)
    assert not ChargingSession.objects.filter(charger=poison).exists()
    poison.refresh_from_db()
    assert poison.last_seen is not None
    # Redelivered: nothing twice.
    ev.process_events(batch)
    assert sum(e.count for e in QuarantinedEvents.objects.filter(charger=poison)) == 2
    # Visible on the charger page.
    page = manager_client.get(
        reverse("chargers:charger-detail", kwargs={"community": "tilleuls", "charger": poison.pk})
    )
    # The portal speaks French by default.
    assert "n'ont pas pu être enregistrés" in page.content.decode()
    assert "absurd energy register" in page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload,reason",
    [
        ({"meter_wh": -5}, "negative energy register"),
        ({"samples": [sample(-1, 1)]}, "negative energy register"),
        ({"samples": [sample(10**14, 1, measurand="Power.Active.Import")]}, "absurd sample"),
        ({"connector_id": 2**40}, "connector_id out of range"),
        ({"evse_id": "one"}, "evse_id is not an integer"),
        ({"transaction_id": "x" * 65}, "transaction id longer"),
    ],
)
def test_values_that_cannot_be_right_are_refused(charger, payload, reason):
    bad = tx(charger, "started", "v-1", 0, **payload)
    result = ev.process_events([bad, event(charger, "heartbeat")])
    assert result["quarantined"] == 1
    entry = QuarantinedEvents.objects.get(charger=charger)
    assert reason in entry.error and entry.events[0]["kind"] == "transaction"


@pytest.mark.django_db
def test_impossible_timestamps_fall_back_to_the_gateway_clock(charger):
    ev.process_events(
        [
            tx(charger, "started", "t-1", 0, timestamp="0001-01-01T00:00:00+14:00", meter_wh=0),
            tx(
                charger,
                "updated",
                "t-1",
                1,
                samples=[{"timestamp": "1970-01-01T00:00:00Z", "value": "5"}],
            ),
        ]
    )
    s = session_of(charger, "t-1")
    assert s.started_at == T0 + timedelta(seconds=1)  # received_at of the start
    # A sample without a possible time takes its event's.
    assert samples_of(charger, "t-1").get().timestamp == T0 + timedelta(minutes=1)


# --- isolation: permanent errors ----------------------------------------------------------------
@pytest.mark.django_db
def test_a_bug_in_one_charger_s_events_quarantines_that_charger_only(
    community, site, charger, monkeypatch
):
    other = builders.make_charger(community, site=site, identity="CP-BUGGY")
    real = handlers.HANDLERS["status"]

    def buggy(st, payload, at_):
        if st.charger.identity == "CP-BUGGY":
            raise KeyError("boom")
        real(st, payload, at_)

    monkeypatch.setitem(handlers.HANDLERS, "status", buggy)
    status = {"evse_id": 1, "connector_id": 1, "status": "Charging", "error_code": "NoError"}
    result = ev.process_events([event(other, "status", status), event(charger, "status", status)])
    assert result["chargers"] == 1 and result["quarantined"] == 1
    assert Connector.objects.get(charger=charger).status == "Charging"
    entry = QuarantinedEvents.objects.get(charger=other)
    assert entry.cause == "error" and "KeyError" in entry.error

    # Fixed (a new release): the retry applies them and resolves the entry.
    monkeypatch.setitem(handlers.HANDLERS, "status", real)
    entry.state = QuarantinedEvents.State.RETRIED
    entry.save()
    assert tasks.retry_quarantined.delay(entry.pk).get() is True
    entry.refresh_from_db()
    assert entry.state == QuarantinedEvents.State.RESOLVED and entry.attempts == 1
    assert Connector.objects.get(charger=other).status == "Charging"


@pytest.mark.django_db
def test_database_refusal_falls_back_to_one_charger_at_a_time(
    community, site, charger, monkeypatch
):
    """A permanent database error (DataError) in the set-based write: the batch is applied
    again charger by charger; the good ones commit, the failing one is quarantined."""
    bad = builders.make_charger(community, site=site, identity="CP-DATAERR")
    real_flush = batch_module.Batch.flush

    def flush(self):
        if any(st.charger.identity == "CP-DATAERR" for st in self.states):
            raise DataError("numeric field overflow")
        return real_flush(self)

    monkeypatch.setattr(batch_module.Batch, "flush", flush)
    result = ev.process_events(
        [
            tx(bad, "started", "d-1", 0, meter_wh=1),
            tx(charger, "started", "g-1", 0, meter_wh=1),
            tx(charger, "ended", "g-1", 10, meter_wh=501, reason="Local"),
        ]
    )
    assert result["chargers"] == 1 and result["quarantined"] == 1
    assert session_of(charger, "g-1").energy_wh == Decimal("500.0")
    entry = QuarantinedEvents.objects.get(charger=bad)
    assert "DataError: numeric field overflow" in entry.error


# --- retries: transient only --------------------------------------------------------------------
def _wrapped(django_cls, psycopg_cls, message="x"):
    exc = django_cls(message)
    exc.__cause__ = psycopg_cls(message)
    return exc


def test_only_transient_database_errors_are_retried():
    assert ev.is_transient(_wrapped(OperationalError, psycopg.errors.SerializationFailure))
    assert ev.is_transient(_wrapped(OperationalError, psycopg.errors.DeadlockDetected))
    assert ev.is_transient(_wrapped(OperationalError, psycopg.errors.AdminShutdown))
    assert ev.is_transient(_wrapped(OperationalError, psycopg.OperationalError))  # lost
    assert not ev.is_transient(_wrapped(OperationalError, psycopg.errors.ProgramLimitExceeded))
    assert not ev.is_transient(_wrapped(DataError, psycopg.errors.NumericValueOutOfRange))
    assert not ev.is_transient(_wrapped(IntegrityError, psycopg.errors.UniqueViolation))
    assert not ev.is_transient(ValueError("a bug"))


@pytest.mark.django_db
def test_task_retries_a_transient_error_and_not_a_permanent_one(charger, monkeypatch):
    calls = []

    def flaky(events):
        calls.append(1)
        if len(calls) == 1:
            raise _wrapped(OperationalError, psycopg.errors.SerializationFailure)
        return {"events": len(events)}

    monkeypatch.setattr(tasks.event_services, "process_events", flaky)
    # Eager: Celery runs the retry at once (throw=False lets apply() follow it).
    assert tasks.process_events.apply(args=[[]], throw=False).get() == {"events": 0}
    assert len(calls) == 2

    def broken(events):
        calls.append(1)
        raise ValueError("a bug outside the quarantine")

    calls.clear()
    monkeypatch.setattr(tasks.event_services, "process_events", broken)
    with pytest.raises(ValueError):
        tasks.process_events.delay([]).get()
    assert len(calls) == 1


# --- the message log: frames as text ------------------------------------------------------------
def message(charger, frame=None, payload=None, message_type=2, uid="u1"):
    body = {"direction": "in", "message_type": message_type, "unique_id": uid, "action": "X"}
    if frame is not None:
        body["frame"] = frame
    else:
        body["payload"] = payload
    return event(charger, "message", body)


@pytest.mark.django_db
def test_message_frames_are_decoded_with_bounds(charger):
    deep = '[2,"d","Heartbeat",' + "[" * 600 + "1" + "]" * 600 + "]"
    ev.process_events(
        [
            message(charger, '[2,"u1","Heartbeat",{"a":1}]', uid="u1"),
            message(charger, '[3,"u2",{"currentTime":"x"}]', message_type=3, uid="u2"),
            message(charger, '[4,"u3","NotImplemented","no",{}]', message_type=4, uid="u3"),
            message(charger, deep, uid="deep"),
            message(charger, "not json \x00 at all", message_type=0, uid="junk"),
            message(charger, '[2,"n","X",{"t":"\\u0000"}]', uid="nul"),
            message(charger, payload={"old": "shape"}, uid="legacy"),
        ]
    )
    rows = {m.unique_id: m.payload for m in OcppMessage.objects.filter(charger=charger)}
    assert rows["u1"] == {"a": 1}
    assert rows["u2"] == {"currentTime": "x"}
    assert rows["u3"]["errorCode"] == "NotImplemented"
    assert set(rows["deep"]) == {"raw"} and rows["deep"]["raw"].startswith('[2,"d"')
    assert rows["junk"] == {"raw": "not json  at all"}
    assert rows["nul"] == {"t": ""}
    assert rows["legacy"] == {"old": "shape"}


# --- throughput: round trips do not grow with the batch -----------------------------------------
def mixed_batch(chargers, minute):
    events = []
    for i, c in enumerate(chargers):
        tid = f"q-{c.pk}"
        if minute == 0:
            events.append(tx(c, "started", tid, 0, meter_wh=1000, id_tag=f"CARD{i}"))
        events += [
            meter(c, tid, 1000 + minute * 50, minute),
            event(c, "heartbeat", received=at(minute, 2)),
            event(
                c,
                "status",
                {"evse_id": 1, "connector_id": 1, "status": "Charging", "error_code": ""},
                received=at(minute, 3),
            ),
            message(c, '[2,"m","MeterValues",{}]', uid=f"m{minute}-{i}"),
        ]
    return events


@pytest.mark.django_db
@pytest.mark.parametrize("n", [3, 40])
def test_queries_per_batch_do_not_depend_on_its_size(
    community, site, n, django_assert_max_num_queries
):
    chargers = [builders.make_charger(community, site=site) for _ in range(n)]
    with django_assert_max_num_queries(20):
        ev.process_events(mixed_batch(chargers, 0))
    with django_assert_max_num_queries(14):
        ev.process_events(mixed_batch(chargers, 1))
    assert MeterSample.objects.count() == 2 * n
    assert Charger.objects.filter(connected=True).count() == n


# --- the charger page: retry, audited ------------------------------------------------------------
@pytest.mark.django_db
def test_manager_retries_from_the_charger_page(
    charger, manager_client, manager, django_capture_on_commit_callbacks
):
    ev.process_events([tx(charger, "started", "p", 0, meter_wh=-1)])
    entry = QuarantinedEvents.objects.get(charger=charger)
    url = reverse(
        "chargers:charger-events-retry", kwargs={"community": "tilleuls", "charger": charger.pk}
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = manager_client.post(url)
    assert response.status_code == 302
    entry.refresh_from_db()
    # Still invalid: open again, with the attempt counted.
    assert entry.state == QuarantinedEvents.State.OPEN and entry.attempts == 1
    assert AuditEvent.objects.filter(action="charger.events_retry", actor=manager).exists()
    # Nothing left to retry once resolved.
    entry.state = QuarantinedEvents.State.RESOLVED
    entry.save()
    manager_client.post(url)
    assert QuarantinedEvents.objects.get().attempts == 1


@pytest.mark.django_db
def test_limited_installer_and_driver_cannot_retry(client, charger, individual):
    ev.process_events([tx(charger, "started", "p", 0, meter_wh=-1)])
    client.force_login(individual)
    url = reverse(
        "chargers:charger-events-retry", kwargs={"community": "tilleuls", "charger": charger.pk}
    )
    assert client.post(url).status_code == 403
    assert QuarantinedEvents.objects.get().attempts == 0


@pytest.mark.django_db
def test_command_progress_matches_its_row_whatever_the_uid_spelling(charger):
    from chargers.models import ChargerCommand

    command = ChargerCommand.objects.create(
        community=charger.community, charger=charger, action="Reset", from_portal=True
    )
    spelled = str(command.uid).upper()
    ev.process_events(
        [
            event(
                charger,
                "command",
                {
                    "uid": spelled,
                    "action": "Reset",
                    "payload": {},
                    "status": "accepted",
                    "response": {"status": "Accepted"},
                },
            ),
            event(charger, "command", {"uid": "not-a-uuid", "action": "Reset", "status": "sent"}),
        ]
    )
    command.refresh_from_db()
    assert command.status == "accepted" and command.response == {"status": "Accepted"}
    assert ChargerCommand.objects.count() == 1
    assert QuarantinedEvents.objects.get(charger=charger).cause == "invalid"


@pytest.mark.django_db
def test_the_batch_price_list_answers_like_price_at(community, charger):
    """The worker reads a batch's prices once; its answer must be `billing.prices.price_at`'s,
    local date included (a session starting at 23:30 UTC on the 14th is on the 15th in Paris)."""
    from datetime import UTC, datetime

    from billing.prices import price_at

    community.time_zone = "Europe/Paris"
    community.save()
    builders.make_price(community, price="0.3000", valid_from="2025-10-15")
    batch = batch_module.Batch({charger.identity: []}).load()
    for when in [
        datetime(2025, 10, 14, 21, 30, tzinfo=UTC),
        datetime(2025, 10, 14, 22, 30, tzinfo=UTC),
        datetime(2025, 10, 15, 12, 0, tzinfo=UTC),
        datetime(2019, 1, 1, tzinfo=UTC),
    ]:
        assert batch.price(charger, when) == price_at(community, when), when


@pytest.mark.django_db
def test_staff_see_and_retry_quarantined_events_in_the_admin(
    admin_client, charger, django_capture_on_commit_callbacks
):
    ev.process_events([tx(charger, "started", "p", 0, meter_wh=10**15)])
    entry = QuarantinedEvents.objects.get()
    changelist = admin_client.get(reverse("admin:chargers_quarantinedevents_changelist"))
    assert changelist.status_code == 200 and charger.identity in changelist.content.decode()
    detail = admin_client.get(reverse("admin:chargers_quarantinedevents_change", args=[entry.pk]))
    assert detail.status_code == 200 and "absurd energy register" in detail.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:chargers_quarantinedevents_changelist"),
            {"action": "retry", "_selected_action": [entry.pk]},
        )
    entry.refresh_from_db()
    assert entry.attempts == 1 and entry.state == QuarantinedEvents.State.OPEN  # still absurd
    admin_client.post(
        reverse("admin:chargers_quarantinedevents_changelist"),
        {"action": "mark_resolved", "_selected_action": [entry.pk]},
    )
    entry.refresh_from_db()
    assert entry.state == QuarantinedEvents.State.RESOLVED


@pytest.mark.django_db
def test_no_event_shape_makes_a_batch_fail(charger):
    """Whatever reaches the worker, the batch completes: odd events are ignored or quarantined,
    the honest ones recorded."""
    hostile = [
        "not an event",
        {"kind": "status"},  # no identity
        event(charger, "status", ["not", "an", "object"]),
        event(charger, ["unhashable"], {}),
        event(charger, "no_such_kind", {}),
        event(charger, "transaction", {"event": "started", "transaction_id": {"a": 1}}),
        event(charger, "configuration", {"values": {"K": "\x00\ud800" * 3}}),
        event(charger, "boot", {"vendor": 5, "heartbeat_interval": 10**20}),
        {**event(charger, "heartbeat"), "received_at": "yesterday"},
        tx(charger, "started", "ok-1", 0, meter_wh=10),
    ]
    result = ev.process_events(hostile)
    assert result["ignored"] == 2
    assert session_of(charger, "ok-1").meter_start_wh == Decimal("10.0")
    charger.refresh_from_db()
    assert charger.configuration == {"K": "?" * 3}
    assert charger.reported_vendor == "5" and charger.heartbeat_interval == 300
    errors = " ".join(QuarantinedEvents.objects.values_list("error", flat=True))
    assert "payload is not an object" in errors and "kind is not text" in errors
    assert "transaction id is not text" in errors
