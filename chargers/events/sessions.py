"""Sessions and meter samples: TransactionEvent / Start- and StopTransaction, MeterValues.

A session is keyed by (charger, transaction id) and built from whatever arrives, in whatever
order: Started fills what is still empty, samples are facts kept whatever their seqNo or order,
Ended completes the session once. Sparklin closes a session itself (with the reason shown to
managers, and its energy from its last reading) when the charger starts another one on the same
outlet or reboots without ending it; the charger's own stop, if it comes later, still completes
it with the charger's figures.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import cast

from ..contract import MeterValuesPayload, TransactionPayload
from ..models import AUTO_CLOSED, Anomaly, ChargingSession, Connector, normalize_card_uid
from . import main_meter
from .batch import ChargerState, register_wh
from .values import check_register, check_transaction_id, parse_time, small_int, to_decimal

_Q1 = Decimal("0.1")
ACTIVE = ChargingSession.State.ACTIVE
COMPLETED = ChargingSession.State.COMPLETED


def _ended_by_charger(session: ChargingSession) -> bool:
    return session.state == COMPLETED and session.anomaly not in AUTO_CLOSED


def _latest_known(session: ChargingSession) -> datetime | None:
    times = [t for t in (session.started_at, session.meter_last_at) if t is not None]
    return max(times) if times else None


def close_by_sparklin(session: ChargingSession, anomaly: Anomaly, at: datetime) -> None:
    """End a session the charger will apparently never end, at its last reading (energy from
    it), flagged with why. The charger's own stop, if it still comes, overrides all of this."""
    session.state = COMPLETED
    session.anomaly = anomaly
    session.stop_reason = anomaly.value[:40]
    session.stopped_at = _latest_known(session) or at
    if session.meter_last_wh is not None:
        session.meter_stop_wh = session.meter_last_wh


_CONNECTOR = ChargingSession._meta.get_field("connector")


def _outlet_of(thing: ChargingSession | Connector | None) -> tuple | None:
    """Which outlet a session (or connector) is, without a query: its connector's primary key,
    or the identity of a connector created in this batch and not saved yet."""
    if thing is None:
        return None
    if isinstance(thing, Connector):
        return ("pk", thing.pk) if thing.pk is not None else ("new", id(thing))
    if _CONNECTOR.is_cached(thing):
        return _outlet_of(cast(Connector | None, _CONNECTOR.get_cached_value(thing)))
    return ("pk", thing.connector_id) if thing.connector_id is not None else None


def _same_outlet(
    a: ChargingSession | Connector | None, b: ChargingSession | Connector | None
) -> bool:
    key = _outlet_of(a)
    return key is not None and key == _outlet_of(b)


def _close_stale_on_outlet(st: ChargerState, session: ChargingSession, started: datetime) -> None:
    """A new transaction on an outlet ends any older one still in progress there; and if a
    newer one is already in progress there (batches out of order), this one is the stale one."""
    for other in st.open_sessions():
        if other is session or not _same_outlet(other, session):
            continue
        known = _latest_known(other)
        if known is None or known < started:
            close_by_sparklin(other, Anomaly.CLOSED_NEW_TRANSACTION, started)
            st.session_changed(other)
        elif (
            other.started_at is not None and other.started_at > started and session.state == ACTIVE
        ):
            close_by_sparklin(session, Anomaly.CLOSED_NEW_TRANSACTION, other.started_at)


def _attach_card(st: ChargerState, session: ChargingSession, id_tag: str | None) -> None:
    uid = normalize_card_uid(str(id_tag or ""))
    if not uid or session.id_tag:
        return
    session.id_tag = uid[:36]
    card = st.card(str(id_tag))
    if card is not None:
        session.card = card
        session.holder_id = card.holder_id


def validate_transaction(p: TransactionPayload) -> None:
    from .values import check_outlet, check_samples

    check_transaction_id(p.get("transaction_id"))
    check_outlet(p.get("evse_id"), p.get("connector_id"))
    check_register(to_decimal(p.get("meter_wh")), "meter_wh")
    check_samples(p.get("samples"))


def validate_meter_values(p: MeterValuesPayload) -> None:
    from .values import check_outlet, check_samples

    if p.get("transaction_id") not in (None, ""):
        check_transaction_id(p.get("transaction_id"))
    check_outlet(p.get("evse_id"), p.get("connector_id"))
    check_samples(p.get("samples"))


