"""Events leave the gateway in batches, as Celery tasks published off the event loop.

Durable before answered: a handler whose answer tells the charger it may forget the message
(transactions, meter values) emits its event, then `await batcher.sync()`, which returns once
every event emitted so far is durable — published to the broker with its confirmation, or, in
the embedded mode, committed. While a handler waits, the flusher publishes after a short window
(`durable_window`, tens of ms) instead of the full `flush_seconds`, so the events of many
chargers still share one task.

Publishing one task costs ~0.5 ms of blocking I/O (measured), so never one per message and never
on the loop: events are buffered and one `chargers.tasks.process_events` task per flush is
published from a dedicated thread, at most every `flush_seconds` or as soon as `max_batch`
events wait. One thread keeps batches in order (and, in eager mode, gives the task one database
connection).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.conf import settings
from django.db import connections
from django.utils import timezone

logger = logging.getLogger(__name__)


class NotDurable(Exception):
    """The events a handler waited for could not be made durable in time (broker or database
    down); the handler must not answer as if they were recorded."""


def publish_batch(events: list[dict]) -> None:
    """Publish one batch as one task (runs in the batcher's thread)."""
    from chargers.tasks import process_events

    process_events.apply_async(args=[events])


class EventBatcher:
    """Collects event dicts and publishes them in batches; `run()` is the single flusher task,
    owned by the gateway server."""

    def __init__(
        self,
        publish=publish_batch,
        flush_seconds: float | None = None,
        max_batch: int = 200,
        max_buffer: int = 200_000,
        durable_window: float | None = None,
        durable_timeout: float | None = None,
    ):
        self.publish = publish
        self.flush_seconds = min(
            flush_seconds if flush_seconds is not None else settings.GATEWAY_EVENT_FLUSH_SECONDS,
            1.0,
        )
        self.max_batch = max_batch
        self.max_buffer = max_buffer
        self.durable_window = (
            durable_window
            if durable_window is not None
            else settings.GATEWAY_DURABLE_WINDOW_SECONDS
        )
        self.durable_timeout = (
            durable_timeout
            if durable_timeout is not None
            else settings.GATEWAY_DURABLE_TIMEOUT_SECONDS
        )
        self._events: list[dict] = []
        # Sequence numbers: `_seq` events were emitted so far, the first `_done` of them are
        # published (or dropped: `_drops` counts the times that happened).
        self._seq = 0
        self._done = 0
        self._drops = 0
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-events")
        self.published = 0

    def emit(
        self,
        identity: str,
        kind: str,
        payload: dict | None = None,
        received_at: datetime | None = None,
    ) -> None:
        """Queue one event (JSON scalars only). Never blocks."""
        self._seq += 1
        self._events.append(
            {
                "identity": identity,
                "kind": kind,
                "payload": payload or {},
                "received_at": (received_at or timezone.now()).isoformat(),
            }
        )
        if len(self._events) >= self.max_batch:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._events)

    async def sync(self, timeout: float | None = None) -> None:
        """Return once every event emitted before this call is durable; raise `NotDurable`
        when that does not happen within `timeout` (default `durable_timeout`) or when events
        had to be dropped meanwhile. The events stay queued either way: a later flush may still
        publish them, which the worker's idempotency absorbs."""
        target = self._seq
        if self._done >= target:
            return
        future = asyncio.get_running_loop().create_future()
        waiter = (target, self._drops, future)
        self._waiters.append(waiter)
        self._wakeup.set()
        try:
            await asyncio.wait_for(
                asyncio.shield(future),
                timeout if timeout is not None else self.durable_timeout,
            )
        except TimeoutError:
            raise NotDurable(f"events not durable after {self.durable_timeout}s") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _settle_waiters(self) -> None:
        still = []
        for target, drops, future in self._waiters:
            if future.done():
                continue
            if self._drops != drops:
                future.set_exception(NotDurable("events dropped (buffer full)"))
            elif self._done >= target:
                future.set_result(None)
            else:
                still.append((target, drops, future))
        self._waiters = still

    async def run(self) -> None:
        """Flush forever; cancelled by the server at shutdown (then `close()` flushes)."""
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.flush_seconds)
            except TimeoutError:
                pass
            if self._waiters and len(self._events) < self.max_batch:
                # Someone waits to answer: gather what other chargers send in the next few ms.
                await asyncio.sleep(self.durable_window)
            self._wakeup.clear()
            if await self.flush():
                failures = 0
            else:
                failures += 1
                await asyncio.sleep(min(0.05 * 2**failures, self.flush_seconds))

    async def flush(self) -> bool:
        """Publish everything pending; False when publishing failed (events kept)."""
        while self._events:
            # Publish at most a few flushes' worth per task: a backlog after a broker outage
            # should not become one huge message.
            batch = self._events[: self.max_batch * 5]
            del self._events[: len(batch)]
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self.publish, batch)
                self.published += len(batch)
                self._done += len(batch)
                self._settle_waiters()
            except Exception:
                # Broker down (or, eager, the database): keep the events and try again next
                # flush, dropping the oldest only beyond max_buffer so memory stays bounded.
                logger.exception("Publishing %d gateway events failed; will retry", len(batch))
                self._events[:0] = batch
                if len(self._events) > self.max_buffer:
                    dropped = len(self._events) - self.max_buffer
                    del self._events[:dropped]
                    self._done += dropped
                    self._drops += 1
                    self._settle_waiters()
                    logger.error("Dropped %d gateway events (buffer full)", dropped)
                return False
        return True

    async def close(self, attempts: int = 10) -> None:
        """Final flush (retried briefly: a broker or database hiccup at shutdown should not
        lose the last events), then release the thread and its database connection."""
        for attempt in range(attempts):
            if await self.flush():
                break
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        else:
            logger.error("Gateway stopped with %d events unpublished", len(self._events))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, connections.close_all)
        self._executor.shutdown(wait=True)
