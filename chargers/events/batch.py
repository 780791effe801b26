"""The set-based core of the worker: read everything a batch needs at once, apply its events in
memory, write the result in bulk.

Per batch, whatever its size: one read locking all its chargers (in primary-key order, so two
workers never deadlock and never interleave on one charger), one of their connectors, one of
their open sessions and of the sessions the events name, one of the cards and one of the
commands named; then bulk inserts (connectors, sessions, samples, log rows, commands) and bulk
updates (sessions, connectors, commands, chargers). About a dozen round trips for 10 events or
5,000.

Every write stays idempotent: samples and log rows have unique constraints and are inserted
with ON CONFLICT DO NOTHING; session, outlet, command and charger fields only move forward in
time (see the handlers). A batch applied twice, or two batches applied out of order, end in the
same state.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from billing.prices import PriceList, session_cost

from ..contract import Event, Kind, outlet_key
from ..models import (
    ChargeCard,
    Charger,
    ChargerCommand,
    ChargingSession,
    Connector,
    MeterSample,
    OcppMessage,
    card_uid_spellings,
    normalize_card_uid,
)
from . import main_meter, uptime
from .main_meter import MainMeterSamples
from .sql import _is_postgres, among, create_rows, insert_rows, load_rows, load_where, update_rows
from .values import (
    ENERGY_REGISTER,
    Rejected,
    measurand,
    parse_time,
    sample_labels,
    sample_value,
    to_decimal,
)

if TYPE_CHECKING:
    from .handlers import Handler

logger = logging.getLogger("chargers.events")

_Q3 = Decimal("0.001")
_Q1 = Decimal("0.1")

SESSION_FIELDS = [
    "connector",
    "holder",
    "card",
    "id_tag",
    "state",
    "started_at",
    "stopped_at",
    "meter_start_wh",
    "meter_stop_wh",
    "meter_last_wh",
    "meter_last_at",
    "energy_wh",
    "price_per_kwh",
    "cost",
    "stop_reason",
    "offline",
    "free",
    "last_seq_no",
    "anomaly",
    "updated_at",
]
CONNECTOR_FIELDS = ["status", "error_code", "status_at"]
SAMPLE_COLUMNS = [
    "community_id",
    "session_id",
    "timestamp",
    "measurand",
    "phase",
    "context",
    "value",
    "unit",
]
MESSAGE_COLUMNS = [
    "community_id",
    "charger_id",
    "direction",
    "message_type",
    "unique_id",
    "action",
    "payload",
    "at",
]
COMMAND_FIELDS = ["status", "response", "updated_at"]
# Writers of the event kinds other apps registered (`handlers.register`): called by
# `Batch.flush` with the chargers whose events applied, inside the batch's transaction.
EXTRA_FLUSHES: list[Callable[[list[ChargerState]], None]] = []


# `Batch._load_sessions` on PostgreSQL: the ids of both parts, then their rows by primary key.
_SESSIONS_WHERE = """WHERE id = ANY(ARRAY(
    SELECT id FROM chargers_chargingsession WHERE charger_id = ANY(%s::bigint[]) AND state = %s
    UNION
    SELECT s.id FROM chargers_chargingsession s
    JOIN unnest(%s::bigint[], %s::text[]) AS k(charger_id, transaction_id)
      ON s.charger_id = k.charger_id AND s.transaction_id = k.transaction_id
)) ORDER BY started_at DESC"""


class ChargerState:
    """One charger's share of a batch: its rows, as read once by the batch, and every change its
    events make. Handlers (`chargers.events.handlers`) work on this and nothing else; nothing
    touches the database until `Batch.flush`. A charger whose events raise is dropped whole from
    the flush and quarantined, its neighbours in the batch are not affected."""

    def __init__(self, batch: Batch, charger: Charger, events: list[Event]):
        # Weakly: a reference cycle between the batch and its chargers kept the whole batch
        # (instances, samples, log rows) alive until the cyclic collector traversed it, a
        # young-generation pass of ~100,000 objects after every batch (`apply._gc_paused`).
        # Without the cycle, reference counting frees the batch as soon as the caller drops it.
        self.batch: Batch = weakref.proxy(batch)
        self.charger = charger
        self.events = events
        self.fields: set[str] = set()
        self.connectors: dict[tuple[int, int], Connector] = {}
        self.connectors_loaded = False
        self.new_connectors: list[Connector] = []
        self.dirty_connectors: dict[int, Connector] = {}
        self.sessions: dict[str, ChargingSession] = {}
        self.new_sessions: list[ChargingSession] = []
        self.dirty_sessions: dict[str, ChargingSession] = {}
        # Rows inserted in bulk, as tuples in the order of SAMPLE_COLUMNS / MESSAGE_COLUMNS
        # (model instances would cost more than the database does).
        self.samples: list[tuple] = []
        self.messages: list[tuple] = []
        self.new_commands: list[ChargerCommand] = []
        self.dirty_commands: dict[int, ChargerCommand] = {}
        # Connection intervals (start, end or None), written by `uptime.flush`.
        self.connections: list[tuple[datetime | None, datetime | None]] = []
        self.rejected: list[tuple[Event, str]] = []
        # Rows of the kinds other apps registered (`handlers.register`), by their own key.
        self.extra: dict[str, list[Any]] = {}
        self.failed: BaseException | None = None
        # Connector 0 / EVSE 0 samples, for the apps that read main meters (main_meter.py).
        self.main_meter: list[MainMeterSamples] = []

    # --- the charger row ----------------------------------------------------------------------
    def set(self, **fields: Any) -> None:
        for name, value in fields.items():
            if getattr(self.charger, name) != value:
                setattr(self.charger, name, value)
                self.fields.add(name)

    def seen(self, at: datetime) -> None:
        c = self.charger
        if c.last_seen is None or at > c.last_seen:
            self.set(last_seen=at)
        # Heard from after the last disconnection or offline sweep: connected again.
        if not c.connected and (c.connection_changed_at is None or at > c.connection_changed_at):
            self.set(connected=True, connection_changed_at=at)
            if c.connected_since is None or c.connected_since < at:
                self.set(connected_since=at)

    # --- outlets ------------------------------------------------------------------------------
    def connector(self, evse_id: Any, connector_id: Any) -> Connector | None:
        """The outlet an event is about (created when first heard of); None for the charger
        itself (`contract.outlet_key`)."""
        key = outlet_key(evse_id, connector_id)
        if key is None:
            return None
        if not self.connectors_loaded:  # not foreseen by Batch.load: one more query
            Batch._load_connectors([self])
        found = self.connectors.get(key)
        if found is None:
            found = Connector(
                community_id=self.charger.community_id,
                charger=self.charger,
                evse_id=key[0],
                connector_id=key[1],
            )
            self.connectors[key] = found
            self.new_connectors.append(found)
        return found

    def connector_changed(self, connector: Connector) -> None:
        if connector.pk is not None:
            self.dirty_connectors[connector.pk] = connector

    # --- sessions -----------------------------------------------------------------------------
    def session(self, transaction_id: str) -> ChargingSession:
        found = self.sessions.get(transaction_id)
        if found is None:
            found = ChargingSession(
                community_id=self.charger.community_id,
                charger=self.charger,
                transaction_id=transaction_id,
            )
            self.sessions[transaction_id] = found
            self.new_sessions.append(found)
        return found

    def open_sessions(self) -> list[ChargingSession]:
        return [s for s in self.sessions.values() if s.state == ChargingSession.State.ACTIVE]

    def session_changed(self, session: ChargingSession) -> None:
        self.dirty_sessions[session.transaction_id] = session

    def card(self, id_tag: str) -> ChargeCard | None:
        cards = self.batch.cards.get(self.charger.community_id, {})
        found = [cards[u] for u in card_uid_spellings(id_tag) if u in cards]
        # An active card wins over an inactive one with the same uid spelling.
        found.sort(key=lambda c: not c.active)
        return found[0] if found else None

    def price(self, when: datetime) -> Decimal | None:
        return self.batch.price(self.charger, when)

    def add_samples(
        self,
        session: ChargingSession,
        samples: Sequence[Mapping[str, Any]],
        at: datetime,
        track_last: bool = True,
    ) -> None:
        """Keep every readable sample (they are facts with their own time: duplicates fall on
        the unique constraint); the newest energy register moves the session's live energy."""
        latest: tuple[datetime, Decimal] | None = None
        community_id = self.charger.community_id
        append = self.samples.append
        for s in samples:
            value = to_decimal(s.get("value"))
            if value is None:
                continue
            labels = sample_labels(s)
            if labels.kilo:
                value *= 1000
            ts = parse_time(s.get("timestamp"), at) or at
            name, phase = labels.name, labels.phase
            append(
                (
                    community_id,
                    session,
                    ts,
                    name,
                    phase,
                    labels.context,
                    value.quantize(_Q3),
                    labels.unit,
                )
            )
            if name == ENERGY_REGISTER and not phase and (latest is None or ts >= latest[0]):
                latest = (ts, value)
        if track_last and latest is not None:
            ts, wh = latest
            if session.meter_last_at is None or ts >= session.meter_last_at:
                session.meter_last_at = ts
                session.meter_last_wh = wh.quantize(_Q1)

    # --- the log and commands -----------------------------------------------------------------
    def command(self, uid: str) -> ChargerCommand | None:
        return self.batch.commands.get(uid)

    def reject(self, event: Event, reason: str) -> None:
        logger.warning("Refused event from %s: %s", self.charger.identity, reason)
        self.rejected.append((event, reason))