def apply_transaction(st: ChargerState, p: TransactionPayload, at: datetime) -> None:
    """Upsert the session by (charger, transaction id), whatever order events come in."""
    event = p.get("event")
    session = st.session(check_transaction_id(p.get("transaction_id")))
    ts = parse_time(p.get("timestamp"), at) or at
    samples = p.get("samples") or []
    ended_before = _ended_by_charger(session)

    seq_no = small_int(p.get("seq_no"))
    if seq_no is not None:
        # Informative only: samples are never dropped on a seqNo (some chargers send 0 always).
        session.last_seq_no = max(seq_no, session.last_seq_no if session.last_seq_no else seq_no)
    if p.get("offline"):
        session.offline = True
    if p.get("free") and not session.free:
        # Allowed by a free-charging rule (the gateway's decision at the start, or when a
        # 2.0.1 driver authorized after plugging in): priced 0, never billed.
        session.free, session.price_per_kwh = True, Decimal(0)
    if _outlet_of(session) is None:
        session.connector = st.connector(p.get("evse_id"), p.get("connector_id"))
    _attach_card(st, session, p.get("id_tag"))

    if event == "started":
        if session.started_at is None:
            session.started_at = ts
        if session.meter_start_wh is None:
            begin = to_decimal(p.get("meter_wh"))
            if begin is None:
                reg = register_wh(samples, "Transaction.Begin")
                begin = reg[1] if reg else None
            if begin is not None:
                session.meter_start_wh = begin.quantize(_Q1)
        if session.price_per_kwh is None and session.started_at is not None:
            session.price_per_kwh = st.price(session.started_at)
        if session.anomaly == Anomaly.STOP_WITHOUT_START:
            session.anomaly = ""
        if _outlet_of(session) is not None and session.started_at is not None:
            _close_stale_on_outlet(st, session, session.started_at)

    # Late samples of a session the charger ended are kept but cannot change its figures.
    st.add_samples(session, samples, ts, track_last=not ended_before)

    if event == "ended" and not ended_before:
        stop = to_decimal(p.get("meter_wh"))
        if stop is None:
            reg = register_wh(samples, "Transaction.End")
            stop = reg[1] if reg else session.meter_last_wh
        session.meter_stop_wh = stop.quantize(_Q1) if stop is not None else None
        session.stopped_at = ts
        session.stop_reason = str(p.get("reason") or "")[:40]
        session.state = COMPLETED
        # A stop for a transaction never seen starting is kept, and flagged.
        session.anomaly = Anomaly.STOP_WITHOUT_START if session.started_at is None else ""
    st.session_changed(session)


def apply_meter_values(st: ChargerState, p: MeterValuesPayload, at: datetime) -> None:
    """Samples of a running session. Without a transaction id (1.6 allows it) they belong to
    the session in progress on that outlet, if any. The charger-wide meter (connector 0 /
    EVSE 0) goes to the main-meter consumers (`main_meter`); samples outside any session are
    otherwise only kept in the message log."""
    samples = p.get("samples") or []
    tid = p.get("transaction_id")
    if tid not in (None, ""):
        session = st.session(check_transaction_id(tid))
    else:
        connector = st.connector(p.get("evse_id"), p.get("connector_id"))
        if connector is None:  # the charger itself: its main meter, if someone reads it
            main_meter.collect(st, samples, at)
            return
        running = [s for s in st.open_sessions() if _same_outlet(s, connector)]
        if not running:
            return
        session = max(running, key=lambda s: s.started_at or at)
    st.add_samples(session, samples, at, track_last=not _ended_by_charger(session))
    st.session_changed(session)


def close_sessions_at_reboot(st: ChargerState, boot_at: datetime) -> None:
    """A charger that boots has ended whatever was in progress before: close the sessions it
    never stopped (their last reading before the boot gives the energy). A session heard of
    after the boot (resumed, or a new one) is left alone."""
    for session in st.open_sessions():
        known = _latest_known(session)
        if known is None or known < boot_at:
            close_by_sparklin(session, Anomaly.CLOSED_REBOOT, boot_at)
            st.session_changed(session)
