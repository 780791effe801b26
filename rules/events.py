"""The worker's side of the gateway's `access` events (registered in `chargers.events.handlers`
by `RulesConfig.ready`): refusals decided by a rule. Rare events, so each is one insert inside
the batch's transaction (the batch runs with scoping off; every row carries its community)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from accounts.models import User
from chargers.events.values import clean_text, small_int
from chargers.models import normalize_card_uid

from .models import Reason, RuleEvent

if TYPE_CHECKING:
    from chargers.events.batch import ChargerState


def apply_access(st: ChargerState, p: dict[str, Any], at: datetime) -> None:
    """{"type": "refused", "action", "evse_id", "uid", "reason", "holder_id"}."""
    if p.get("type") != "refused":
        return
    reason = p.get("reason")
    if reason not in Reason.values:
        return
    holder = p.get("holder_id")
    if isinstance(holder, int) and not User.objects.filter(pk=holder).exists():
        holder = None  # never let a stale id fail the charger's whole batch
    RuleEvent.objects.create(
        community_id=st.charger.community_id,
        kind=RuleEvent.Kind.REFUSED,
        reason=reason,
        action=clean_text(p.get("action"), 40),
        at=at,
        charger_id=st.charger.pk,
        evse_id=small_int(p.get("evse_id")),
        uid=normalize_card_uid(clean_text(p.get("uid"), 64))[:36],
        holder_id=holder if isinstance(holder, int) else None,
    )