def register_wh(
    samples: Sequence[Mapping[str, Any]], prefer_context: str | None = None
) -> tuple[datetime, Decimal] | None:
    """(time, Wh) of the total energy register in `samples`: the one in `prefer_context`
    (e.g. Transaction.Begin/End) if present, else the latest one."""
    candidates = []
    for s in samples:
        if measurand(s) != ENERGY_REGISTER or s.get("phase"):
            continue
        value = sample_value(s)
        ts = parse_time(s.get("timestamp"))
        if value is None or ts is None:
            continue
        candidates.append((s.get("context") == prefer_context, ts, value))
    if not candidates:
        return None
    best = max(candidates, key=lambda c: (c[0], c[1]))
    return best[1], best[2]


class Batch:
    """The chargers of one batch, their rows read at once, and the bulk writes at the end."""

    def __init__(self, by_identity: dict[str, list[Event]], lock: bool = True):
        self.by_identity = by_identity
        self.lock = lock
        self.states: list[ChargerState] = []
        self.cards: dict[int, dict[str, ChargeCard]] = {}
        self.commands: dict[str, ChargerCommand] = {}
        self._prices: PriceList | None = None
        self.unknown_events = 0

    # --- reads --------------------------------------------------------------------------------
    def load(self) -> Batch:
        # Rows locked in primary-key order: two workers lock overlapping batches in the same
        # order, so they wait for each other and cannot deadlock.
        if _is_postgres():
            where = "WHERE identity = ANY(%s::varchar[]) ORDER BY id"
            rows = load_where(
                Charger, f"{where} FOR UPDATE" if self.lock else where, [list(self.by_identity)]
            )
        else:
            chargers = Charger.objects.filter(among("identity", self.by_identity)).order_by("pk")
            if self.lock:
                chargers = chargers.select_for_update(of=("self",))
            rows = load_rows(chargers)
        found = {c.identity: c for c in rows}
        for identity, events in self.by_identity.items():
            charger = found.get(identity)
            if charger is None:
                # Deleted between the handshake and now: nothing to attach the events to.
                self.unknown_events += len(events)
                continue
            self.states.append(ChargerState(self, charger, events))
        if not self.states:
            return self
        by_pk = {st.charger.pk: st for st in self.states}

        tids: set[tuple[int, str]] = set()  # (charger, transaction id) the events name
        id_tags: set[str] = set()
        uids: set[str] = set()
        # Chargers whose events need their sessions in progress: a start (stale sessions on
        # the outlet), a boot (sessions it never ended), meter values without a transaction.
        need_open: set[int] = set()
        for st in self.states:
            for e in st.events:
                p = e.get("payload") or {}
                kind = e.get("kind")
                if not isinstance(p, dict):
                    continue
                if kind in ("transaction", "meter_values"):
                    tid = p.get("transaction_id")
                    if tid is not None and tid != "":
                        tids.add((st.charger.pk, str(tid)[:64]))
                    else:
                        need_open.add(st.charger.pk)
                    if p.get("id_tag"):
                        id_tags.add(str(p["id_tag"])[:64])
                    if p.get("event") == "started":
                        need_open.add(st.charger.pk)
                elif kind == "boot":
                    need_open.add(st.charger.pk)
                elif kind == "command" and p.get("uid"):  # canonical spelling below
                    uids.add(str(p["uid"]))
        for session in self._load_sessions(need_open, tids) if need_open or tids else ():
            by_pk[session.charger_id].sessions[session.transaction_id] = session
        # Outlets, for the chargers whose events name one that no loaded session already
        # carries: a status, a start, a new session, meter values without a transaction.
        need_outlets: set[int] = set(need_open)
        for st in self.states:
            if st.charger.pk in need_outlets:
                continue
            for e in st.events:
                p = e.get("payload") or {}
                kind = e.get("kind")
                if kind == "status":
                    need_outlets.add(st.charger.pk)
                    break
                if kind in ("transaction", "meter_values") and isinstance(p, dict):
                    named = st.sessions.get(str(p.get("transaction_id"))[:64])
                    if named is None or named.connector_id is None:
                        need_outlets.add(st.charger.pk)
                        break
        if need_outlets:
            self._load_connectors([by_pk[pk] for pk in sorted(need_outlets)])
        if id_tags:
            spellings = sorted({u for tag in id_tags for u in card_uid_spellings(tag)})
            communities = {st.charger.community_id for st in self.states}
            if _is_postgres():
                cards = load_where(
                    ChargeCard,
                    "WHERE community_id = ANY(%s::bigint[]) AND uid = ANY(%s::varchar[])"
                    " ORDER BY name, uid",
                    [sorted(communities), spellings],
                )
            else:
                cards = load_rows(
                    ChargeCard.objects.filter(
                        among("community_id", communities), among("uid", spellings)
                    )
                )
            for card in cards:
                self.cards.setdefault(card.community_id, {})[card.uid] = card
                self.cards[card.community_id].setdefault(normalize_card_uid(card.uid), card)
        if uids:
            valid = [u for u in (canonical_uuid(u) for u in uids) if u]
            self.commands = {str(c.uid): c for c in ChargerCommand.objects.filter(uid__in=valid)}
        return self

    @staticmethod
    def _load_sessions(need_open: set[int], tids: set[tuple[int, str]]) -> list[ChargingSession]:
        """The sessions in progress of the chargers in `need_open` and the sessions the events
        name by (charger, transaction id), newest first (the model's order). On PostgreSQL
        each part reads its own index (the partial `session_open`, the unique (charger,
        transaction id)): as one OR of the two, the planner scanned the whole table, years of
        sessions, at every batch."""
        active = ChargingSession.State.ACTIVE
        if not _is_postgres():
            # Elsewhere (SQLite) the sessions of any of the chargers with any of the ids, a
            # superset the handlers never look at: an OR per pair would pass SQLite's limit on
            # the depth of an expression in a big batch.
            found = among("charger_id", sorted(need_open)) & Q(state=active)
            if tids:
                found |= among("charger_id", sorted({c for c, _ in tids})) & among(
                    "transaction_id", sorted({t for _, t in tids})
                )
            return load_rows(ChargingSession.objects.filter(found))
        pairs = sorted(tids)
        return load_where(
            ChargingSession,
            _SESSIONS_WHERE,
            [sorted(need_open), active, [p[0] for p in pairs], [p[1] for p in pairs]],
        )

    @staticmethod
    def _load_connectors(states: list[ChargerState]) -> None:
        by_pk = {st.charger.pk: st for st in states}
        # Each charger's outlets in the model's order (evse, connector); ordered by the charger
        # itself, the model's order would join every charger and site to sort by their names.
        if _is_postgres():
            outlets = load_where(
                Connector,
                "WHERE charger_id = ANY(%s::bigint[]) ORDER BY charger_id, evse_id, connector_id",
                [list(by_pk)],
            )
        else:
            outlets = load_rows(
                Connector.objects.filter(among("charger_id", by_pk)).order_by(
                    "charger_id", "evse_id", "connector_id"
                )
            )
        for connector in outlets:
            key = (connector.evse_id, connector.connector_id)
            by_pk[connector.charger_id].connectors[key] = connector
        for st in states:
            st.connectors_loaded = True
            by_id = {c.pk: c for c in st.connectors.values()}
            for session in st.sessions.values():
                if session.connector_id in by_id:
                    session.connector = by_id[session.connector_id]  # the object handlers change

    def price(self, charger: Charger, when: datetime) -> Decimal | None:
        """`billing.prices.price_at`, answered from one price list read once per batch."""
        if self._prices is None:
            self._prices = PriceList({st.charger.community_id for st in self.states})
        return self._prices.at(charger.community_id, when)

    # --- in memory ----------------------------------------------------------------------------
    def apply(
        self,
        handlers: Mapping[Kind, Handler],
        validate: Callable[[Any, Any], None],
        alive_kinds: Iterable[str],
    ) -> Batch:
        alive = set(alive_kinds)
        for st in self.states:
            try:
                alive_at = None
                for event in st.events:
                    at = parse_time(event.get("received_at")) or timezone.now()
                    kind = event.get("kind")
                    payload = event.get("payload") or {}
                    if not isinstance(kind, str):
                        st.reject(event, f"event kind is not text: {str(kind)[:60]}")
                        continue
                    handler = handlers.get(kind)
                    if handler is None:
                        logger.warning("Unknown event kind %r from %s", kind, st.charger.identity)
                        continue
                    try:
                        validate(kind, payload)
                    except Rejected as e:
                        st.reject(event, str(e))
                        continue
                    handler(st, payload, at)
                    if kind in alive or (kind == "message" and payload.get("direction") == "in"):
                        alive_at = at if alive_at is None or at > alive_at else alive_at
                if alive_at is not None:
                    st.seen(alive_at)
            except Exception as e:  # a bug or a value no check foresaw: this charger only
                logger.exception("Events of %s could not be applied", st.charger.identity)
                st.failed = e
        return self

    # --- writes -------------------------------------------------------------------------------
    def flush(self) -> dict[str, int]:
        good = [st for st in self.states if st.failed is None]
        now = timezone.now()

        new_connectors = [c for st in good for c in st.new_connectors]
        if new_connectors:
            # Only the worker creates outlets, under the charger's lock: no conflict can occur,
            # but an upsert keeps this safe and sets the primary keys either way.
            Connector.objects.bulk_create(
                new_connectors,
                update_conflicts=True,
                unique_fields=["charger", "evse_id", "connector_id"],
                update_fields=["evse_id"],
            )
        # New sessions are inserted once, with their figures already computed (no UPDATE of
        # a row inserted a moment before: a second row version, index entries and trigger
        # work for nothing); their first register reading, if they need one, is in this batch.
        new_sessions = [s for st in good for s in st.new_sessions]
        self._recompute(new_sessions, _first_registers(good, new_sessions))
        for s in new_sessions:
            s.updated_at = now
        create_rows(ChargingSession, new_sessions, key=["charger", "transaction_id"])

        samples = [(m[0], m[1].pk, *m[2:]) for st in good for m in st.samples]
        insert_rows(MeterSample, SAMPLE_COLUMNS, samples)

        created = {id(s) for s in new_sessions}
        dirty = [s for st in good for s in st.dirty_sessions.values() if id(s) not in created]
        self._recompute(dirty)
        for s in dirty:
            s.updated_at = now
        if dirty:
            update_rows(ChargingSession, dirty, SESSION_FIELDS)

        messages = [m for st in good for m in st.messages]
        insert_rows(OcppMessage, MESSAGE_COLUMNS, messages)

        new_commands = [c for st in good for c in st.new_commands]
        if new_commands:
            ChargerCommand.objects.bulk_create(new_commands, ignore_conflicts=True)
        dirty_commands = [c for st in good for c in st.dirty_commands.values()]
        for c in dirty_commands:
            c.updated_at = now
        if dirty_commands:
            update_rows(ChargerCommand, dirty_commands, COMMAND_FIELDS)

        dirty_connectors = [c for st in good for c in st.dirty_connectors.values()]
        if dirty_connectors:
            update_rows(Connector, dirty_connectors, CONNECTOR_FIELDS)
        main_meter.deliver([m for st in good for m in st.main_meter])
        # Outlets created in this batch were inserted with their status already.

        # Chargers grouped by the fields their events changed: most batches change only
        # `last_seen` for most chargers, and a configuration (JSON) is written only where it
        # changed.
        groups: dict[tuple[str, ...], list[Charger]] = defaultdict(list)
        for st in good:
            if st.fields:
                groups[tuple(sorted(st.fields))].append(st.charger)
        for fields, chargers in groups.items():
            update_rows(Charger, chargers, list(fields))
        uptime.flush(good)

        for flush in EXTRA_FLUSHES:
            flush(good)

        return {
            "chargers": len(good),
            "samples": len(samples),
            "messages": len(messages),
            "sessions": len(dirty),
        }

    @staticmethod
    def _recompute(
        sessions: list[ChargingSession], first: Mapping[int, Decimal] | None = None
    ) -> None:
        """Energy from the register (stop, else the latest reading of a session in progress)
        and cost at the price fixed at the start (`billing.prices.session_cost`).

        No start reading (2.0.1 chargers that report none in Started): the first register
        sample stands in, without being stored as the start so a late Started still wins.
        `first` gives it by `id(session)` when the caller knows it (a new session's samples
        are all in this batch: `_first_registers`); otherwise it is read from the database."""
        if first is None:
            need_first = [
                s
                for s in sessions
                if s.meter_start_wh is None
                and (s.meter_stop_wh is not None or s.meter_last_wh is not None)
            ]
            first = {}
            if need_first:
                first_value = (
                    MeterSample.objects.filter(
                        session=OuterRef("pk"), measurand=ENERGY_REGISTER, phase=""
                    )
                    .order_by("timestamp")
                    .values("value")[:1]
                )
                found = dict(
                    ChargingSession.objects.filter(pk__in=[s.pk for s in need_first])
                    .annotate(first=Subquery(first_value))
                    .values_list("pk", "first")
                )
                first = {id(s): found[s.pk] for s in need_first if found.get(s.pk) is not None}
        for s in sessions:
            end = s.meter_stop_wh if s.meter_stop_wh is not None else s.meter_last_wh
            start = s.meter_start_wh if s.meter_start_wh is not None else first.get(id(s))
            if start is not None and end is not None:
                energy = max(Decimal(0), Decimal(end) - Decimal(start)).quantize(_Q1)
                s.energy_wh = energy
            if s.price_per_kwh is not None:
                cost = session_cost(s.energy_wh, s.price_per_kwh)
                if cost is not None:
                    s.cost = cost


def _first_registers(
    states: list[ChargerState], sessions: list[ChargingSession]
) -> dict[int, Decimal]:
    """The first energy register sample of each of `sessions` among the batch's samples, by
    `id(session)`: what the database would answer once they are inserted (the earliest time;
    of two samples at the same time, the first, which ON CONFLICT DO NOTHING keeps)."""
    wanted = {id(s) for s in sessions if s.meter_start_wh is None}
    first: dict[int, tuple[datetime, Decimal]] = {}
    if not wanted:
        return {}
    for st in states:
        for _, session, ts, name, phase, _, value, _ in st.samples:
            key = id(session)
            if key in wanted and name == ENERGY_REGISTER and not phase:
                known = first.get(key)
                if known is None or ts < known[0]:
                    first[key] = (ts, value)
    return {key: value for key, (_, value) in first.items()}


def canonical_uuid(value: str) -> str | None:
    """The command uid as the database spells it (lower case, dashes), or None if not a UUID."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None
