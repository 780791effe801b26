"""What the gateway must answer at once, read from the database without blocking the loop.

Every database call goes through `db_call`: `sync_to_async` (one thread, one database connection)
with `close_old_connections()` around it, like healthchecks' smtpd command, and one retry on a
fresh connection when the first attempt finds it dead. So a PostgreSQL restart or fail-over
(`pg_terminate_backend`) costs the gateway one reconnection, never an outage.

Known chargers are answered from the `ChargerDirectory` (loaded in bulk at start, refreshed by
delta), so a reconnect storm of the whole fleet costs no per-identity query. Card decisions are
cached briefly and their *last known* value is kept longer: while the database is unreachable the
gateway answers from it (with a log line) instead of failing. Writes never happen here, except
reserving 1.6 transaction id blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.contrib.auth.hashers import check_password
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    transaction,
)
from django.db.models import Exists, F, OuterRef, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone
from django_scopes import scopes_disabled

from chargers import hashers
from chargers.models import Charger, TransactionIdBlock, card_decision, normalize_card_uid
from meters.models import Meter

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

# A charger as the gateway holds it: the CHARGER_FIELDS columns by name and `main_meter`
# (`load_charger`).
ChargerRow = dict[str, Any]
# A card decision (`chargers.models.card_decision`): {"status", "card_id", "holder_id"}.
CardDecision = dict[str, Any]

# The charger columns the gateway works with (the dict `load_charger` returns).
CHARGER_FIELDS = (
    "id",
    "identity",
    "community_id",
    "password_hash",
    "configured_at",
    "firmware_version",
    "heartbeat_interval",
    "vendor",
)


def _with_main_meter(chargers: QuerySet[Charger]) -> QuerySet[Charger]:
    """`main_meter`: whether an enabled OCPP meter of the charger's community reads this charger
    (its connector 0 / EVSE 0): the gateway then asks it for clock-aligned main-meter data at
    boot (`profiles.main_meter_16/201`). A correlated EXISTS on the community's few meters;
    `meters.services` moves the charger's `updated_at` when such a meter changes, so the
    directory's delta sees it."""
    meters = (
        Meter.objects.with_scopes_disabled()
        .annotate(charger_identity=KeyTextTransform("charger", "config"))
        .filter(
            kind=Meter.Kind.OCPP,
            enabled=True,
            community_id=OuterRef("community_id"),
            charger_identity=OuterRef("identity"),
        )
    )
    return chargers.annotate(main_meter=Exists(meters))


