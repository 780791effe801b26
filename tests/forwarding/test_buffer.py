"""The relay buffer's `sync` (awaited before a charger with operators is answered): it waits for
the frames noted so far to be committed or answered by their operator — whichever comes first —
and for nothing else (not for a flush that started later). The database writes are held in the
test's hands (each waits for the test to release it), so nothing depends on timing."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from ocpp_gateway import relaybuffer
from ocpp_gateway.relaybuffer import Buffer, Item

from ..ocpp_gateway.test_gateway import until
from .operator_csms import make_operator

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]


def run_closing(scenario):
    """`asyncio.run(scenario())`, then the database connection of the thread `db_call` uses is
    closed (it would hold the test database open at teardown)."""

    async def main():
        try:
            return await scenario()
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(main())


class HeldWrites:
    """`relaybuffer.write` replaced by one that waits, in the database thread, until the test
    releases it (PostgreSQL taking its time to commit)."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[tuple, threading.Event]] = []
        real = relaybuffer.write

        def held(*args, **kwargs):
            release = threading.Event()
            self.calls.append((args, release))
            assert release.wait(10), "never released"
            return real(*args, **kwargs)

        monkeypatch.setattr(relaybuffer, "write", held)

    def release(self, n):
        self.calls[n][1].set()

    def release_all(self):
        for _, release in self.calls:
            release.set()


def test_a_frame_its_operator_answers_during_the_write_releases_the_charger_at_once(
    charger, monkeypatch
):
    operator = make_operator(charger, "ws://127.0.0.1:9/ocpp")
    writes = HeldWrites(monkeypatch)

    async def scenario():
        buffer = Buffer(limit=10)
        item = Item("a", "StatusNotification", "[2]")
        buffer.add(operator.pk, charger.community_id, item)
        sync = asyncio.create_task(buffer.sync())
        await until(lambda: len(writes.calls) == 1)  # its row is being written
        await asyncio.sleep(0.05)
        owed = not sync.done()  # neither committed nor answered yet
        buffer.remove(operator.pk, item)  # the operator answered it: it has the frame
        await asyncio.wait_for(sync, 5)  # released while the commit still runs
        writing = not buffer._flush.done()
        writes.release_all()
        await until(lambda: len(writes.calls) == 2)  # the row written, then deleted
        writes.release_all()
        await buffer.settle()
        return owed, writing

    owed, writing = run_closing(scenario)
    assert owed and writing
    assert relaybuffer.load(operator.pk) == []  # nothing left to replay


def test_sync_waits_for_the_flush_of_its_frames_not_for_a_later_one(charger, monkeypatch):
    """While a frame is being written, the operator answers an earlier one: the delete of that
    one is a later flush, which the new frame's `sync` does not wait for."""
    operator = make_operator(charger, "ws://127.0.0.1:9/ocpp")
    community = charger.community_id

    async def scenario():
        buffer = Buffer(limit=10)
        earlier = Item("e", "StatusNotification", "[2]")
        buffer.add(operator.pk, community, earlier)
        await buffer.sync()  # written, not held: it has its row
        writes = HeldWrites(monkeypatch)
        item = Item("n", "MeterValues", "[2]")
        buffer.add(operator.pk, community, item)
        sync = asyncio.create_task(buffer.sync())
        await until(lambda: len(writes.calls) == 1)  # `item` is being written
        buffer.remove(operator.pk, earlier)  # answered meanwhile: its delete comes next
        writes.release(0)
        await until(lambda: len(writes.calls) == 2)  # the delete's flush, held
        await asyncio.wait_for(sync, 5)
        deleting = writes.calls[1][0][1]
        writes.release_all()
        await buffer.settle()
        return earlier, item, deleting

    earlier, item, deleting = run_closing(scenario)
    assert item.rowid is not None and deleting == [(operator.pk, earlier.rowid)]
    assert [row[1] for row in relaybuffer.load(operator.pk)] == ["n"]


def test_a_failing_write_is_raised_by_sync_and_kept_for_the_next_flush(charger, monkeypatch):
    operator = make_operator(charger, "ws://127.0.0.1:9/ocpp")
    real = relaybuffer.write
    failures = [2]  # `db_call` tries twice (a fresh connection the second time)

    def failing(*args, **kwargs):
        if failures[0]:
            failures[0] -= 1
            from django.db import OperationalError

            raise OperationalError("database unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(relaybuffer, "write", failing)

    async def scenario():
        buffer = Buffer(limit=10)
        item = Item("a", "StartTransaction", "[2]")
        buffer.add(operator.pk, charger.community_id, item)
        with pytest.raises(Exception, match="database unreachable"):
            await buffer.sync()
        error = buffer.error
        await buffer.sync()  # the next flush writes it
        return item, error

    item, error = run_closing(scenario)
    assert "database unreachable" in error and item.rowid is not None
    assert [row[1] for row in relaybuffer.load(operator.pk)] == ["a"]


def test_a_charger_waits_for_its_own_frames_only(charger, monkeypatch):
    """Two chargers' frames in one flush: the one whose operator answered is released while
    the other's row is still being written."""
    operator = make_operator(charger, "ws://127.0.0.1:9/ocpp")
    writes = HeldWrites(monkeypatch)

    async def scenario():
        buffer = Buffer(limit=10)
        mine, other = Item("m", "StatusNotification", "[2]"), Item("o", "MeterValues", "[2]")
        buffer.add(operator.pk, charger.community_id, mine)
        buffer.add(operator.pk, charger.community_id, other)
        mine_synced = asyncio.create_task(buffer.sync([mine]))
        other_synced = asyncio.create_task(buffer.sync([other]))
        await until(lambda: len(writes.calls) == 1)  # both in one flush, held
        buffer.remove(operator.pk, mine)
        await asyncio.wait_for(mine_synced, 5)
        waiting = not other_synced.done()
        writes.release_all()
        await asyncio.wait_for(other_synced, 5)
        await until(lambda: len(writes.calls) == 2)  # `mine` deleted
        writes.release_all()
        await buffer.settle()
        return waiting, other

    waiting, other = run_closing(scenario)
    assert waiting and other.rowid is not None
    assert [row[1] for row in relaybuffer.load(operator.pk)] == ["o"]
