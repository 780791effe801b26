"""The batcher's durability contract: `sync()` returns only once what was emitted is published,
and raises when it cannot be."""

import asyncio

import pytest

from ocpp_gateway.batcher import EventBatcher, NotDurable


def run(coro):
    return asyncio.run(coro)


def test_sync_returns_after_the_events_are_published():
    published: list[list[dict]] = []

    async def scenario():
        batcher = EventBatcher(
            publish=published.append, flush_seconds=1.0, durable_window=0.01, durable_timeout=5
        )
        flusher = asyncio.create_task(batcher.run())
        batcher.emit("CP-1", "transaction", {"event": "started"})
        batcher.emit("CP-2", "meter_values", {})
        await batcher.sync()
        seen = [e["identity"] for batch in published for e in batch]
        flusher.cancel()
        await batcher.close()
        return seen

    # Answered well before the 1 s flush interval, with both events in the published batch.
    assert run(scenario()) == ["CP-1", "CP-2"]


def test_sync_raises_when_publishing_keeps_failing_and_keeps_the_events():
    def broken(batch):
        raise ConnectionError("broker down")

    async def scenario():
        batcher = EventBatcher(
            publish=broken, flush_seconds=0.05, durable_window=0.01, durable_timeout=0.3
        )
        flusher = asyncio.create_task(batcher.run())
        batcher.emit("CP-1", "transaction", {"event": "ended"})
        with pytest.raises(NotDurable):
            await batcher.sync()
        # A handler cancelled while it waits (its charger hung up) leaves nothing behind either.
        batcher.emit("CP-2", "transaction", {"event": "ended"})
        waiting = asyncio.create_task(batcher.sync())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        pending, waiters = batcher.pending, len(batcher._waiters)
        flusher.cancel()
        batcher.publish = lambda batch: None
        await batcher.close()
        return pending, waiters

    assert run(scenario()) == (2, 0)


def test_sync_with_nothing_pending_returns_at_once():
    async def scenario():
        batcher = EventBatcher(publish=lambda b: None, flush_seconds=1.0)
        await asyncio.wait_for(batcher.sync(), 0.1)
        await batcher.close()

    run(scenario())


def test_an_outage_is_logged_once_without_traceback_and_its_end_is_logged(caplog):
    attempts = []

    def flaky(batch):
        attempts.append(len(batch))
        if len(attempts) <= 3:
            raise ConnectionRefusedError("broker down")

    async def scenario():
        batcher = EventBatcher(
            publish=flaky, flush_seconds=0.05, durable_window=0.01, durable_timeout=5
        )
        flusher = asyncio.create_task(batcher.run())
        batcher.emit("CP-1", "meter_values", {})
        await batcher.sync()  # answered once the outage is over, not before
        flusher.cancel()
        await batcher.close()
        return batcher.published

    with caplog.at_level("WARNING", logger="ocpp_gateway.batcher"):
        assert run(scenario()) == 1
    failures = [r for r in caplog.records if "failed (" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is None
    assert "ConnectionRefusedError: broker down" in failures[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_an_unexpected_publishing_error_is_logged_with_its_traceback(caplog):
    def buggy(batch):
        raise KeyError("bug")

    async def scenario():
        batcher = EventBatcher(publish=buggy, flush_seconds=0.05)
        batcher.emit("CP-1", "heartbeat", {})
        assert not await batcher.flush()
        batcher.publish = lambda batch: None
        await batcher.close()

    with caplog.at_level("ERROR", logger="ocpp_gateway.batcher"):
        run(scenario())
    assert caplog.records[0].exc_info is not None


def test_the_durable_window_is_short_when_idle_and_grows_under_load():
    batcher = EventBatcher(
        publish=lambda batch: None, flush_seconds=1.0, durable_window=0.02, durable_window_max=0.1
    )
    assert batcher.window(now=100.0) == 0.02  # nothing published yet: idle
    batcher._last_publish, batcher._last_publish_size = 100.0, 3
    assert batcher.window(now=100.0) == 0.02  # a few chargers talking fast: no load
    batcher._last_publish_size = 400
    assert batcher.window(now=100.0) == pytest.approx(0.1)  # publishing back to back
    assert batcher.window(now=100.05) == pytest.approx(0.05)
    assert batcher.window(now=100.09) == pytest.approx(0.02)  # never below the idle window
    assert batcher.window(now=160.0) == 0.02
    # The window never exceeds the bound an answer may wait for it.
    assert max(batcher.window(now=100.0 + t / 1000) for t in range(-50, 500)) <= 0.1


def test_a_busy_gateway_publishes_fewer_bigger_messages():
    """Chargers answering back to back: the flusher spaces its publishes by about the largest
    window instead of the idle one, so each message carries the events of many answers."""
    published: list[int] = []

    async def scenario():
        batcher = EventBatcher(
            publish=lambda batch: published.append(len(batch)),
            flush_seconds=1.0,
            durable_window=0.005,
            durable_window_max=0.1,
            durable_timeout=5,
        )
        flusher = asyncio.create_task(batcher.run())

        async def charger(n):
            loop = asyncio.get_running_loop()
            until = loop.time() + 0.6
            while loop.time() < until:
                batcher.emit(f"CP-{n}", "meter_values", {})
                await batcher.sync()

        await asyncio.gather(*(charger(n) for n in range(100)))
        flusher.cancel()
        await batcher.close()

    run(scenario())
    # With the 5 ms idle window alone this would be ~100 publishes; spaced by ~100 ms, a few.
    assert len(published) <= 12, published
    assert sum(published) / len(published) >= 50  # 100 chargers: most of them in each message


def _sqlite_busy():
    import sqlite3

    from django.db import OperationalError

    error = OperationalError("database is locked")
    error.__cause__ = sqlite3.OperationalError("database is locked")
    return error


def test_sqlite_busy_in_the_embedded_mode_is_retried_without_a_word(caplog):
    """Issue 7.6: the demo (SQLite) must not log "database is locked" when the portal held the
    write lock for a moment; the events are published at the next attempt."""
    attempts = []

    def busy_once(batch):
        attempts.append(len(batch))
        if len(attempts) == 1:
            raise _sqlite_busy()

    async def scenario():
        batcher = EventBatcher(
            publish=busy_once, flush_seconds=0.05, durable_window=0.01, durable_timeout=5
        )
        flusher = asyncio.create_task(batcher.run())
        batcher.emit("CP-1", "meter_values", {})
        await batcher.sync()
        flusher.cancel()
        await batcher.close()
        return batcher.published

    with caplog.at_level("DEBUG", logger="ocpp_gateway.batcher"):
        assert run(scenario()) == 1
    assert len(attempts) == 2
    assert not caplog.records


def test_the_publish_thread_runs_calls_in_order_on_one_thread_and_returns_their_outcome():
    import threading

    from ocpp_gateway.batcher import PublishThread

    executor = PublishThread()
    seen = []

    def record(n):
        seen.append((n, threading.current_thread().name))
        if n == 3:
            raise ValueError("three")
        return n * 10

    async def scenario():
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(executor, record, n) for n in range(5)),
            return_exceptions=True,
        )
        executor.shutdown(wait=True)
        return results

    results = run(scenario())
    assert results[:3] == [0, 10, 20] and isinstance(results[3], ValueError) and results[4] == 40
    assert [n for n, _ in seen] == [0, 1, 2, 3, 4]
    assert {name for _, name in seen} == {"gateway-events"}
    with pytest.raises(RuntimeError):
        executor.submit(record, 5)


