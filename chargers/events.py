"""Persisting what chargers report: the worker side of the gateway's event pipeline.

The gateway never writes to the database itself. It translates each OCPP message into a small
*event* (JSON scalars only) and publishes batches of them as one Celery task
(`chargers.tasks.process_events`), which calls `process_events` here.

Event shape (every key always present)::

    {"identity": "CP-01", "kind": "status", "payload": {...}, "received_at": "2025-…+00:00"}

Kinds and their payloads (the gateway has already translated 1.6 and 2.0.1 into these):

- ``connected``     {"ocpp_version", "remote_address", "gateway"}
- ``disconnected``  {"code"}
- ``refused``       {"reason": UnknownCharger.Reason, "remote_address"} (identity may be unknown)
- ``message``       {"direction": "in"|"out", "message_type": 2|3|4 (0 = unparseable frame),
                     "unique_id", "action", "payload"}
- ``boot``          {"vendor", "model", "serial", "firmware", "ocpp_version", "heartbeat_interval"}
- ``heartbeat``     {}
- ``status``        {"evse_id", "connector_id", "status", "error_code", "timestamp"}
- ``transaction``   {"event": "started"|"updated"|"ended", "transaction_id", "evse_id",
                     "connector_id", "id_tag", "timestamp", "meter_wh", "reason", "seq_no",
                     "offline", "samples": [sample, …]}
- ``meter_values``  {"transaction_id" (or None), "evse_id", "connector_id", "samples": […]}
- ``firmware_status`` {"status"}
- ``command``       {"uid", "action", "payload", "status", "response"}
- ``configuration`` {"values": {key: value}} merged into `Charger.configuration`
- ``configured``    {} the product configuration was applied at this time

A sample is {"timestamp", "measurand", "phase", "context", "value" (decimal string), "unit"}.

Processing is idempotent: every write is an upsert keyed on what the charger sent, a value only
moves forward in time, and rows inserted in bulk have unique constraints (`ignore_conflicts`).
So a batch delivered twice (acks_late, a worker killed mid-task) or batches processed out of
order by several workers end in the same state.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from billing.prices import price_at, session_cost

from .models import (
    ChargeCard,
    Charger,
    ChargerCommand,
    ChargingSession,
    Connector,
    MeterSample,
    OcppMessage,
    UnknownCharger,
    card_uid_spellings,
    normalize_card_uid,
)

logger = logging.getLogger(__name__)

ENERGY_REGISTER = "Energy.Active.Import.Register"

# Kinds that prove the charger itself was talking to us at `received_at`.
_ALIVE_KINDS = {
    "connected",
    "boot",
    "heartbeat",
    "status",
    "transaction",
    "meter_values",
    "firmware_status",
    "configuration",
}

_COMMAND_RANK = {
    ChargerCommand.Status.PENDING: 0,
    ChargerCommand.Status.SENT: 1,
    ChargerCommand.Status.ACCEPTED: 2,
    ChargerCommand.Status.REJECTED: 2,
    ChargerCommand.Status.FAILED: 2,
    ChargerCommand.Status.TIMED_OUT: 2,
}


def parse_time(value, default: datetime | None = None) -> datetime | None:
    """An aware datetime from an OCPP/ISO 8601 string; naive times are UTC (what chargers
    mean); unparseable values give `default` rather than failing the whole batch."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            return default
    else:
        return default
    if timezone.is_naive(dt):
        dt = dt.replace(tzinfo=UTC)
    return dt


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def sample_value(sample: dict) -> Decimal | None:
    """The sample's value in the unit we store: energy in Wh (chargers may report kWh)."""
    value = _decimal(sample.get("value"))
    if value is None:
        return None
    unit = (sample.get("unit") or "").strip()
    if unit.lower() in ("kwh", "kvarh", "kw", "kvar", "kva"):
        value *= 1000
    return value


def sample_unit(sample: dict) -> str:
    unit = (sample.get("unit") or "").strip()
    if unit.lower().startswith("k") and len(unit) > 1:
        return unit[1:]
    if not unit and (sample.get("measurand") or ENERGY_REGISTER).startswith("Energy"):
        return "Wh"
    return unit


def _register_wh(samples: list[dict], prefer_context: str | None = None):
    """(time, Wh) of the total energy register in `samples`: the one in `prefer_context`
    (e.g. Transaction.Begin/End) if present, else the latest one."""
    candidates = []
    for s in samples:
        if (s.get("measurand") or ENERGY_REGISTER) != ENERGY_REGISTER or s.get("phase"):
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


