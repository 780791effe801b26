"""Rules of use in the gateway: Authorize, StartTransaction and TransactionEvent answers come
from `rules.evaluation.evaluate` over a per-community snapshot held in memory.

The snapshot (policies, windows, groups expanded, limits, the month's usage of limited users) is
built off the event loop (`decisions.db_call`) the first time a community's charger asks, then
kept. At most every `STAMP_CHECK_SECONDS` a decision first reads the community's access stamp (one
indexed row): when it moved — a rule, a group, a limit or a card changed in the portal — the
snapshot is rebuilt and the community's cached card decisions are dropped, so a change applies
within a few seconds; a snapshot older than `SNAPSHOT_MAX_AGE` is rebuilt anyway (monthly usage).
While the database is unreachable the last snapshot keeps answering; with none, the card
decision alone does (the behaviour before rules).

A refusal leaves as an `access` event (`rules.events` records it): the driver and the managers
see its reason."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.db import DatabaseError
from django.utils import timezone

from chargers.models import AuthorizationStatus, normalize_card_uid
from chargers.stamps import versions
from rules.evaluation import Decision, Snapshot, build_snapshot, evaluate, learning
from rules.models import Reason

from .decisions import Decisions, db_call

if TYPE_CHECKING:
    from .base import GatewayChargePoint
    from .server import Gateway

logger = logging.getLogger(__name__)

STAMP_CHECK_SECONDS = 2.0
SNAPSHOT_MAX_AGE = 60.0
# A 1.6 start older than this when it arrives was started offline (replayed after reconnection).
OFFLINE_GRACE_SECONDS = 600

_CARD_ONLY = {
    AuthorizationStatus.INVALID.value: Reason.UNKNOWN_CARD,
    AuthorizationStatus.BLOCKED.value: Reason.CARD_BLOCKED,
    AuthorizationStatus.EXPIRED.value: Reason.CARD_EXPIRED,
}


class AccessRules:
    """The snapshots of one gateway process, per community."""

    def __init__(self, decisions: Decisions) -> None:
        self.decisions = decisions
        self._snapshots: dict[int, Snapshot] = {}
        self._checked: dict[int, float] = {}
        self._built: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def snapshot(self, community_id: int) -> Snapshot | None:
        """The community's snapshot, checked against its stamp at most every few seconds."""
        snap = self._snapshots.get(community_id)
        if snap is not None and time.monotonic() - self._checked[community_id] < (
            STAMP_CHECK_SECONDS
        ):
            return snap
        lock = self._locks.setdefault(community_id, asyncio.Lock())
        async with lock:  # one refresh per community at a time; the others wait for it
            snap = self._snapshots.get(community_id)
            now = time.monotonic()
            if snap is not None and now - self._checked[community_id] < STAMP_CHECK_SECONDS:
                return snap
            try:
                version = (await db_call(versions, [community_id]))[community_id]
                stale = snap is None or now - self._built[community_id] > SNAPSHOT_MAX_AGE
                if snap is not None and version != snap["version"]:
                    self.decisions.forget_community(community_id)
                    stale = True
                if stale:
                    snap = await db_call(build_snapshot, community_id)
                    self._snapshots[community_id] = snap
                    self._built[community_id] = now
            except DatabaseError as exc:
                logger.warning(
                    "Database unreachable (%s): rules of community %s from the last snapshot",
                    exc,
                    community_id,
                )
            self._checked[community_id] = now
        return snap

    async def decide(
        self,
        cp: GatewayChargePoint,
        id_tag: str | None,
        *,
        evse_id: int | None,
        action: str,
        offline: bool = False,
    ) -> Decision:
        """May `id_tag` charge on this outlet (None: any outlet of the charger) now? A refusal
        is emitted as an `access` event; for a transaction the charger started offline, a
        would-be refusal is emitted as a flag (type "offline") and the start is accepted."""
        snap = await self.snapshot(cp.community_id)
        card = await self.decisions.authorize(cp.community_id, id_tag or "")
        if snap is None:
            status = card["status"]
            decision = Decision(status == AuthorizationStatus.ACCEPTED, _CARD_ONLY.get(status, ""))
        else:
            decision = evaluate(snap, charger_id=cp.charger["id"], evse_id=evse_id, card=card)
        if snap is not None and id_tag and learning(snap, cp.charger["id"], timezone.now()):
            # Learn by scanning: the presented UID is offered in the portal, never added here.
            cp.emit("access", {"type": "scan", "uid": normalize_card_uid(id_tag)[:36]})
        if not decision.allowed:
            cp.emit(
                "access",
                {
                    "type": "offline" if offline else "refused",
                    "action": action,
                    "evse_id": evse_id,
                    "uid": normalize_card_uid(id_tag or "")[:36],
                    "reason": decision.reason,
                    "holder_id": card.get("holder_id"),
                },
            )
        if offline:
            # Recorded and flagged, never refused after the fact (still free on a free outlet).
            return Decision(True, free=decision.free)
        return decision

    async def free_outlet(self, cp: GatewayChargePoint, evse_id: int | None) -> bool:
        """Whether a transaction started without any token on this outlet (a 2.0.1 station
        with `AuthCtrlr.Enabled` false: no idToken, or type NoAuthorization with an empty one)
        is free charging under the rules of use now. Nothing is emitted: there is no card to
        refuse."""
        snap = await self.snapshot(cp.community_id)
        if snap is None:
            return False
        card = {"status": AuthorizationStatus.INVALID.value, "card_id": None, "holder_id": None}
        return evaluate(snap, charger_id=cp.charger["id"], evse_id=evse_id, card=card).free


def access_rules(gateway: Gateway) -> AccessRules:
    """The gateway's AccessRules (one per Gateway object, created on first use)."""
    rules: AccessRules | None = getattr(gateway, "access_rules", None)
    if rules is None:
        rules = gateway.access_rules = AccessRules(gateway.decisions)
    return rules


async def answer(
    cp: GatewayChargePoint,
    id_tag: str | None,
    *,
    evse_id: int | None,
    action: str,
    offline: bool = False,
) -> Decision:
    """The decision for the handlers (both versions): `.status(cp.version)` is the
    AuthorizationStatus to answer, `.free` marks a start on a free-charging outlet."""
    return await access_rules(cp.gateway).decide(
        cp, id_tag, evse_id=evse_id, action=action, offline=offline
    )


async def answer_status(
    cp: GatewayChargePoint,
    id_tag: str | None,
    *,
    evse_id: int | None,
    action: str,
    offline: bool = False,
) -> str:
    """The AuthorizationStatus for the handlers (both versions)."""
    decision = await answer(cp, id_tag, evse_id=evse_id, action=action, offline=offline)
    return decision.status(cp.version)


def started_offline(timestamp: str | None) -> bool:
    """A 1.6 StartTransaction whose own time is more than `OFFLINE_GRACE_SECONDS` old: the
    charger started it offline and is replaying it now (1.6 has no offline flag)."""
    try:
        started = datetime.fromisoformat(str(timestamp))
    except ValueError:
        return False
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return (timezone.now() - started).total_seconds() > OFFLINE_GRACE_SECONDS
