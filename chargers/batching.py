"""The worker applies many queued `process_events` messages as one batch.

The gateway publishes one message per flush: under load tens of small messages a second, each
of which, applied alone, pays Celery's per-task cost and the dozen round trips of a batch. The
set-based core (`chargers.events`) costs about the same for 10 events as for 2,000, so the worker
gathers the messages waiting for it and applies their events together.

How, inside Celery's own worker (the pattern of Celery's ETA handling and of celery-batches):
- `EventBatchTask.start_strategy` replaces the default strategy of `process_events`: a message
  received is not run but kept, unacknowledged, in a buffer. A kept message does not count
  against the prefetch limit (the consumer's QoS is raised by one while it is held, as Celery
  does for tasks with an ETA), so the broker keeps delivering while the buffer fills.
- While a buffer is open, the consumer's QoS is also raised by a *lookahead*:
  `LOOKAHEAD_GROWTH` (4) messages per message the window received so far, at most what should
  fill the batch (`max_events` over the running mean of events per message), released when the
  buffer is flushed. Without it the broker had only the prefetch count (4) in flight beyond
  what was held, and a window got only the few messages that arrived in one QoS round trip
  after another (20-37 messages of a deep queue per 50 ms window, measured): with it, what is
  in flight grows fourfold at each round trip and a backlog fills a batch within one window
  (~290 messages), while a trickle of messages raises it by little (the queue is shared with
  other tasks, which a worker should not take for a batch that will not come). No lookahead
  while `MAX_HELD` messages are held (below).
- The buffer is flushed `window` seconds after its first message arrived, or at once when it
  holds `max_events` events or `MAX_MESSAGES` messages: all its messages go to the pool as one
  job (`apply_messages`), whose events are applied in one call of
  `chargers.events.process_events` (one transaction; a charger's poison quarantined inside it,
  the others committed).
- Acks (acks_late semantics, message by message): a message is acknowledged only once its events
  are committed or quarantined, or once they were published again for a later retry (a
  transient database error). A job that failed otherwise, or whose pool process died, rejects
  its messages with requeue: they are delivered again. A worker killed -9 acknowledged nothing
  it had not committed, so the broker delivers the rest again. Applying events twice changes
  nothing (`chargers.events` is idempotent).
- A message whose ETA is in the future (a retry) waits for it before joining a buffer.

Embedded mode and tests (eager tasks): `process_events.apply_async` runs the task body at once;
none of this is involved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from celery import Task, current_app

logger = logging.getLogger("chargers.batching")

# Messages held at most before a flush, whatever their events: bounds the memory of a buffer.
MAX_MESSAGES = 1_000
# Messages held at most outside the prefetch limit (buffered, or in jobs the pool has not run).
MAX_HELD = 2 * MAX_MESSAGES
# While a window is open, the broker may send this many messages more per message received in
# it (the lookahead, module docstring).
LOOKAHEAD_GROWTH = 4

Outcome = Literal["ack", "requeue"]
# What a pool job receives: each message's events and how many times it was retried already.
Message = tuple[list[Any], int]


def _events_of(args: Any) -> list[Any] | None:
    """The event list of a `process_events` message, or None when the message is not one."""
    if isinstance(args, (list, tuple)) and len(args) == 1 and isinstance(args[0], list):
        return args[0]
    return None


class EventBatchTask(Task):
    """Base of `chargers.tasks.process_events`: in a worker, its messages are buffered and
    applied in batches (this module's docstring); called eagerly, it is a plain task."""

    def start_strategy(self, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., None]:
        from django.conf import settings

        return Buffer(
            self,
            consumer,
            window=settings.WORKER_EVENTS_WINDOW_SECONDS,
            max_events=settings.WORKER_EVENTS_MAX_BATCH,
        ).strategy(app)


class Buffer:
    """The messages of one task held by one consumer connection (a new connection, after a
    broker restart, gets a new buffer: delivery tags belong to their channel)."""

    def __init__(self, task: Task, consumer: Any, *, window: float, max_events: int) -> None:
        self.task = task
        self.consumer = consumer
        self.window = window
        self.max_events = max_events
        self.requests: list[Any] = []
        self.events = 0
        self.held = 0  # messages received and not yet acknowledged or requeued
        self._timer: Any = None
        # The QoS raised for this buffer's window (module docstring), and on which QoS object
        # (a reconnection replaces it); the running mean of events per message that sizes it.
        self._lookahead = 0
        self._lookahead_qos: Any = None
        self._mean_events = 0.0

    def strategy(self, app: Any) -> Callable[..., None]:
        """The consumer's message handler for this task (celery.worker.strategy.default, minus
        rate limits and events, plus the buffer)."""
        from celery.utils.imports import symbol_by_name

        # What celery.worker.strategy.default uses; celery-types does not list them.
        from celery.worker.request import create_request_cls  # type: ignore[attr-defined]
        from celery.worker.strategy import (  # type: ignore[attr-defined]
            hybrid_to_proto2,
            proto1_to_proto2,
        )

        consumer = self.consumer
        request_cls = create_request_cls(
            symbol_by_name(self.task.Request),
            self.task,
            consumer.pool,
            consumer.hostname,
            consumer.event_dispatcher,
            app=app,
        )

        def handler(
            message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any
        ) -> None:
            if body is None and "args" not in message.payload:
                body, headers, decoded, utc = (
                    message.body,
                    message.headers,
                    False,
                    app.uses_utc_timezone(),
                )
            elif "args" in message.payload:
                body, headers, decoded, utc = hybrid_to_proto2(message, message.payload)
            else:
                body, headers, decoded, utc = proto1_to_proto2(message, body)
            request = request_cls(
                message,
                on_ack=ack,
                on_reject=reject,
                app=app,
                hostname=consumer.hostname,
                eventer=consumer.event_dispatcher,
                task=self.task,
                connection_errors=consumer.connection_errors,
                body=body,
                headers=headers,
                decoded=decoded,
                utc=utc,
            )
            self.receive(request)

        return handler

    # --- receiving ----------------------------------------------------------------------------
    def receive(self, request: Any) -> None:
        """Hold `request` (not counted against the prefetch limit while held), now or at its
        ETA."""
        # Held messages beyond MAX_HELD (jobs queued in a busy prefork pool) count against
        # the prefetch limit again: the broker stops delivering, memory stays bounded.
        qos = self.consumer.qos if self.held < MAX_HELD else None
        if qos is not None:
            qos.increment_eventually()
        request._sparklin_qos = qos  # released on that QoS, even after a reconnection
        self.held += 1
        eta = request.eta
        delay = (eta - datetime.now(UTC)).total_seconds() if eta is not None else 0
        if delay > 0:
            self.consumer.timer.call_after(delay, self.add, (request,))
        else:
            self.add(request)

    def add(self, request: Any) -> None:
        events = _events_of(request.args)
        count = len(events) if events is not None else 0
        self.requests.append(request)
        self.events += count
        # Events per message, smoothed over the last few dozen messages.
        self._mean_events += (max(count, 1) - self._mean_events) / (
            1 if not self._mean_events else 32
        )
        if self.events >= self.max_events or len(self.requests) >= MAX_MESSAGES:
            self.flush()
            return
        if self._timer is None:
            self._timer = self.consumer.timer.call_after(self.window, self.flush)
        self._grow_lookahead()

    def _grow_lookahead(self) -> None:
        """Let the broker send, beyond the prefetch count, `LOOKAHEAD_GROWTH` more messages per
        message this window received, up to what should fill the batch (module docstring): a
        backlog multiplies what is in flight at each QoS round trip, a trickle asks for little
        more than it sends, so a worker does not take other tasks of the queue for a batch
        that will not come."""
        qos = self.consumer.qos
        if self.held >= MAX_HELD:  # jobs wait in a busy pool: the broker should stop, not more
            return
        if qos is None or (self._lookahead_qos is not None and self._lookahead_qos is not qos):
            return
        needed = -(-(self.max_events - self.events) // max(1, round(self._mean_events)))
        target = max(
            0, min(LOOKAHEAD_GROWTH * len(self.requests), needed, MAX_MESSAGES - len(self.requests))
        )
        if target > self._lookahead:
            qos.increment_eventually(target - self._lookahead)
            self._lookahead, self._lookahead_qos = target, qos

    def _close_lookahead(self) -> None:
        if self._lookahead:
            self._lookahead_qos.decrement_eventually(self._lookahead)
            self._lookahead, self._lookahead_qos = 0, None

    # --- applying -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Hand every held message to the pool as one job."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close_lookahead()
        requests, self.requests, self.events = self.requests, [], 0
        if not requests:
            return
        messages: list[Message] = []
        for request in requests:
            events = _events_of(request.args)
            if events is None:
                logger.error("Not a batch of events, dropped: %r", str(request.args)[:200])
                events = []
            messages.append((events, int(request.request_dict.get("retries") or 0)))

        def done(outcomes: Any) -> None:
            if not (isinstance(outcomes, list) and len(outcomes) == len(requests)):
                # The pool process died (kill, out of memory) or the job itself broke.
                logger.error("Event batch job failed (%r); its messages are requeued", outcomes)
                outcomes = ["requeue"] * len(requests)
            for request, outcome in zip(requests, outcomes, strict=True):
                self.settle(request, outcome)
                if request._sparklin_qos is not None:
                    request._sparklin_qos.decrement_eventually()
                self.held -= 1

        self.consumer.pool.apply_async(
            apply_messages,
            args=(self.task.name, messages),
            callback=done,
            error_callback=done,
        )

    def settle(self, request: Any, outcome: Outcome) -> None:
        """Acknowledge or requeue `request`'s message now. Not through `Request.acknowledge`:
        Celery defers that to the event loop's next turn (`hub.call_soon`), which, called from
        a timer as the window's flush is, waits for the loop's next poll — up to 10 s while
        the broker holds back further messages for want of those very acks."""
        message = request.message
        errors = self.consumer.connection_errors
        if outcome == "ack":
            message.ack_log_error(logger, errors)
        else:
            message.reject_log_error(logger, errors, requeue=True)
        request.acknowledged = True


def apply_messages(task_name: str, messages: list[Message]) -> list[Outcome]:
    """The pool job: apply the events of `messages` as one batch; return, for each message,
    "ack" (committed, quarantined, or published again for a retry) or "requeue". Never raises:
    with the solo pool it runs in the consumer itself."""
    from django.db import connection

    from sparklin.celery import check_database_connections, release_broken_database_connections

    started = time.monotonic()
    # Connections are checked as around any task (sparklin.celery), unless a caller's
    # transaction owns this one (tests).
    checked = not connection.in_atomic_block
    try:
        if checked:
            check_database_connections()
        try:
            outcomes = _apply(task_name, messages)
        finally:
            if checked:
                release_broken_database_connections()
    except BaseException:  # never take the consumer down: the broker delivers them again
        logger.exception("Event batch of %d messages failed; requeued", len(messages))
        return ["requeue"] * len(messages)
    logger.info(
        "Applied %d events of %d messages in %.3f s",
        sum(len(events) for events, _ in messages),
        len(messages),
        time.monotonic() - started,
    )
    return outcomes


def _apply(task_name: str, messages: list[Message]) -> list[Outcome]:
    from chargers.events import is_transient, process_events

    merged = [event for events, _ in messages for event in events]
    try:
        process_events(merged)
    except Exception as exc:
        if is_transient(exc):
            return _retry_later(task_name, messages, exc)
        # Not a charger's fault (those are quarantined inside): a bug outside the per-charger
        # isolation. Apply each message alone, so that one message cannot fail the others.
        logger.exception("A batch of %d messages failed; applying them one by one", len(messages))
        return [_apply_one(task_name, message) for message in messages]
    return ["ack"] * len(messages)


def _apply_one(task_name: str, message: Message) -> Outcome:
    from chargers.events import is_transient, process_events

    try:
        process_events(message[0])
    except Exception as exc:
        if is_transient(exc):
            return _retry_later(task_name, [message], exc)[0]
        # What a failed task with acks_late does: logged, acknowledged.
        logger.exception("A message of %d events could not be applied", len(message[0]))
    return "ack"


def _retry_later(task_name: str, messages: list[Message], exc: BaseException) -> list[Outcome]:
    """A transient error (database away, deadlock…): publish the events again as one message
    with a backoff, like `Task.retry`; the originals are acknowledged only once that message is
    on the broker, else requeued."""
    from django.db import connection, connections

    from chargers.tasks import backoff

    # The connection may be dead (terminated backend, restart): dropped, the retry opens a new
    # one (not when a caller's transaction owns it, as in tests).
    if not connection.in_atomic_block:
        for conn in connections.all(initialized_only=True):
            conn.close_if_unusable_or_obsolete()
    retries = max(r for _, r in messages) + 1
    countdown = backoff(retries - 1)
    events = [event for batch, _ in messages for event in batch]
    logger.warning(
        "%s: transient database error, retry %d in %.0f s (%d events): %s",
        task_name,
        retries,
        countdown,
        len(events),
        exc,
    )
    try:
        # celery-types lists no `**options`: Celery passes `retries` on to send_task.
        current_app.tasks[task_name].apply_async(  # type: ignore[call-arg]
            args=(events,), countdown=countdown, retries=retries
        )
    except Exception:
        logger.exception("Publishing the retry failed; the messages are requeued")
        return ["requeue"] * len(messages)
    return ["ack"] * len(messages)