def process_events(events: list[dict]) -> dict:
    """Persist one batch of gateway events. Safe to call twice with the same batch.

    Events of one charger are applied in order inside one transaction holding that charger's
    row lock (so two workers never interleave on one charger), within the charger's community
    scope. Refusals are recorded globally. Returns counts, for logs and tests."""
    counts = {"events": len(events), "chargers": 0, "unknown": 0, "ignored": 0}
    refused: list[dict] = []
    by_identity: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        if event.get("kind") == "refused":
            refused.append(event)
        else:
            by_identity[event["identity"]].append(event)

    if refused:
        _record_refusals(refused)
        counts["unknown"] = len(refused)

    with scopes_disabled():
        charger_ids = dict(
            Charger.objects.filter(identity__in=list(by_identity)).values_list("identity", "pk")
        )
    for identity, charger_events in by_identity.items():
        charger_id = charger_ids.get(identity)
        if charger_id is None:
            # Deleted between the handshake and now: nothing to attach the events to.
            counts["ignored"] += len(charger_events)
            continue
        with transaction.atomic():
            with scopes_disabled():
                charger = (
                    Charger.objects.select_for_update()
                    .select_related("community")
                    .get(pk=charger_id)
                )
            with scope(community=charger.community):
                _ChargerBatch(charger).apply(charger_events)
        counts["chargers"] += 1
    return counts


def _record_refusals(events: list[dict]) -> None:
    """Upsert `UnknownCharger` per (identity, reason). Only attempts newer than the stored
    `last_seen` are counted, so a replayed batch does not inflate the counter."""
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for e in events:
        reason = e["payload"].get("reason") or UnknownCharger.Reason.UNKNOWN
        grouped[(e["identity"][:100], reason)].append(e)
    for (identity, reason), items in grouped.items():
        times = sorted(
            (parse_time(e["received_at"]), e["payload"].get("remote_address") or "") for e in items
        )
        with transaction.atomic():
            row, created = UnknownCharger.objects.select_for_update().get_or_create(
                identity=identity,
                reason=reason,
                defaults={
                    "first_seen": times[0][0],
                    "last_seen": times[-1][0],
                    "attempts": len(times),
                    "remote_address": times[-1][1][:64],
                },
            )
            if created:
                continue
            newer = [t for t in times if t[0] > row.last_seen]
            row.first_seen = min(row.first_seen, times[0][0])
            if newer:
                row.attempts += len(newer)
                row.last_seen = newer[-1][0]
                row.remote_address = newer[-1][1][:64]
            row.save(update_fields=["first_seen", "last_seen", "attempts", "remote_address"])


