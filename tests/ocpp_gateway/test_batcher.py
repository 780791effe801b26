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
        pending = batcher.pending
        flusher.cancel()
        batcher.publish = lambda batch: None
        await batcher.close()
        return pending

    assert run(scenario()) == 1


def test_sync_with_nothing_pending_returns_at_once():
    async def scenario():
        batcher = EventBatcher(publish=lambda b: None, flush_seconds=1.0)
        await asyncio.wait_for(batcher.sync(), 0.1)
        await batcher.close()

    run(scenario())
