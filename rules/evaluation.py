"""The one rule of who may charge where and when: `evaluate(snapshot, …) -> Decision`.

A *snapshot* is everything a community's decisions need, as plain JSON-able data (built in a
handful of queries by `build_snapshot`): the gateway caches it per community and rebuilds it when
the community's access stamp moves (`ocpp_gateway/access.py`), so deciding never touches the
database; portal remote starts build a fresh one (`evaluate_now`). Both give the same answers,
since both call `evaluate`.

Order of the checks: the outlet's policy (its own, else its site's, else "all members"); nobody →
out of service; free → allowed whatever the card; the card (unknown, blocked, expired); chosen
users or groups; the weekly windows in the community's time zone (wall-clock comparison, so DST
changes nothing: 08:00 is 08:00 on both sides of the change); the holder's monthly kWh limit."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from typing import Any

from django.db.models import Q
from django.utils import timezone
from django_scopes import scope

from chargers.models import (
    AuthorizationStatus,
    ChargeCard,
    Charger,
    ChargingSession,
    Connector,
    card_decision,
)
from chargers.stamps import versions
from communities.models import Community, Membership
from sparklin.dates import month_bounds

from .models import AccessPolicy, LearnWindow, Mode, Reason, RuleEvent, TimeWindow, UsageLimit

Snapshot = dict[str, Any]
Policy = dict[str, Any]

DEFAULT_POLICY: Policy = {"mode": Mode.MEMBERS.value, "users": None, "windows": []}

_CARD_REASONS = {
    AuthorizationStatus.INVALID.value: Reason.UNKNOWN_CARD,
    AuthorizationStatus.BLOCKED.value: Reason.CARD_BLOCKED,
    AuthorizationStatus.EXPIRED.value: Reason.CARD_EXPIRED,
}

# What a charger is told for each refusal: 1.6 knows Blocked/Expired/Invalid; 2.0.1 says why.
_STATUS_16 = {
    Reason.UNKNOWN_CARD: "Invalid",
    Reason.CARD_EXPIRED: "Expired",
}
_STATUS_201 = {
    Reason.UNKNOWN_CARD: "Invalid",
    Reason.CARD_BLOCKED: "Blocked",
    Reason.CARD_EXPIRED: "Expired",
    Reason.NOT_ALLOWED: "NotAtThisLocation",
    Reason.OUT_OF_SERVICE: "NotAtThisLocation",
    Reason.OUTSIDE_HOURS: "NotAtThisTime",
    Reason.MONTHLY_LIMIT: "NoCredit",
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # a `Reason` value when refused
    free: bool = False  # allowed by a free-charging policy, card or not

    def status(self, version: str) -> str:
        """The AuthorizationStatus to answer in OCPP `version` ("1.6" or "2.0.1")."""
        if self.allowed:
            return "Accepted"
        if version == "1.6":
            return _STATUS_16.get(Reason(self.reason), "Blocked")
        return _STATUS_201.get(Reason(self.reason), "Blocked")

    @property
    def label(self) -> str:
        return str(Reason(self.reason).label) if self.reason else ""


def _policy(policy: AccessPolicy) -> Policy:
    users: set[int] = set(policy.users.values_list("pk", flat=True))
    for group in policy.groups.all():
        users.update(group.members.values_list("pk", flat=True))
    return {
        "mode": policy.mode,
        "users": sorted(users),
        "windows": [
            [w.days, w.start.strftime("%H:%M"), w.end.strftime("%H:%M")]
            for w in TimeWindow.objects.with_scopes_disabled().filter(policy=policy)
        ],
    }


def month_usage_wh(community: Community, user_ids: list[int], at: datetime) -> dict[int, float]:
    """Energy (Wh) charged this month (community time) by each of these users, sessions in
    progress included (their live reading)."""
    local = timezone.localtime(at, community.tz)
    start, end = month_bounds(community, local.year, local.month)
    sessions = ChargingSession.objects.with_scopes_disabled().filter(
        community_id=community.pk,
        holder_id__in=user_ids,
        started_at__gte=start,
        started_at__lt=end,
    )
    used: dict[int, Decimal] = {}
    for holder_id, energy in sessions.filter(state=ChargingSession.State.COMPLETED).values_list(
        "holder_id", "energy_wh"
    ):
        used[holder_id] = used.get(holder_id, Decimal(0)) + (energy or 0)
    for holder_id, first, last in sessions.filter(state=ChargingSession.State.ACTIVE).values_list(
        "holder_id", "meter_start_wh", "meter_last_wh"
    ):
        if first is not None and last is not None and last > first:
            used[holder_id] = used.get(holder_id, Decimal(0)) + (last - first)
    return {uid: float(wh) for uid, wh in used.items()}


def build_snapshot(community_id: int, at: datetime | None = None) -> Snapshot:
    """Everything `evaluate` needs for one community, as plain data (a few queries). Runs in
    the community's scope (the gateway calls it with none): related managers of scoped models
    (a policy's groups, a group's members) then work as in the portal."""
    community = Community.objects.get(pk=community_id)
    with scope(community=community):
        return _build_snapshot(community, at or timezone.now())


def _build_snapshot(community: Community, at: datetime) -> Snapshot:
    community_id = community.pk
    version = versions([community_id])[community_id]
    chargers = Charger.objects.with_scopes_disabled().filter(community_id=community_id)
    charger_site = {str(pk): site for pk, site in chargers.values_list("pk", "site_id")}
    outlets: dict[str, list[int]] = {}
    for charger_id, evse_id in (
        Connector.objects.with_scopes_disabled()
        .filter(community_id=community_id)
        .values_list("charger_id", "evse_id")
        .distinct()
    ):
        outlets.setdefault(str(charger_id), []).append(evse_id)
    policies = (
        AccessPolicy.objects.with_scopes_disabled()
        .filter(community_id=community_id)
        .select_related("connector")
        .prefetch_related("groups")
    )
    site_policies, outlet_policies = {}, {}
    for policy in policies:
        if policy.site_id is not None:
            site_policies[str(policy.site_id)] = _policy(policy)
        elif policy.connector is not None:
            key = f"{policy.connector.charger_id}:{policy.connector.evse_id}"
            outlet_policies[key] = _policy(policy)
    limits = {
        str(limit.user_id): {
            "monthly_wh": float(limit.monthly_kwh * 1000) if limit.monthly_kwh else None,
            "session_minutes": limit.session_minutes,
        }
        for limit in UsageLimit.objects.with_scopes_disabled().filter(community_id=community_id)
    }
    usage = month_usage_wh(community, [int(u) for u in limits], at)
    learning = {
        str(charger_id): expires.isoformat()
        for charger_id, expires in LearnWindow.objects.with_scopes_disabled()
        .filter(community_id=community_id, state=LearnWindow.State.OPEN, expires_at__gt=at)
        .values_list("charger_id", "expires_at")
    }
    today = timezone.localtime(at, community.tz).date()
    members = Membership.objects.with_scopes_disabled().current().filter(community=community)
    cards = {
        uid: holder
        for uid, holder in ChargeCard.objects.with_scopes_disabled()
        .filter(
            Q(expires_on__isnull=True) | Q(expires_on__gte=today),
            community_id=community_id,
            active=True,
            holder__in=members.values("user_id"),
        )
        .values_list("uid", "holder_id")
    }
    return {
        "cards": cards,
        "learning": learning,
        "community_id": community_id,
        "version": version,
        "time_zone": community.time_zone,
        "built_at": at.isoformat(),
        "charger_site": charger_site,
        "outlets": outlets,
        "site_policies": site_policies,
        "outlet_policies": outlet_policies,
        "limits": limits,
        "month_wh": {str(k): v for k, v in usage.items()},
    }


def policy_for(snapshot: Snapshot, charger_id: int, evse_id: int | None) -> Policy:
    """The policy of an outlet (its own, else its site's, else all members)."""
    if evse_id is not None:
        own: Policy | None = snapshot["outlet_policies"].get(f"{charger_id}:{evse_id}")
        if own is not None:
            return own
    site = snapshot["charger_site"].get(str(charger_id))
    found: Policy = snapshot["site_policies"].get(str(site), DEFAULT_POLICY)
    return found


def in_windows(windows: list[list[str]], at: datetime, tz: zoneinfo.ZoneInfo) -> bool:
    """Whether `at` falls in one of the weekly windows, read on the community's wall clock."""
    if not windows:
        return True
    local = at.astimezone(tz)
    day, now = str(local.isoweekday()), local.time().replace(tzinfo=None)
    yesterday = str((local.isoweekday() - 2) % 7 + 1)
    for days, start_s, end_s in windows:
        start, end = time.fromisoformat(start_s), time.fromisoformat(end_s)
        if start < end:
            if day in days and start <= now < end:
                return True
        else:  # runs past midnight (an end of 00:00 is midnight)
            if day in days and now >= start:
                return True
            if yesterday in days and now < end:
                return True
    return False


def _evaluate_outlet(
    snapshot: Snapshot, policy: Policy, card: dict[str, Any], at: datetime
) -> Decision:
    mode = policy["mode"]
    if mode == Mode.NOBODY:
        return Decision(False, Reason.OUT_OF_SERVICE)
    tz = zoneinfo.ZoneInfo(snapshot["time_zone"])
    if mode == Mode.FREE:
        if not in_windows(policy["windows"], at, tz):
            return Decision(False, Reason.OUTSIDE_HOURS)
        return Decision(True, free=True)
    status = str(card.get("status"))
    if status != AuthorizationStatus.ACCEPTED:
        return Decision(False, _CARD_REASONS.get(status, Reason.UNKNOWN_CARD))
    holder = card.get("holder_id")
    if mode == Mode.CHOSEN and holder not in (policy["users"] or ()):
        return Decision(False, Reason.NOT_ALLOWED)
    if not in_windows(policy["windows"], at, tz):
        return Decision(False, Reason.OUTSIDE_HOURS)
    limit = snapshot["limits"].get(str(holder)) or {}
    monthly = limit.get("monthly_wh")
    if monthly is not None and snapshot["month_wh"].get(str(holder), 0) >= monthly:
        return Decision(False, Reason.MONTHLY_LIMIT)
    return Decision(True)


# When several outlets could be meant (a 1.6 Authorize names none), the refusal shown is the
# most telling one.
_PRECEDENCE = [
    Reason.UNKNOWN_CARD,
    Reason.CARD_BLOCKED,
    Reason.CARD_EXPIRED,
    Reason.MONTHLY_LIMIT,
    Reason.OUTSIDE_HOURS,
    Reason.NOT_ALLOWED,
    Reason.OUT_OF_SERVICE,
]


def evaluate(
    snapshot: Snapshot,
    *,
    charger_id: int,
    evse_id: int | None,
    card: dict[str, Any],
    at: datetime | None = None,
) -> Decision:
    """May the card (`chargers.models.card_decision`) charge on this outlet of this charger at
    `at`? With no outlet (an Authorize before the outlet is known) the card is allowed when it
    may charge on at least one outlet of the charger."""
    at = at or timezone.now()
    if evse_id is not None:
        return _evaluate_outlet(snapshot, policy_for(snapshot, charger_id, evse_id), card, at)
    evses = snapshot["outlets"].get(str(charger_id)) or [None]
    decisions = [
        _evaluate_outlet(snapshot, policy_for(snapshot, charger_id, e), card, at) for e in evses
    ]
    allowed = [d for d in decisions if d.allowed]
    if allowed:
        return next((d for d in allowed if not d.free), allowed[0])
    return min(decisions, key=lambda d: _PRECEDENCE.index(Reason(d.reason)))


def evaluate_now(*, connector: Connector, uid: str, at: datetime | None = None) -> Decision:
    """`evaluate` on a fresh snapshot: what a portal remote start asks."""
    community_id = connector.community_id
    return evaluate(
        build_snapshot(community_id, at),
        charger_id=connector.charger_id,
        evse_id=connector.evse_id,
        card=card_decision(community_id, uid),
        at=at,
    )


def record_refusal(
    *,
    community_id: int,
    decision: Decision,
    action: str,
    charger_id: int | None,
    evse_id: int | None = None,
    uid: str = "",
    holder_id: int | None = None,
    at: datetime | None = None,
) -> RuleEvent:
    """Keep a refusal for the driver's and the managers' pages."""
    event: RuleEvent = RuleEvent.objects.with_scopes_disabled().create(
        community_id=community_id,
        kind=RuleEvent.Kind.REFUSED,
        reason=decision.reason,
        action=action,
        charger_id=charger_id,
        evse_id=evse_id,
        uid=uid[:36],
        holder_id=holder_id,
        at=at or timezone.now(),
    )
    return event


def who_may_charge(policy: Policy, snapshot: Snapshot, at: datetime) -> dict[str, Any]:
    """A summary for a site or an outlet: its mode, whether charging is open now (windows)."""
    tz = zoneinfo.ZoneInfo(snapshot["time_zone"])
    return {
        "mode": policy["mode"],
        "open_now": policy["mode"] != Mode.NOBODY and in_windows(policy["windows"], at, tz),
        "users": policy["users"] or [],
        "windows": policy["windows"],
    }


def learning(snapshot: Snapshot, charger_id: int, at: datetime) -> bool:
    """Whether a learn window is open on this charger at `at` (the next card is offered)."""
    expires = snapshot.get("learning", {}).get(str(charger_id))
    return expires is not None and datetime.fromisoformat(expires) > at


def _may_use(policy: Policy, holder: int) -> bool:
    mode = policy["mode"]
    if mode == Mode.NOBODY:
        return False
    if mode == Mode.CHOSEN:
        return holder in (policy["users"] or ())
    return True


def local_entries(snapshot: Snapshot, charger_id: int) -> dict[str, str]:
    """The local authorization list this charger should hold: {uid: "Accepted"} for the active,
    unexpired cards of current members whose holder may charge on at least one of its outlets
    (weekly windows and limits cannot be expressed in a list: they apply online)."""
    evses = snapshot["outlets"].get(str(charger_id)) or [None]
    policies = [policy_for(snapshot, charger_id, e) for e in evses]
    return {
        uid: "Accepted"
        for uid, holder in snapshot.get("cards", {}).items()
        if any(_may_use(p, holder) for p in policies)
    }


def free_vend(snapshot: Snapshot, charger_id: int) -> bool:
    """Whether the charger itself may stop asking for cards: every outlet of it is free
    charging at all times (a free policy with weekly windows still needs the charger to ask,
    so that a start outside the windows is refused; any card is then accepted inside them)."""
    evses = snapshot["outlets"].get(str(charger_id)) or [None]
    return all(
        (policy := policy_for(snapshot, charger_id, e))["mode"] == Mode.FREE
        and not policy["windows"]
        for e in evses
    )
