"""One transaction id per 1.6 start, however often the charger retries it.

A charger that lost the answer to its StartTransaction (the connection dropped) sends the same
start again — on its next connection, possibly to another gateway. The same charger, connector,
idTag, meterStart and timestamp must get the same transaction id, or the worker records a second
session and the first stays "charging" forever.

Durable and shared by every gateway: the `chargers.TransactionStart` table, written with one
`INSERT … ON CONFLICT (start_key) DO UPDATE … RETURNING transaction_id` (the existing row's id
wins; the candidate id drawn from the gateway's block is then simply unused), from a thread.
An in-process LRU in front answers a retry on the same gateway without a round trip. Rows older
than `KEEP_DAYS` are purged by the gateway at most once an hour.

When the database is away: the candidate id is answered and remembered in the LRU (a retry on
this gateway still gets it); a retry on another gateway during the outage may get another id.
When even a candidate cannot be drawn (no id left in the block and no database), the start is
answered with a CALLERROR InternalError before anything is emitted, and the charger retries.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import DatabaseError, connection
from django.utils import timezone

from chargers.models import TransactionStart

from .decisions import Decisions, db_call

if TYPE_CHECKING:
    from .server import Gateway

logger = logging.getLogger(__name__)

KEEP_DAYS = 3
PURGE_EVERY = 3600.0  # seconds
LRU_SIZE = 10_000


def start_key(identity: str, fields: tuple[object, ...]) -> str:
    """The digest naming one start: identity, connector, idTag, meterStart, timestamp."""
    text = "\x1f".join(str(part) for part in (identity, *fields))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def claim_transaction_id(key: str, candidate: int, purge: bool = False) -> int:
    """The transaction id of start `key`: `candidate` if it is new, the stored one if not.
    One statement, safe against two gateways racing on the same key. Runs through `db_call`
    (a fresh connection after a database restart)."""
    table = connection.ops.quote_name(TransactionStart._meta.db_table)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (start_key, transaction_id, created_at) "  # noqa: S608 - our table
            "VALUES (%s, %s, %s) "
            "ON CONFLICT (start_key) DO UPDATE SET start_key = EXCLUDED.start_key "
            "RETURNING transaction_id",
            [key, candidate, now],
        )
        (transaction_id,) = cursor.fetchone()
    if purge:
        TransactionStart.objects.filter(created_at__lt=now - timedelta(days=KEEP_DAYS)).delete()
    return int(transaction_id)


class StartIds:
    """The gateway's view of `TransactionStart`, with an LRU in front."""

    def __init__(self, decisions: Decisions, size: int = LRU_SIZE) -> None:
        self.decisions = decisions
        self.size = size
        self._recent: OrderedDict[str, int] = OrderedDict()
        self._purged_at = 0.0
        self.fallbacks = 0

    def _remember(self, key: str, transaction_id: int) -> None:
        self._recent[key] = transaction_id
        self._recent.move_to_end(key)
        while len(self._recent) > self.size:
            self._recent.popitem(last=False)

    async def transaction_id(self, identity: str, fields: tuple[object, ...]) -> int:
        key = start_key(identity, fields)
        known = self._recent.get(key)
        if known is not None:
            self._recent.move_to_end(key)
            return known
        candidate = await self.decisions.next_transaction_id()
        purge = time.monotonic() - self._purged_at > PURGE_EVERY
        if purge:
            self._purged_at = time.monotonic()
        try:
            transaction_id = await db_call(claim_transaction_id, key, candidate, purge)
        except DatabaseError:
            self.fallbacks += 1
            logger.warning(
                "%s: start deduplication unavailable (database), answering id %s",
                identity,
                candidate,
                exc_info=True,
            )
            transaction_id = candidate
        self._remember(key, transaction_id)
        return transaction_id


def start_ids(gateway: Gateway) -> StartIds:
    """The gateway's StartIds (one per Gateway object, created on first use)."""
    ids: StartIds | None = getattr(gateway, "start_ids", None)
    if ids is None:
        ids = gateway.start_ids = StartIds(gateway.decisions)
    return ids