class _ChargerBatch:
    """The events of one charger in one batch; collects row inserts and writes them once."""

    def __init__(self, charger: Charger):
        self.charger = charger
        self.charger_fields: set[str] = set()
        self.messages: list[OcppMessage] = []
        self.samples: list[MeterSample] = []
        self.sessions: dict[str, ChargingSession] = {}
        self.dirty_sessions: set[str] = set()
        self.connectors: dict[tuple[int, int], Connector] = {}

    # --- driver -------------------------------------------------------------------------------
    def apply(self, events: list[dict]) -> None:
        alive_at = None
        for event in events:
            at = parse_time(event["received_at"])
            kind = event["kind"]
            payload = event.get("payload") or {}
            handler = getattr(self, f"on_{kind}", None)
            if handler is None:
                logger.warning("Unknown event kind %r from %s", kind, self.charger.identity)
                continue
            handler(payload, at)
            if kind in _ALIVE_KINDS or (kind == "message" and payload.get("direction") == "in"):
                alive_at = at if alive_at is None or at > alive_at else alive_at
        if alive_at is not None:
            self._seen(alive_at)
        self._flush()

    def _set(self, **fields) -> None:
        for name, value in fields.items():
            if getattr(self.charger, name) != value:
                setattr(self.charger, name, value)
                self.charger_fields.add(name)

    def _seen(self, at: datetime) -> None:
        c = self.charger
        if c.last_seen is None or at > c.last_seen:
            self._set(last_seen=at)
        # Heard from after the last disconnection or offline sweep: connected again.
        if not c.connected and (c.connection_changed_at is None or at > c.connection_changed_at):
            self._set(connected=True, connection_changed_at=at)
            if c.connected_since is None or c.connected_since < at:
                self._set(connected_since=at)

    def _flush(self) -> None:
        # Samples first: a session's energy may be computed from its first sample.
        if self.samples:
            MeterSample.objects.bulk_create(self.samples, ignore_conflicts=True, batch_size=500)
        for tid in self.dirty_sessions:
            session = self.sessions[tid]
            _recompute(session)
            session.save()
        if self.messages:
            OcppMessage.objects.bulk_create(self.messages, ignore_conflicts=True, batch_size=500)
        if self.charger_fields:
            self.charger.save(update_fields=sorted(self.charger_fields))

    # --- connection ---------------------------------------------------------------------------
    def on_connected(self, payload: dict, at: datetime) -> None:
        c = self.charger
        if c.connection_changed_at is not None and at < c.connection_changed_at:
            return
        self._set(connected=True, connected_since=at, connection_changed_at=at)
        self._set(gateway=(payload.get("gateway") or "")[:100])
        if payload.get("ocpp_version"):
            self._set(ocpp_version=payload["ocpp_version"])

    def on_disconnected(self, payload: dict, at: datetime) -> None:
        c = self.charger
        if c.connection_changed_at is not None and at < c.connection_changed_at:
            return
        self._set(connected=False, connection_changed_at=at)

    def on_heartbeat(self, payload: dict, at: datetime) -> None:
        """Nothing but `last_seen`, written once per batch by `apply`."""

    # --- charger facts ------------------------------------------------------------------------
    def on_boot(self, payload: dict, at: datetime) -> None:
        c = self.charger
        if c.last_boot_at is not None and at < c.last_boot_at:
            return
        self._set(
            last_boot_at=at,
            reported_vendor=(payload.get("vendor") or "")[:50],
            reported_model=(payload.get("model") or "")[:50],
            reported_serial=(payload.get("serial") or "")[:50],
            firmware_version=(payload.get("firmware") or "")[:50],
        )
        if payload.get("ocpp_version"):
            self._set(ocpp_version=payload["ocpp_version"])
        if payload.get("heartbeat_interval"):
            self._set(heartbeat_interval=int(payload["heartbeat_interval"]))

    def on_firmware_status(self, payload: dict, at: datetime) -> None:
        self._set(firmware_status=(payload.get("status") or "")[:40])

    def on_configuration(self, payload: dict, at: datetime) -> None:
        values = payload.get("values") or {}
        if values:
            merged = {**(self.charger.configuration or {}), **values}
            self._set(configuration=merged)

    def on_configured(self, payload: dict, at: datetime) -> None:
        if self.charger.configured_at is None or at > self.charger.configured_at:
            self._set(configured_at=at)

    def on_message(self, payload: dict, at: datetime) -> None:
        body = payload.get("payload")
        self.messages.append(
            OcppMessage(
                community_id=self.charger.community_id,
                charger=self.charger,
                direction=payload.get("direction") or OcppMessage.Direction.IN,
                message_type=int(payload.get("message_type") or 0),
                unique_id=str(payload.get("unique_id") or "")[:64],
                action=(payload.get("action") or "")[:60],
                payload=body if body is not None else {},
                at=at,
            )
        )

    def on_command(self, payload: dict, at: datetime) -> None:
        status = payload.get("status") or ChargerCommand.Status.PENDING
        command, created = ChargerCommand.objects.get_or_create(
            uid=payload["uid"],
            defaults={
                "community_id": self.charger.community_id,
                "charger": self.charger,
                "action": payload.get("action") or "",
                "payload": payload.get("payload") or {},
                "status": status,
                "response": payload.get("response"),
                "created_at": at,
            },
        )
        if not created and _COMMAND_RANK.get(status, 0) > _COMMAND_RANK.get(command.status, 0):
            command.status = status
            if payload.get("response") is not None:
                command.response = payload["response"]
            command.save(update_fields=["status", "response", "updated_at"])

    # --- outlets ------------------------------------------------------------------------------
    def _connector(self, evse_id, connector_id) -> Connector | None:
        """The outlet for (evse, connector); None for the charger itself (1.6 connector 0,
        2.0.1 evse 0), which is not an outlet."""
        if not evse_id or connector_id is None:
            return None
        if not connector_id:
            connector_id = 1  # 2.0.1 may name only the EVSE; its first connector then.
        key = (int(evse_id), int(connector_id))
        if key not in self.connectors:
            self.connectors[key], _ = Connector.objects.get_or_create(
                charger=self.charger,
                evse_id=key[0],
                connector_id=key[1],
                defaults={"community_id": self.charger.community_id},
            )
        return self.connectors[key]

    def on_status(self, payload: dict, at: datetime) -> None:
        """Connector status. Ordered by the time the gateway received it, not the charger's
        clock: chargers often report 1970 or a stale time after a reboot, and an ordering on
        their clock would freeze the outlet. An older status than the stored one is ignored."""
        connector = self._connector(payload.get("evse_id"), payload.get("connector_id"))
        if connector is None:
            return
        if connector.status_at is not None and at < connector.status_at:
            return
        connector.status = (payload.get("status") or "")[:20]
        connector.error_code = (payload.get("error_code") or "")[:50]
        connector.status_at = at
        connector.save(update_fields=["status", "error_code", "status_at"])

    # --- sessions -----------------------------------------------------------------------------
    def _session(self, transaction_id) -> ChargingSession:
        tid = str(transaction_id)[:64]
        if tid not in self.sessions:
            self.sessions[tid], _ = ChargingSession.objects.get_or_create(
                charger=self.charger,
                transaction_id=tid,
                defaults={"community_id": self.charger.community_id},
            )
        return self.sessions[tid]

    def _add_samples(
        self, session: ChargingSession, samples: list[dict], at: datetime, track_last=True
    ) -> None:
        for s in samples or ():
            value = sample_value(s)
            ts = parse_time(s.get("timestamp"), at)
            if value is None:
                continue
            self.samples.append(
                MeterSample(
                    community_id=self.charger.community_id,
                    session=session,
                    timestamp=ts,
                    measurand=(s.get("measurand") or ENERGY_REGISTER)[:60],
                    phase=(s.get("phase") or "")[:10],
                    context=(s.get("context") or "")[:30],
                    value=value.quantize(Decimal("0.001")),
                    unit=sample_unit(s)[:10],
                )
            )
        latest = _register_wh(samples or []) if track_last else None
        if latest is not None:
            ts, wh = latest
            if session.meter_last_at is None or ts >= session.meter_last_at:
                session.meter_last_at = ts
                session.meter_last_wh = wh.quantize(Decimal("0.1"))

    def _attach_card(self, session: ChargingSession, id_tag: str | None) -> None:
        uid = normalize_card_uid(id_tag or "")
        if not uid or session.id_tag:
            return
        session.id_tag = uid[:36]
        card = (
            ChargeCard.objects.filter(uid__in=card_uid_spellings(id_tag))
            .order_by("-active")
            .first()
        )
        if card is not None:
            session.card = card
            session.holder_id = card.holder_id

    def on_transaction(self, payload: dict, at: datetime) -> None:
        """Upsert the session by (charger, transaction id), whatever order events come in.

        Started fills what is still empty (start time, meter start, card, outlet, price fixed
        at the start time). Updated adds samples unless its seqNo was already seen. Ended
        completes the session once; a replayed Ended/StopTransaction changes nothing."""
        event = payload.get("event")
        session = self._session(payload["transaction_id"])
        tid = session.transaction_id
        ts = parse_time(payload.get("timestamp"), at)
        seq_no = payload.get("seq_no")
        samples = payload.get("samples") or []
        completed = session.state == ChargingSession.State.COMPLETED

        if event == "ended" and completed:
            return  # replayed stop
        if (
            event == "updated"
            and seq_no is not None
            and session.last_seq_no is not None
            and int(seq_no) <= session.last_seq_no
        ):
            return  # replayed or superseded update
        if event == "updated" and completed:
            return  # a late update cannot reopen a finished session

        if payload.get("offline"):
            session.offline = True
        if seq_no is not None:
            session.last_seq_no = max(int(seq_no), session.last_seq_no or int(seq_no))
        if session.connector_id is None:
            session.connector = self._connector(payload.get("evse_id"), payload.get("connector_id"))
        self._attach_card(session, payload.get("id_tag"))

        if event == "started":
            if session.started_at is None:
                session.started_at = ts
            if session.meter_start_wh is None:
                begin = _decimal(payload.get("meter_wh"))
                if begin is None:
                    reg = _register_wh(samples, "Transaction.Begin")
                    begin = reg[1] if reg else None
                if begin is not None:
                    session.meter_start_wh = begin.quantize(Decimal("0.1"))
            if session.price_per_kwh is None and session.started_at is not None:
                session.price_per_kwh = price_at(self.charger.community, session.started_at)

        self._add_samples(session, samples, ts)

        if event == "ended":
            stop = _decimal(payload.get("meter_wh"))
            if stop is None:
                reg = _register_wh(samples, "Transaction.End")
                stop = reg[1] if reg else session.meter_last_wh
            session.meter_stop_wh = stop.quantize(Decimal("0.1")) if stop is not None else None
            session.stopped_at = ts
            session.stop_reason = (payload.get("reason") or "")[:40]
            session.state = ChargingSession.State.COMPLETED
        self.dirty_sessions.add(tid)

    def on_meter_values(self, payload: dict, at: datetime) -> None:
        """Samples of a running session. Without a transaction id (1.6 allows it) they belong
        to the session in progress on that outlet, if any; the charger-wide meter (connector
        0) and samples outside any session are only kept in the message log."""
        tid = payload.get("transaction_id")
        if tid is not None:
            session = self._session(tid)
        else:
            connector = self._connector(payload.get("evse_id"), payload.get("connector_id"))
            if connector is None:
                return
            session = (
                ChargingSession.objects.filter(
                    charger=self.charger,
                    connector=connector,
                    state=ChargingSession.State.ACTIVE,
                )
                .order_by("-started_at")
                .first()
            )
            if session is None:
                return
            session = self.sessions.setdefault(session.transaction_id, session)
        if session.state == ChargingSession.State.COMPLETED:
            # Late samples are kept but cannot change a finished session's figures.
            self._add_samples(session, payload.get("samples") or [], at, track_last=False)
            return
        self._add_samples(session, payload.get("samples") or [], at)
        self.dirty_sessions.add(session.transaction_id)


