"""Events leave the gateway in batches, as Celery tasks published off the event loop.

Durable before answered: a handler whose answer tells the charger it may forget the message
(transactions, meter values) emits its event, then `await batcher.sync()`, which returns once
every event emitted so far is durable — published to the broker with its confirmation, or, in
the embedded mode, committed. While a handler waits, the flusher publishes after a short window
instead of the full `flush_seconds`, so the events of many chargers still share one task. The
window adapts to the load: `durable_window` (20 ms) when the gateway is idle, growing up to
`durable_window_max` (100 ms) when it publishes big batches back to back, so that a busy gateway sends at
most about one message per `durable_window_max` — bigger messages, fewer of them for the worker
— and no answer waits longer than that for its window.

Publishing one task costs ~0.5 ms of blocking I/O (measured), so never one per message and never
on the loop: events are buffered and one `chargers.tasks.process_events` task per flush is
published from a dedicated thread, at most every `flush_seconds` or as soon as `max_batch`
events wait. One thread keeps batches in order (and, in eager mode, gives the task one database
connection).

The message is Celery's own (task protocol 2, built by `app.amqp.create_task_message`), but it
does not go through `Task.apply_async`: that path re-read a dozen settings through Django's lazy
settings, ran the publish signals and serialised the batch with the json module — 60 % of the
publishing thread's CPU. Here the route is resolved once per broker connection and the body is
serialised with orjson (`encode_body`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import orjson
from django.conf import settings
from django.db import connections
from django.utils import timezone

from chargers.contract import Event, Kind

if TYPE_CHECKING:
    from celery import Celery, Task
    from kombu import Connection, Producer

logger = logging.getLogger(__name__)


class NotDurable(Exception):
    """The events a handler waited for could not be made durable in time (broker or database
    down); the handler must not answer as if they were recorded."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Errors of a dependency being away, as opposed to bugs."""
    from amqp.exceptions import AMQPError, MessageNacked
    from django.db import InterfaceError, OperationalError
    from kombu.exceptions import OperationalError as BrokerError

    return (
        OSError,
        TimeoutError,
        BrokerError,
        AMQPError,
        MessageNacked,
        OperationalError,
        InterfaceError,
    )