def test_a_flusher_stopped_mid_publish_neither_loses_nor_repeats_the_batch():
    """The gateway cancels the flusher when it stops; a batch already in the publishing thread
    is waited for and counted, so the final flush does not publish it again (and a batch the
    thread had not started is not dropped on the floor)."""
    import threading

    release = threading.Event()
    published: list[list] = []

    def slow(batch):
        release.wait(5)
        published.append(list(batch))

    async def scenario():
        batcher = EventBatcher(publish=slow, flush_seconds=0.05, durable_window=0.0)
        flusher = asyncio.create_task(batcher.run())
        batcher.emit("CP-1", "heartbeat")
        await asyncio.sleep(0.2)  # the flusher is inside the publish now
        flusher.cancel()
        await asyncio.sleep(0.05)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await flusher
        batcher.emit("CP-1", "status", {"status": "Available"})
        await batcher.close()
        return batcher.published

    assert run(scenario()) == 2
    assert [[e["kind"] for e in batch] for batch in published] == [["heartbeat"], ["status"]]


def test_one_timer_fails_each_waiter_at_its_own_deadline():
    """Every waiting handler shares one timer (not one each): a waiter with a shorter timeout
    that arrives after a longer one still fails on time, the longer one keeps waiting, and a
    waiter settled meanwhile is not failed."""

    async def scenario():
        batcher = EventBatcher(publish=lambda b: None, flush_seconds=1.0, durable_timeout=5)
        loop = asyncio.get_running_loop()
        batcher.emit("CP-1", "meter_values", {})
        long = asyncio.create_task(batcher.sync(timeout=0.6))
        await asyncio.sleep(0)
        batcher.emit("CP-2", "meter_values", {})
        start = loop.time()
        with pytest.raises(NotDurable):
            await batcher.sync(timeout=0.1)
        short_failed_after = loop.time() - start
        assert not long.done()
        with pytest.raises(NotDurable):
            await long
        long_failed_after = loop.time() - start
        # A waiter settled by a publish before its deadline is left alone by the timer.
        batcher.emit("CP-3", "meter_values", {})
        settled = asyncio.create_task(batcher.sync(timeout=0.1))
        await asyncio.sleep(0)
        assert await batcher.flush()
        await settled
        await asyncio.sleep(0.15)
        waiters = len(batcher._waiters)
        await batcher.close()
        return short_failed_after, long_failed_after, waiters, batcher._expiry

    short, long, waiters, expiry = run(scenario())
    assert 0.09 <= short < 0.4
    assert 0.4 <= long < 1.0
    assert waiters == 0 and expiry is None


def test_a_batch_is_encoded_as_kombus_json_encoder_would():
    """orjson writes the task body; the worker decodes it with kombu's JSON decoder and must
    read the same values as before. What orjson refuses or would write otherwise (an integer
    beyond 64 bits, a datetime, a non-string key) goes through kombu's own encoder."""
    from datetime import UTC, datetime

    from kombu.utils.json import dumps, loads

    from ocpp_gateway.batcher import encode_body

    events = [
        {
            "identity": "CP-é",
            "kind": "meter_values",
            "payload": {"samples": [{"value": "12.5", "n": 3, "x": 1.25, "ok": True, "no": None}]},
            "received_at": "2026-01-01T00:00:00+00:00",
        }
    ]
    body = ((events,), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    assert loads(encode_body(body)) == loads(dumps(body))
    for odd in (10**30, datetime(2026, 1, 1, tzinfo=UTC), {1: "one"}):
        assert loads(encode_body({"v": odd})) == loads(dumps({"v": odd}))
