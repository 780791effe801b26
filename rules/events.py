"""The worker's side of the gateway's `access` events (registered in `chargers.events.handlers`
by `RulesConfig.ready`): refusals decided by a rule, and cards presented while a learn window is
open. Rare events, so each is one insert inside
the batch's transaction (the batch runs with scoping off; every row carries its community)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from accounts.models import User
from chargers.events.values import clean_text, small_int
from chargers.models import normalize_card_uid

from .models import LearnWindow, Reason, RuleEvent

if TYPE_CHECKING:
    from chargers.events.batch import ChargerState


def apply_access(st: ChargerState, p: dict[str, Any], at: datetime) -> None:
    """{"type": "refused" | "offline", "action", "evse_id", "uid", "reason", "holder_id"} or
    {"type": "scan", "uid"}."""
    if p.get("type") == "scan":
        _apply_scan(st, p, at)
        return
    if p.get("type") not in ("refused", "offline"):
        return
    reason = p.get("reason")
    if reason not in Reason.values:
        return
    holder = p.get("holder_id")
    if isinstance(holder, int) and not User.objects.filter(pk=holder).exists():
        holder = None  # never let a stale id fail the charger's whole batch
    RuleEvent.objects.create(
        community_id=st.charger.community_id,
        kind=RuleEvent.Kind.OFFLINE if p.get("type") == "offline" else RuleEvent.Kind.REFUSED,
        reason=reason,
        action=clean_text(p.get("action"), 40),
        at=at,
        charger_id=st.charger.pk,
        evse_id=small_int(p.get("evse_id")),
        uid=normalize_card_uid(clean_text(p.get("uid"), 64))[:36],
        holder_id=holder if isinstance(holder, int) else None,
    )


def _apply_scan(st: ChargerState, p: dict[str, Any], at: datetime) -> None:
    """The first card presented while a learn window is open on this charger is kept on it,
    to be confirmed in the portal; a later one, or one after the window closed, is not."""
    uid = normalize_card_uid(clean_text(p.get("uid"), 64))[:36]
    if not uid:
        return
    LearnWindow.objects.filter(
        charger_id=st.charger.pk,
        state=LearnWindow.State.OPEN,
        opened_at__lte=at,
        expires_at__gt=at,
    ).update(state=LearnWindow.State.SCANNED, scanned_uid=uid, scanned_at=at)