def _recompute(session: ChargingSession) -> None:
    """Energy from the register (stop, else the latest reading for a session in progress) and
    cost at the price fixed at the start, rounded half-up to the cent."""
    end = session.meter_stop_wh if session.meter_stop_wh is not None else session.meter_last_wh
    start = session.meter_start_wh
    if start is None and end is not None and session.pk:
        # No start reading (2.0.1 chargers that report none in Started): the first register
        # sample stands in, without being stored as the start so a late Started still wins.
        first = (
            MeterSample.objects.filter(session=session, measurand=ENERGY_REGISTER, phase="")
            .order_by("timestamp")
            .values_list("value", flat=True)
            .first()
        )
        start = first
    if start is not None and end is not None:
        session.energy_wh = max(Decimal(0), Decimal(end) - Decimal(start)).quantize(Decimal("0.1"))
    if session.price_per_kwh is not None:
        session.cost = session_cost(session.energy_wh, session.price_per_kwh)


def sweep_offline(now: datetime | None = None, sweep_every: int = 60) -> int:
    """Mark not connected every charger not heard from for too long: the gateway may have died
    without saying so, or the charger went silent on an open socket.

    The promise is "not connected within two heartbeat intervals", and this runs every
    `sweep_every` seconds, so the silence allowed is 2 × interval − sweep_every (never less
    than one interval plus 30 s, so one late heartbeat is not an outage). Returns how many
    chargers changed."""
    from datetime import timedelta

    now = now or timezone.now()
    changed = 0
    with scopes_disabled():
        intervals = list(
            Charger.objects.filter(connected=True)
            .values_list("heartbeat_interval", flat=True)
            .distinct()
        )
        for interval in intervals:
            interval = max(int(interval or 0), 1)
            allowed = max(interval + 30, 2 * interval - sweep_every)
            cutoff = now - timedelta(seconds=allowed)
            changed += (
                Charger.objects.filter(connected=True, heartbeat_interval=interval)
                .exclude(last_seen__gte=cutoff)
                .update(connected=False, connection_changed_at=now)
            )
    return changed


def purge_message_log(days: int, now: datetime | None = None) -> int:
    """Delete OCPP message log rows older than `days`; returns how many."""
    from datetime import timedelta

    cutoff = (now or timezone.now()) - timedelta(days=days)
    with scopes_disabled():
        deleted, _ = OcppMessage.objects.filter(at__lt=cutoff).delete()
    return deleted
