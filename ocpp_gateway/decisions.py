"""What the gateway must answer at once, read from the database without blocking the loop.

Every read goes through `sync_to_async` (one thread, one database connection) and most through a
small bounded TTL cache, so a reconnect storm or a card presented over and over costs one query
per `ttl`. Writes never happen here, except reserving 1.6 transaction id blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict

from asgiref.sync import sync_to_async
from django.contrib.auth.hashers import check_password
from django.db import transaction
from django.db.models import F
from django_scopes import scopes_disabled

from chargers.models import Charger, TransactionIdBlock, card_decision, normalize_card_uid


class TTLCache:
    """A bounded dict whose entries expire: least recently used entries go first when full."""

    def __init__(self, ttl: float = 30.0, max_entries: int = 10_000):
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: OrderedDict = OrderedDict()

    def get(self, key, default=None):
        item = self._data.get(key)
        if item is None:
            return default
        expires, value = item
        if expires < time.monotonic():
            del self._data[key]
            return default
        self._data.move_to_end(key)
        return value

    def set(self, key, value) -> None:
        self._data[key] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def pop(self, key) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self):
        return len(self._data)


def load_charger(identity: str) -> dict | None:
    """The registered charger with this identity, as plain values (safe to cache and to use on
    the event loop), or None."""
    with scopes_disabled():
        row = (
            Charger.objects.filter(identity=identity)
            .values(
                "id",
                "identity",
                "community_id",
                "password_hash",
                "configured_at",
                "firmware_version",
                "heartbeat_interval",
                "vendor",
            )
            .first()
        )
    return row


def reserve_transaction_ids(size: int, name: str = "ocpp16") -> int:
    """Reserve `size` consecutive 1.6 transaction ids; returns the first. One atomic UPDATE
    (row lock in PostgreSQL, database lock in SQLite), so two gateways never get the same block
    and a restarted gateway never reuses one."""
    with transaction.atomic():
        TransactionIdBlock.objects.get_or_create(name=name)
        TransactionIdBlock.objects.filter(name=name).update(next_value=F("next_value") + size)
        end = TransactionIdBlock.objects.values_list("next_value", flat=True).get(name=name)
    return end - size


class Decisions:
    """The gateway's cached reads. One instance per gateway process."""

    def __init__(self, ttl: float = 30.0, max_entries: int = 10_000, id_block: int = 50):
        self.cards = TTLCache(ttl, max_entries)
        # Chargers are cached briefly: a charger registered a moment ago connects at its next
        # retry; reconnect storms after a gateway restart cost one query per identity.
        self.chargers = TTLCache(min(ttl, 10.0), max_entries)
        self.passwords = TTLCache(3600.0, max_entries)
        self.id_block = id_block
        self._ids_next = 0
        self._ids_end = 0
        self._ids_lock = asyncio.Lock()

    async def charger(self, identity: str) -> dict | None:
        cached = self.chargers.get(identity, default=...)
        if cached is not ...:
            return cached
        row = await sync_to_async(load_charger)(identity)
        self.chargers.set(identity, row)
        return row

    async def password_ok(self, charger: dict, password: str | None) -> bool:
        """Check a Basic-auth password against the charger's hash. PBKDF2 is deliberately slow,
        so it runs on a worker thread, and a success is remembered (by a digest, never the
        password) until the hash changes."""
        if not charger["password_hash"]:
            return True
        if password is None:
            return False
        digest = hashlib.sha256(
            (charger["password_hash"] + "\0" + password).encode("utf-8", "surrogatepass")
        ).hexdigest()
        key = (charger["identity"], charger["password_hash"])
        if self.passwords.get(key) == digest:
            return True
        ok = await asyncio.to_thread(check_password, password, charger["password_hash"])
        if ok:
            self.passwords.set(key, digest)
        return ok

    async def authorize(self, community_id: int, id_tag: str) -> dict:
        """{"status", "card_id", "holder_id"} for a card presented in this community."""
        key = (community_id, normalize_card_uid(id_tag))
        cached = self.cards.get(key)
        if cached is not None:
            return cached
        decision = await sync_to_async(card_decision)(community_id, id_tag)
        self.cards.set(key, decision)
        return decision

    async def next_transaction_id(self) -> int:
        """A 1.6 transaction id unique across gateway processes and restarts."""
        async with self._ids_lock:
            if self._ids_next >= self._ids_end:
                first = await sync_to_async(reserve_transaction_ids)(self.id_block)
                self._ids_next, self._ids_end = first, first + self.id_block
            value = self._ids_next
            self._ids_next += 1
            return value