def _with_fresh_connection(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    close_old_connections()
    try:
        return _busy_retried(func, *args, **kwargs)
    except (OperationalError, InterfaceError):
        # The connection died under us (database restarted, backend terminated, fail-over):
        # drop it and try once more on a new one. Only connection-level errors are retried;
        # every caller's work is a read or a single atomic statement, safe to run again.
        logger.warning("Database connection lost; reconnecting", exc_info=True)
        close_old_connections()
        return func(*args, **kwargs)
    finally:
        close_old_connections()


def _busy_retried(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`func`, tried again quietly while SQLite answers "database is locked" (embedded mode:
    the portal or another thread held the write lock past the busy timeout); not a lost
    connection, so no warning and no traceback unless it lasts."""
    from chargers.events import is_sqlite_busy

    for delay in (0.05, 0.2, 0.5, 1.0, 2.0):
        try:
            return func(*args, **kwargs)
        except OperationalError as exc:
            if not is_sqlite_busy(exc):
                raise
            time.sleep(delay)
    return func(*args, **kwargs)


async def db_call(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the ORM function `func` off the event loop with `close_old_connections()` around it:
    the one way the gateway talks to the database (decisions, command bus, id blocks,
    directory)."""
    return await sync_to_async(_with_fresh_connection)(func, *args, **kwargs)


class TTLCache(Generic[K, V]):
    """A bounded dict whose entries expire: least recently used entries go first when full."""

    def __init__(self, ttl: float = 30.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, default: V | None = None) -> V | None:
        item = self._data.get(key)
        if item is None:
            return default
        expires, value = item
        if expires < time.monotonic():
            del self._data[key]
            return default
        self._data.move_to_end(key)
        return value

    def set(self, key: K, value: V) -> None:
        self._data[key] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def discard_if(self, test: Callable[[K], bool]) -> int:
        """Drop the entries whose key passes `test`; returns how many."""
        keys = [key for key in self._data if test(key)]
        for key in keys:
            del self._data[key]
        return len(keys)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


def load_charger(identity: str) -> ChargerRow | None:
    """The registered charger with this identity, as plain values (safe to cache and to use on
    the event loop), or None."""
    with scopes_disabled():
        row: ChargerRow | None = (
            _with_main_meter(Charger.objects.filter(identity=identity))
            .values(*CHARGER_FIELDS, "main_meter")
            .first()
        )
    return row


def load_directory(
    changed_since: datetime | None = None,
) -> tuple[list[ChargerRow], datetime | None]:
    """Every charger (or those changed since `changed_since`) as `load_charger` dicts, and the
    newest `updated_at` seen. One query, streamed in chunks."""
    with scopes_disabled():
        rows = Charger.objects.all()
        if changed_since is not None:
            rows = rows.filter(updated_at__gte=changed_since)
        chargers: list[ChargerRow] = []
        newest: datetime | None = None
        for row in (
            _with_main_meter(rows)
            .values(*CHARGER_FIELDS, "main_meter", "updated_at")
            .iterator(chunk_size=2000)
        ):
            updated_at = row.pop("updated_at")
            if newest is None or updated_at > newest:
                newest = updated_at
            chargers.append(row)
    return chargers, newest


def upgrade_password_hash(charger_id: int, old: str, new: str) -> bool:
    """Replace a charger's password hash by an equivalent one, unless it changed meanwhile."""
    with scopes_disabled():
        return bool(
            Charger.objects.filter(pk=charger_id, password_hash=old).update(
                password_hash=new, updated_at=timezone.now()
            )
        )


def reserve_transaction_ids(size: int, name: str = "ocpp16") -> int:
    """Reserve `size` consecutive 1.6 transaction ids; returns the first. One atomic UPDATE
    (row lock in PostgreSQL, database lock in SQLite), so two gateways never get the same block
    and a restarted gateway never reuses one."""
    with transaction.atomic():
        TransactionIdBlock.objects.get_or_create(name=name)
        TransactionIdBlock.objects.filter(name=name).update(next_value=F("next_value") + size)
        end = TransactionIdBlock.objects.values_list("next_value", flat=True).get(name=name)
    return end - size


class DecisionUnavailable(Exception):
    """The database cannot be read and nothing is known to answer from."""


_MISSING = object()


class ChargerDirectory:
    """identity → charger dict of the whole fleet, in memory (about 1 KB per charger).

    Loaded in one query at start, then refreshed by delta on `Charger.updated_at` (indexed; set by
    every `save()`) every few seconds, with a margin that covers transactions committed late; a
    full reload now and then drops deleted chargers and picks up columns written with `update()`
    (the worker's `configured_at`, `firmware_version`). Lookups never touch the database: a
    reconnect storm of the whole fleet costs nothing but the handshakes.

    A delta reads what changed since the previous one began, less the margin — not since the
    newest `updated_at` it saw: a fleet imported in one go and not changed since would otherwise
    be read again, whole, at every refresh (a fifth of the gateway's CPU with 19,000 chargers).
    The newest `updated_at` still counts when it is later (a portal whose clock runs ahead).
    """

    def __init__(self, margin: float = 60.0) -> None:
        self.by_identity: dict[str, ChargerRow] = {}
        self._identity_of: dict[int, str] = {}
        self.loaded = False
        self.margin = timedelta(seconds=margin)
        # The newest `updated_at` seen, and when the last read began (gateway clock); both set
        # by `load`, which runs before any `refresh`.
        self._newest: datetime | None = None
        self._read_at: datetime | None = None
        self.loaded_at = 0.0

    def get(self, identity: str) -> ChargerRow | object | None:
        """The charger dict, None when the directory is loaded and the identity is not in it,
        `_MISSING` when it is not loaded (ask the database)."""
        row = self.by_identity.get(identity)
        if row is not None:
            return row
        return None if self.loaded else _MISSING

    def put(self, row: ChargerRow) -> None:
        old = self._identity_of.get(row["id"])
        if old is not None and old != row["identity"]:
            self.by_identity.pop(old, None)  # the serial was corrected in the portal
        self.by_identity[row["identity"]] = row
        self._identity_of[row["id"]] = row["identity"]

    async def load(self) -> int:
        read_at = timezone.now()
        rows, newest = await db_call(load_directory)
        self.by_identity, self._identity_of = {}, {}
        for row in rows:
            self.put(row)
        self._newest = newest or read_at
        self._read_at = read_at
        self.loaded = True
        self.loaded_at = time.monotonic()
        return len(rows)

    def changed_since(self) -> datetime:
        """The lower bound of the next delta."""
        assert self._newest is not None and self._read_at is not None, "refresh() after load()"
        return max(self._newest, self._read_at) - self.margin

    async def refresh(self) -> int:
        since, read_at = self.changed_since(), timezone.now()
        rows, newest = await db_call(load_directory, since)
        for row in rows:
            self.put(row)
        if newest is not None and self._newest is not None and newest > self._newest:
            self._newest = newest
        self._read_at = read_at
        return len(rows)

    def __len__(self) -> int:
        return len(self.by_identity)


class Decisions:
    """The gateway's cached reads. One instance per gateway process."""

    def __init__(
        self,
        ttl: float = 30.0,
        max_entries: int = 10_000,
        id_block: int = 50,
        hash_concurrency: int = 2,
    ) -> None:
        self.cards: TTLCache[tuple[int, str], CardDecision] = TTLCache(ttl, max_entries)
        # The last answer given for each card, kept a day: what the gateway answers while the
        # database is unreachable.
        self.last_cards: TTLCache[tuple[int, str], CardDecision] = TTLCache(
            24 * 3600.0, 10 * max_entries
        )
        self.directory = ChargerDirectory()
        # Identities looked up and not found: the next attempt of the same identity within 10 s
        # costs nothing (a charger registered a moment ago connects at its next retry).
        self.unknown: TTLCache[str, bool] = TTLCache(10.0, max_entries)
        self.passwords: TTLCache[tuple[str, str], str] = TTLCache(3600.0, max_entries)
        self.id_block = id_block
        self._ids_next = 0
        self._ids_end = 0
        self._ids_lock = asyncio.Lock()
        # PBKDF2 is deliberately slow: at most this many checks run at once, so guesses (already
        # throttled) and a storm of password-protected chargers cannot take every core.
        self._hashing = asyncio.Semaphore(hash_concurrency)

    async def charger(self, identity: str) -> ChargerRow | None:
        """The registered charger with this identity (a `load_charger` dict) or None. Raises
        `DecisionUnavailable` when the database cannot tell."""
        known = self.directory.get(identity)
        if isinstance(known, dict):
            return known
        if self.unknown.get(identity):
            return None
        try:
            row = await db_call(load_charger, identity)
        except DatabaseError as exc:
            logger.warning("Database unreachable: cannot look up charger %r (%s)", identity, exc)
            raise DecisionUnavailable from exc
        if row is None:
            self.unknown.set(identity, True)
        else:
            self.directory.put(row)
        return row

    def remembered(self, charger: ChargerRow, password: str | None) -> bool:
        """True when this exact password was accepted for this hash before (no hashing)."""
        if not charger["password_hash"] or password is None:
            return False
        key = (charger["identity"], charger["password_hash"])
        return self.passwords.get(key) == self._digest(charger, password)

    @staticmethod
    def _digest(charger: ChargerRow, password: str) -> str:
        return hashlib.sha256(
            (charger["password_hash"] + "\0" + password).encode("utf-8", "surrogatepass")
        ).hexdigest()

    async def password_ok(self, charger: ChargerRow, password: str | None) -> bool:
        """Check a Basic-auth password against the charger's hash. Generated passwords have a
        fast salted hash (`chargers.hashers`), checked inline. PBKDF2 is deliberately slow, so it
        runs on a worker thread (a bounded number at once), a success is remembered (by a digest,
        never the password) until the hash changes, and a generated-looking password found
        behind a PBKDF2 hash is upgraded to the fast hash."""
        if not charger["password_hash"]:
            return True
        if password is None:
            return False
        if self.remembered(charger, password):
            return True
        encoded = charger["password_hash"]
        if hashers.is_fast(encoded):
            return hashers.check_fast(password, encoded)
        async with self._hashing:
            ok = await asyncio.to_thread(check_password, password, encoded)
        if not ok:
            return False
        key = (charger["identity"], encoded)
        self.passwords.set(key, self._digest(charger, password))
        if hashers.looks_generated(password):
            await self._upgrade(charger, password)
        return True

    async def _upgrade(self, charger: ChargerRow, password: str) -> None:
        old = charger["password_hash"]
        new = await asyncio.to_thread(hashers.hash_generated_password, password)
        try:
            if await db_call(upgrade_password_hash, charger["id"], old, new):
                charger["password_hash"] = new  # the directory's dict: next checks are fast
                logger.info("%s: password hash upgraded to the fast hash", charger["identity"])
        except DatabaseError as exc:
            logger.warning("%s: password hash not upgraded (%s)", charger["identity"], exc)

    async def authorize(self, community_id: int, id_tag: str) -> CardDecision:
        """{"status", "card_id", "holder_id"} for a card presented in this community. While the
        database is unreachable: the last known decision for this card, else Invalid."""
        key = (community_id, normalize_card_uid(id_tag))
        cached = self.cards.get(key)
        if cached is not None:
            return cached
        try:
            decision = await db_call(card_decision, community_id, id_tag)
        except DatabaseError as exc:
            last = self.last_cards.get(key)
            if last is not None:
                logger.warning(
                    "Database unreachable (%s): card %s answered from its last known decision",
                    exc,
                    key[1],
                )
                return last
            logger.warning(
                "Database unreachable (%s): card %s never seen, answered Invalid", exc, key[1]
            )
            return {"status": "Invalid", "card_id": None, "holder_id": None}
        self.cards.set(key, decision)
        self.last_cards.set(key, decision)
        return decision

    def forget_community(self, community_id: int) -> None:
        """Drop the cached card decisions of a community whose cards or rules changed (its
        access stamp moved: `ocpp_gateway.access`). The last known answers stay, for outages."""
        self.cards.discard_if(lambda key: key[0] == community_id)

    async def next_transaction_id(self) -> int:
        """A 1.6 transaction id unique across gateway processes and restarts."""
        async with self._ids_lock:
            if self._ids_next >= self._ids_end:
                first = await db_call(reserve_transaction_ids, self.id_block)
                self._ids_next, self._ids_end = first, first + self.id_block
            value = self._ids_next
            self._ids_next += 1
            return value