def encode_body(body: object) -> bytes:
    """A task body as JSON bytes, as kombu's json serializer would write it but ~10x faster
    (orjson). Events are JSON scalars, lists and dicts (`chargers.contract`); anything orjson
    refuses or would write differently — a datetime, an integer beyond 64 bits, a non-string
    key — goes through kombu's own encoder instead, so the worker decodes the same values."""
    try:
        return orjson.dumps(body, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:
        from kombu.utils.json import dumps

        return dumps(body).encode()


def _sqlite_busy(exc: BaseException) -> bool:
    from chargers.events import is_sqlite_busy

    return is_sqlite_busy(exc)


class Publisher:
    """Publishes one batch as one `chargers.tasks.process_events` task; runs in the batcher's
    single thread, which owns its broker connection.

    - Embedded mode (eager): the task runs here, so returning means committed; a database
      error propagates and the batcher keeps the events.
    - RabbitMQ: the connection has publisher confirms on (`confirm_publish`), so returning means
      the broker acknowledged the persistent message on its durable queue — on disk. A nack, a
      lost connection or no confirm within `timeout` raises instead of blocking: the batcher
      keeps the events and tries again. A connection that failed is dropped and a new one is
      opened at once: a broker restart costs no answer more than the reconnection.
    """

    def __init__(self, timeout: float | None = None, url: str | None = None) -> None:
        self.url = url  # the broker; default CELERY_BROKER_URL
        self.timeout = timeout if timeout is not None else settings.GATEWAY_PUBLISH_TIMEOUT_SECONDS
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        # (exchange, routing key, delivery mode) of the task's queue, resolved with the
        # connection; and the `origin` header Celery would compute at each publish.
        self._route: tuple[str, str, int | None] = ("", "", None)
        self._origin = f"gen{os.getpid()}@{socket.gethostname()}"

    def __call__(self, events: list[Event]) -> None:
        from chargers.tasks import process_events

        if process_events.app.conf.task_always_eager:
            process_events.apply_async(args=(events,))
            return
        # A connection that served before may have been closed by a broker restart without us
        # noticing (nothing reads from it between publishes): one immediate second attempt on a
        # fresh connection, so a restart does not delay the answers by a backoff step.
        attempts = 2 if self._producer is not None else 1
        for attempt in range(attempts):
            try:
                self._publish(process_events, events)
            except Exception as exc:
                self._drop_connection()
                if attempt + 1 < attempts:
                    logger.warning("Broker connection lost (%s); reconnecting", exc)
                    continue
                raise
            else:
                return

    def _publish(self, task: Task[Any, Any], events: list[Event]) -> None:
        if self._producer is None:
            app = task.app
            # No heartbeats: nothing services them between publishes; a dead connection is
            # found by the next publish (it raises, or its confirm times out).
            connection = app.connection_for_write(self.url, heartbeat=0)
            # One attempt. kombu-stubs type `timeout` as int; kombu takes any number of seconds.
            connection.ensure_connection(max_retries=0, timeout=self.timeout)  # type: ignore[arg-type]
            producer = app.amqp.Producer(connection)
            # The task's queue is declared once per connection, here, and not at each publish
            # (`declare=[]` below): Celery would bind and copy the queue object every time.
            task_queue = app.amqp.router.route({}, task.name).get("queue")
            if task_queue is not None:
                producer.maybe_declare(task_queue, retry=False)
            self._route = _route(app, task_queue)
            self._connection = connection
            self._producer = producer
        exchange, routing_key, delivery_mode = self._route
        task_id = str(uuid.uuid4())
        headers, properties, body, _ = task.app.amqp.create_task_message(
            task_id,
            task.name,
            (events,),
            {},
            # Celery would otherwise `saferepr` the whole batch for its logs: a tenth of the CPU
            # of a publish, for a repr the worker logs truncated anyway.
            argsrepr=f"[<{len(events)} events>]",
            kwargsrepr="{}",
            origin=self._origin,
            ignore_result=task.ignore_result,
        )
        self._producer.publish(
            encode_body(body),
            exchange=exchange,
            routing_key=routing_key,
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
            delivery_mode=delivery_mode,
            # Declared once per connection (above); retries belong to the batcher (it keeps the
            # events): here one attempt, bounded by the publish and the confirm timeouts.
            declare=[],
            retry=False,
            timeout=self.timeout,
            confirm_timeout=self.timeout,
            **properties,
        )

    def _drop_connection(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.collect()  # release without talking to a broker that may be gone
            except Exception:  # pragma: no cover - best effort
                logger.debug("Closing the broker connection failed", exc_info=True)

    def close(self) -> None:
        self._drop_connection()


def _route(app: Celery, task_queue: Any) -> tuple[str, str, int | None]:
    """Where Celery's `send_task_message` would send a task routed to `task_queue` without an
    explicit exchange or routing key: a direct exchange becomes the default exchange with the
    queue's name as routing key; the delivery mode is the exchange's, else the configured
    default (persistent)."""
    modes = {"transient": 1, "persistent": 2}  # AMQP's delivery modes, as kombu names them
    default_mode = app.conf.task_default_delivery_mode
    default_mode = modes.get(default_mode, default_mode)
    if task_queue is None:
        return "", app.conf.task_default_queue, default_mode
    exchange = task_queue.exchange
    delivery_mode = (exchange.delivery_mode if exchange is not None else None) or default_mode
    if exchange is None or exchange.type == "direct":
        return "", task_queue.name, delivery_mode
    return (
        exchange.name or app.conf.task_default_exchange,
        task_queue.routing_key or app.conf.task_default_routing_key,
        delivery_mode,
    )


def publish_batch(events: list[Event]) -> None:
    """Publish one batch with a throw-away connection (scripts, tests); the gateway's batcher
    keeps one `Publisher` and its connection instead."""
    publisher = Publisher()
    try:
        publisher(events)
    finally:
        publisher.close()


P = ParamSpec("P")
T = TypeVar("T")


class PublishThread(Executor):
    """One thread that runs what is submitted, in order: the batcher's publisher, which owns
    the broker connection (and, eager, the database connection). What a one-worker
    ThreadPoolExecutor did, without its per-call semaphore and locks: with every flush handing
    a batch over, `ThreadPoolExecutor.submit` held a seventh of the gateway's GIL time (py-spy,
    50 chargers answering one message at a time)."""

    def __init__(self, name: str = "gateway-events") -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if not self._started:
            self._started = True
            self._thread.start()
        future: Future[T] = Future()
        self._queue.put((future, lambda: fn(*args, **kwargs)))
        return future

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if wait and self._started:
            self._thread.join()


async def _outcome(publishing: asyncio.Future[None]) -> tuple[Exception | None, bool]:
    """Wait for a publish running in the publishing thread: (its error or None, whether the
    waiting task was cancelled meanwhile). A flusher cancelled mid-publish (the gateway
    stopping) still waits for the outcome — the batch is already in the thread — so its events
    are counted once, neither lost nor published again by the final flush."""
    cancelled = False
    while True:
        try:
            await asyncio.shield(publishing)
        except asyncio.CancelledError:
            if publishing.cancelled():
                raise
            cancelled = True
        except Exception as exc:
            return exc, cancelled
        else:
            return None, cancelled


class EventBatcher:
    """Collects event dicts and publishes them in batches; `run()` is the single flusher task,
    owned by the gateway server."""

    #: A publish of at least this many events means load: the durable window grows.
    BUSY_EVENTS = 50

    def __init__(
        self,
        publish: Callable[[list[Event]], None] | None = None,
        flush_seconds: float | None = None,
        max_batch: int = 200,
        max_buffer: int = 200_000,
        durable_window: float | None = None,
        durable_timeout: float | None = None,
        durable_window_max: float | None = None,
    ) -> None:
        self.publish = publish if publish is not None else Publisher()
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
        self.durable_window_max = max(
            self.durable_window,
            durable_window_max
            if durable_window_max is not None
            else settings.GATEWAY_DURABLE_WINDOW_MAX_SECONDS,
        )
        self._last_publish = -float("inf")  # monotonic time of the last successful publish
        self._last_publish_size = 0  # and how many events it carried
        self.durable_timeout = (
            durable_timeout
            if durable_timeout is not None
            else settings.GATEWAY_DURABLE_TIMEOUT_SECONDS
        )
        self._events: list[Event] = []
        # Sequence numbers: `_seq` events were emitted so far, the first `_done` of them are
        # published (or dropped: `_drops` counts the times that happened).
        self._seq = 0
        self._done = 0
        self._drops = 0
        # (target sequence number, drops when it started waiting, future, deadline, timeout): one
        # waiting handler each; `_expiry` is the one timer for all of them (`_expire_waiters`).
        self._waiters: list[tuple[int, int, asyncio.Future[None], float, float]] = []
        self._expiry: asyncio.TimerHandle | None = None
        self._wakeup = asyncio.Event()
        self._executor = PublishThread()
        self.published = 0
        self._failing_since: float | None = None
        self._last_failure_log = 0.0
        self._failed_attempts = 0
        self._quiet = False  # the current outage is SQLite being busy: not logged unless it lasts

    def emit(
        self,
        identity: str,
        kind: Kind,
        payload: dict[str, Any] | None = None,
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
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        limit = timeout if timeout is not None else self.durable_timeout
        deadline = loop.time() + limit
        waiter = (target, self._drops, future, deadline, limit)
        self._waiters.append(waiter)
        self._wakeup.set()
        # One future per waiting message (every transaction and meter message), and one timer
        # for all of them: a timer each (`call_later`, then cancelled once durable, usually
        # within ms) left thousands of cancelled timers in the loop's heap under load.
        if self._expiry is None or deadline < self._expiry.when():
            if self._expiry is not None:
                self._expiry.cancel()
            self._expiry = loop.call_at(deadline, self._expire_waiters)
        try:
            await future
        finally:
            if not future.done() or future.cancelled() or future.exception() is not None:
                # Timed out or cancelled: settled waiters are already gone from the list.
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _expire_waiters(self) -> None:
        """The timer of the oldest deadline fired: fail the waiters past theirs, and set the
        timer again for the next deadline, if anyone still waits."""
        self._expiry = None
        now = asyncio.get_running_loop().time()
        still = []
        for waiter in self._waiters:
            future, deadline, limit = waiter[2:]
            if future.done():
                continue
            if deadline <= now:
                future.set_exception(NotDurable(f"events not durable after {limit}s"))
            else:
                still.append(waiter)
        self._waiters = still
        if still:
            next_deadline = min(waiter[3] for waiter in still)
            self._expiry = asyncio.get_running_loop().call_at(next_deadline, self._expire_waiters)

    def _settle_waiters(self) -> None:
        still = []
        for waiter in self._waiters:
            target, drops, future = waiter[:3]
            if future.done():
                continue
            if self._drops != drops:
                future.set_exception(NotDurable("events dropped (buffer full)"))
            elif self._done >= target:
                future.set_result(None)
            else:
                still.append(waiter)
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
                await asyncio.sleep(self.window())
            self._wakeup.clear()
            if await self.flush():
                failures = 0
            else:
                failures += 1
                await asyncio.sleep(min(0.05 * 2**failures, self.flush_seconds))

    def window(self, now: float | None = None) -> float:
        """How long a waiting handler's events wait for others: publishes are spaced by about
        `durable_window_max` when big ones follow each other (load: many chargers answered at
        once), and by `durable_window` when the last one was small or is older than that (idle,
        or a few chargers talking fast, as in the demo); never more than `durable_window_max`."""
        if self._last_publish_size < self.BUSY_EVENTS:
            return self.durable_window
        since = (time.monotonic() if now is None else now) - self._last_publish
        return min(
            self.durable_window_max, max(self.durable_window, self.durable_window_max - since)
        )

    async def flush(self) -> bool:
        """Publish everything pending; False when publishing failed (events kept)."""
        while self._events:
            # Publish at most a few flushes' worth per task: a backlog after a broker outage
            # should not become one huge message.
            batch = self._events[: self.max_batch * 5]
            del self._events[: len(batch)]
            loop = asyncio.get_running_loop()
            error, cancelled = await _outcome(
                loop.run_in_executor(self._executor, self.publish, batch)
            )
            if error is not None:
                # Broker down (or, eager, the database): keep the events and try again next
                # flush, dropping the oldest only beyond max_buffer so memory stays bounded.
                self._events[:0] = batch
                self._log_failure(error)
                if len(self._events) > self.max_buffer:
                    dropped = len(self._events) - self.max_buffer
                    del self._events[:dropped]
                    self._done += dropped
                    self._drops += 1
                    self._settle_waiters()
                    logger.error("Dropped %d gateway events (buffer full)", dropped)
                if cancelled:
                    raise asyncio.CancelledError
                return False
            self.published += len(batch)
            self._last_publish = time.monotonic()
            self._last_publish_size = len(batch)
            self._done += len(batch)
            self._settle_waiters()
            if self._failing_since is not None and self._quiet:
                self._failing_since = None
            elif self._failing_since is not None:
                logger.warning(
                    "Publishing gateway events works again after %.1fs (%d failed attempts)",
                    time.monotonic() - self._failing_since,
                    self._failed_attempts,
                )
                self._failing_since = None
            if cancelled:
                raise asyncio.CancelledError
        return True

    def _log_failure(self, exc: Exception) -> None:
        """The first failure of an outage, then one line every 10 s: an outage is visible in
        the log without flooding it. A traceback only for what is not an expected outage (a
        broker or database away, SQLite busy in the embedded mode): that would be a bug."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = self._last_failure_log = now
            self._failed_attempts = 1
            self._quiet = _sqlite_busy(exc)
            if self._quiet:
                # Embedded mode: SQLite's write lock was held past its busy timeout by another
                # process; retried in a moment, worth a line only if it lasts (below).
                return
            expected = isinstance(exc, _transient_errors())
            logger.error(
                "Publishing %d gateway events failed (%s: %s); keeping them and retrying",
                len(self._events),
                type(exc).__name__,
                exc,
                exc_info=None if expected else exc,
            )
            return
        self._failed_attempts += 1
        if now - self._last_failure_log >= 10:
            self._last_failure_log = now
            self._quiet = False  # it lasted: its end is logged too
            logger.error(
                "Publishing gateway events still fails after %.0fs (%d attempts, %d events "
                "kept): %s",
                now - self._failing_since,
                self._failed_attempts,
                len(self._events),
                exc,
            )

    async def close(self, attempts: int = 10) -> None:
        """Final flush (retried briefly: a broker or database hiccup at shutdown should not
        lose the last events), then release the thread and its database connection."""
        for attempt in range(attempts):
            if await self.flush():
                break
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        else:
            logger.error("Gateway stopped with %d events unpublished", len(self._events))
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._release_thread_resources)
        self._executor.shutdown(wait=True)

    def _release_thread_resources(self) -> None:
        close = getattr(self.publish, "close", None)
        if close is not None:
            close()
        connections.close_all()
