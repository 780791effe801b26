"""The durable buffer of the relays to operators, shared by every gateway (issue 12).

What an operator must still receive is a row of `forwarding.OutboxFrame` in the database, not a
file of one gateway: when a charger reconnects through another gateway (load balancer, restart,
a gateway killed), that gateway finds the backlog and replays it. One gateway at a time relays an
operator connection: the one holding the charger claims a `forwarding.RelayLease` before it
loads and sends anything, renews it every `FORWARDING_LEASE_SECONDS / 3`, releases it when the
charger leaves; a gateway that died stops renewing and its lease expires. So a backlog is
replayed by one gateway, in the order it was written (`id`), once (at least once when a
connection drops before the operator's answer: the frame goes again with its message id).

The event loop never waits on the database for each frame: `add`/`remove` note the change in
memory and a flush writes everything noted so far in one transaction, in a thread (`db_call`);
`sync()` waits until what was added is committed — awaited before the charger is answered, so a
frame whose answer told the charger it may forget it is in the database. Bounded per operator
connection (`FORWARDING_BUFFER_MAX`): the flush that makes a backlog too long deletes the oldest
MeterValues first, then the oldest other messages; transaction messages are never dropped.

These are direct writes from the gateway like `TransactionStart` (not events through the
pipeline): the worker would apply them a batch later, in an order set by several workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from forwarding.models import OutboxFrame, RelayLease

from .decisions import db_call

logger = logging.getLogger(__name__)

# Buffer priorities: lowest dropped first.
METER, OTHER, TRANSACTION = 0, 1, 2
# Transaction messages: never dropped from a full buffer.
TRANSACTION_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "TransactionEvent"})


def priority_of(action: str) -> int:
    if action in TRANSACTION_ACTIONS:
        return TRANSACTION
    if action == "MeterValues":
        return METER
    return OTHER


@dataclass(eq=False)
class Item:
    """One CALL the operator must receive."""

    unique_id: str
    action: str
    frame: str
    rowid: int | None = None  # in the shared buffer, once written
    durable: bool = False  # to be written (every frame but a live-only one)
    queued: bool = False  # noted, waiting for a flush to take it
    gone: bool = False  # answered or dropped: not (or no longer) in the buffer
    waiter: asyncio.Future[dict[str, Any] | None] | None = None  # a Billing decision awaited
    abandoned: bool = False  # a live-only call whose waiter gave up
    dropped: bool = False  # dropped from a full buffer before it was sent
    answer: asyncio.Future[list[Any]] | None = field(default=None, repr=False)
    # Set by `Buffer.sync` while it waits for this frame; resolved when it is answered.
    released: asyncio.Future[None] | None = field(default=None, repr=False)


# --- the database side (run in a thread by db_call) -------------------------------------------

Add = tuple[int, int, int, str, str, str]  # operator, community, priority, unique_id, action, frame


def write(
    adds: list[Add],
    deletes: list[tuple[int, int]],
    forgets: list[int],
    limit: int,
    measure: set[int] | None = None,
) -> tuple[list[int], list[tuple[int, int]], dict[int, int]]:
    """One transaction: insert `adds` (their ids, in order), delete `deletes` ((operator, id)),
    empty the buffers of `forgets`, count the backlogs of `measure` (every operator touched when
    None) and trim those over `limit`. Returns (the new ids, the (operator, id) dropped by the
    trim, the counts measured)."""
    rows = OutboxFrame.objects.with_scopes_disabled()
    with transaction.atomic():
        if forgets:
            rows.filter(operator_id__in=forgets).delete()
        created = rows.bulk_create(
            [
                OutboxFrame(
                    operator_id=operator,
                    community_id=community,
                    priority=priority,
                    unique_id=unique_id,
                    action=action,
                    frame=frame,
                )
                for operator, community, priority, unique_id, action, frame in adds
                if operator not in forgets
            ]
        )
        if deletes:
            rows.filter(pk__in=[rowid for _, rowid in deletes]).delete()
        touched = {a[0] for a in adds} | {operator for operator, _ in deletes}
        if measure is not None:
            touched &= measure
        counts: dict[int, int] = dict.fromkeys(touched, 0)
        if touched:
            counts.update(
                rows.filter(operator_id__in=touched)
                .values("operator_id")
                .annotate(n=Count("id"))
                .values_list("operator_id", "n")
            )
        dropped: list[tuple[int, int]] = []
        for operator in {a[0] for a in adds} & touched:
            excess = counts[operator] - limit
            if excess <= 0:
                continue
            ids = list(
                rows.filter(operator_id=operator, priority__lt=TRANSACTION)
                .order_by("priority", "id")
                .values_list("id", flat=True)[:excess]
            )
            rows.filter(pk__in=ids).delete()
            dropped += [(operator, rowid) for rowid in ids]
            counts[operator] -= len(ids)
    return [int(o.pk) for o in created], dropped, counts


def load(operator: int) -> list[tuple[int, str, str, str]]:
    """The backlog of one operator connection, in order: (id, unique_id, action, frame)."""
    return list(
        OutboxFrame.objects.with_scopes_disabled()
        .filter(operator_id=operator)
        .order_by("id")
        .values_list("id", "unique_id", "action", "frame")
    )


def claim(operator: int, community: int, owner: str, seconds: float) -> str | None:
    """Take or renew the lease of `operator` for `owner`: None when granted, else its holder."""
    now = timezone.now()
    leases = RelayLease.objects.with_scopes_disabled()
    until = now + timedelta(seconds=seconds)
    taken = (
        leases.filter(operator_id=operator)
        .filter(Q(owner=owner) | Q(expires_at__lt=now))
        .update(owner=owner, expires_at=until)
    )
    if taken:
        return None
    try:
        with transaction.atomic():
            leases.create(
                operator_id=operator, community_id=community, owner=owner, expires_at=until
            )
    except IntegrityError:  # held by another (or taken between the two statements)
        holder = leases.filter(operator_id=operator).values_list("owner", flat=True).first()
        return holder or "another gateway"
    return None


def renew(owners: list[str], seconds: float) -> set[str]:
    """Extend the leases still held by `owners`; returns those owners (the others lost theirs:
    expired and taken over)."""
    leases = RelayLease.objects.with_scopes_disabled().filter(owner__in=owners)
    with transaction.atomic():
        leases.update(expires_at=timezone.now() + timedelta(seconds=seconds))
        return set(leases.values_list("owner", flat=True))


def release(owners: list[str]) -> None:
    RelayLease.objects.with_scopes_disabled().filter(owner__in=owners).delete()


def release_instance(instance: str) -> int:
    """A gateway (re)starting under a stable instance name holds no upstream yet: the leases
    its previous process left are released at once instead of waiting for them to expire."""
    deleted: int
    deleted, _ = (
        RelayLease.objects.with_scopes_disabled().filter(owner__startswith=f"{instance}/").delete()
    )
    return deleted


# --- the gateway's side ------------------------------------------------------------------------


class Buffer:
    """One per gateway: notes what to write, flushes it (one flush at a time, in a thread),
    keeps the count of each operator's backlog (as last measured, plus what was noted since) and
    the items it knows by row id (so a trim can mark the dropped ones)."""

    def __init__(self, limit: int, on_dropped: Callable[[int, Item], None] | None = None) -> None:
        self.limit = limit
        self.on_dropped = on_dropped
        self._counts: dict[int, int] = {}
        self._adds: list[tuple[int, int, Item]] = []  # operator, community, item
        self._deletes: list[tuple[int, int]] = []
        self._forgets: list[int] = []
        self._items: dict[int, tuple[int, Item]] = {}  # rowid → (operator, item)
        self._measured: set[int] = set()  # operators whose count here matches the database
        self._flush: asyncio.Task[None] | None = None
        self._writing: set[Item] = set()  # the frames the flush in progress writes
        self.error = ""  # of the last flush, "" when it worked

    # --- writes, noted on the loop, committed by a flush ---------------------------------------
    def add(self, operator: int, community: int, item: Item) -> None:
        item.durable = item.queued = True
        self._adds.append((operator, community, item))
        self._counts[operator] = self._counts.get(operator, 0) + 1

    def remove(self, operator: int, item: Item) -> None:
        """`item` needs no more sending (answered, or let time out on an open connection)."""
        if item.gone:
            return
        item.gone = True
        if item.released is not None and not item.released.done():
            item.released.set_result(None)  # a `sync` waits for this very frame
        if item.durable:
            self._counts[operator] = max(0, self._counts.get(operator, 0) - 1)
        if item.rowid is not None:
            self._items.pop(item.rowid, None)
            self._deletes.append((operator, item.rowid))
        # Not written yet: the flush skips it, or deletes it once it has its id.

    def forget(self, operator: int) -> None:
        """The operator was disconnected in the portal: nothing more is owed to it (the portal
        deleted its rows already; this catches what was noted here meanwhile)."""
        for _, _, item in (a for a in self._adds if a[0] == operator):
            item.gone = True  # owed no more: nobody waits for its write
        self._adds = [a for a in self._adds if a[0] != operator]
        self._deletes = [d for d in self._deletes if d[0] != operator]
        self._forgets.append(operator)
        self._counts[operator] = 0
        self._measured.discard(operator)
        for rowid in [r for r, (op, _) in self._items.items() if op == operator]:
            del self._items[rowid]

    def count(self, operator: int) -> int:
        return self._counts.get(operator, 0)

    @property
    def pending(self) -> bool:
        return bool(self._adds or self._deletes or self._forgets)

    def schedule(self) -> asyncio.Task[None]:
        """A flush of what is noted (one at a time; a new one starts when the last is done)."""
        task = self._flush
        if task is None or task.done():
            task = self._flush = asyncio.create_task(self._flush_now(), name="forwarding-buffer")
        return task

    async def _flush_now(self) -> None:
        await asyncio.sleep(0)  # let the frames of this turn of the loop join the flush
        adds = [a for a in self._adds if not a[2].gone]
        deletes, forgets = self._deletes, self._forgets
        self._adds, self._deletes, self._forgets = [], [], []
        if not adds and not deletes and not forgets:
            return
        self._writing = {a[2] for a in adds}
        for _, _, item in adds:
            item.queued = False
        try:
            await self._write(adds, deletes, forgets)
        finally:
            self._writing = set()

    async def _write(
        self,
        adds: list[tuple[int, int, Item]],
        deletes: list[tuple[int, int]],
        forgets: list[int],
    ) -> None:
        rows: list[Add] = [
            (op, community, priority_of(i.action), i.unique_id[:64], i.action[:60], i.frame)
            for op, community, i in adds
        ]
        # Counted in the database only when this gateway does not know the backlog yet (another
        # gateway wrote it) or when it may have reached the limit: one statement less per flush.
        measure = {
            op
            for op, _, _ in adds
            if op not in self._measured or self._counts.get(op, 0) >= self.limit
        } | {op for op, _ in deletes if op not in self._measured}
        try:
            ids, dropped, counts = await db_call(write, rows, deletes, forgets, self.limit, measure)
        except BaseException as exc:
            # Kept, in order, for the next flush (the gateway retries every few seconds).
            for _, _, item in adds:
                item.queued = True
            self._adds = adds + self._adds
            self._deletes = deletes + self._deletes
            self._forgets = forgets + self._forgets
            if not isinstance(exc, asyncio.CancelledError):
                self.error = f"{type(exc).__name__}: {exc}"[:200]
            raise
        self.error = ""
        for operator, _, item in adds:
            if operator in forgets:
                item.gone = True  # not written: its operator was disconnected meanwhile
        forgotten = set(forgets) | set(self._forgets)
        for (operator, _, item), rowid in zip(
            [a for a in adds if a[0] not in forgets], ids, strict=True
        ):
            item.rowid = rowid
            if item.gone:  # answered while it was being written
                self._deletes.append((operator, rowid))
            elif operator not in forgotten:
                self._items[rowid] = (operator, item)
        self._measured |= set(counts)
        for operator, count in counts.items():
            noted = sum(1 for a in self._adds if a[0] == operator and not a[2].gone) - sum(
                1 for d in self._deletes if d[0] == operator
            )
            self._counts[operator] = max(0, count + noted)
        for operator, rowid in dropped:
            known = self._items.pop(rowid, None)
            if known is not None:
                known[1].dropped = known[1].gone = True
                if self.on_dropped is not None:
                    self.on_dropped(operator, known[1])
        if self._deletes:
            self.schedule_later()

    def schedule_later(self) -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(self._reschedule)

    def _reschedule(self) -> None:
        if self.pending:
            self.schedule()

    async def sync(self, items: Iterable[Item] | None = None) -> None:
        """Return once each of `items` (every frame added so far when None) is committed, or
        owed no more — answered by its operator (it has it: nothing to replay) or dropped —,
        whichever comes first; raises what its flush raised.

        So a frame an operator answers faster than PostgreSQL commits (a connected operator
        answers while the row is being written) releases the charger's answer at once, and only
        the flushes that carry these frames are awaited: not a flush started later, such as the
        one deleting a frame answered while it was being written (waiting for it too made a
        lone frame's answer wait for two transactions, insert then delete). The charger's
        answer passes its own frames (one per operator): a busy gateway has hundreds of frames
        noted and as many answers waiting."""
        if items is None:
            items = [*(a[2] for a in self._adds), *self._writing]
        owed = [i for i in items if i.durable and not i.gone and i.rowid is None]
        loop = asyncio.get_running_loop()
        while owed:
            task = self._flush
            if task is None or task.done() or not any(i in self._writing for i in owed):
                task = self.schedule()  # (a flush in progress without them: the next one)
            for item in owed:
                if item.released is None or item.released.done():
                    item.released = loop.create_future()  # resolved by `remove`
            await asyncio.wait(
                [task, *(i.released for i in owed if i.released is not None)],
                return_when=asyncio.FIRST_COMPLETED,
            )
            if task.done():
                task.result()  # raises what the flush raised
            # (Neither noted nor being written: nothing will write it; never wait in a loop.)
            owed = [
                i
                for i in owed
                if not i.gone and i.rowid is None and (i.queued or i in self._writing)
            ]

    async def settle(self) -> None:
        """Return once everything noted so far, deletes included, is written: what a relay
        stopping or loading its backlog needs (the next reader must not see answered rows)."""
        task = self._flush
        if task is not None and not task.done():
            await asyncio.shield(task)
        if self.pending:
            await asyncio.shield(self.schedule())

    async def load(self, operator: int) -> list[Item]:
        """The backlog of `operator` from the database (written by any gateway), in order;
        the items this gateway already knows are the same objects."""
        await self.settle()
        rows = await db_call(load, operator)
        items = []
        fresh: dict[int, tuple[int, Item]] = {}
        for rowid, unique_id, action, frame in rows:
            known = self._items.get(rowid)
            item = known[1] if known is not None else None
            if item is None:
                item = Item(unique_id, action, frame, rowid=rowid, durable=True)
            fresh[rowid] = (operator, item)
            items.append(item)
        for rowid in [r for r, (op, _) in self._items.items() if op == operator]:
            if rowid not in fresh:
                del self._items[rowid]  # delivered by another gateway meanwhile
        self._items.update(fresh)
        self._measured.add(operator)
        self._counts[operator] = len(items) + sum(
            1 for a in self._adds if a[0] == operator and not a[2].gone
        )
        return items

    async def aclose(self) -> None:
        """Let a flush in progress finish and write the rest (a stopping gateway)."""
        task = self._flush
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
        if self.pending:
            with contextlib.suppress(Exception):
                await self.schedule()
