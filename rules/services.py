"""Every write on the rules of use: groups, access policies, weekly windows, limits, and the stop
of a session that reached a limit. Keyword-only verbs, one transaction, `user_can(…,
"rules:manage")` (services do not trust their caller), an audit entry, `RulesError` with a
translated message, and the community's access stamp moved so the gateways apply the change
within seconds (`chargers.stamps.changed`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from chargers.models import (
    ChargeCard,
    Charger,
    ChargerCommand,
    ChargingSession,
    Connector,
    OcppVersion,
)
from chargers.services import (
    REMOTE_STOP_ACTIONS,
    ChargerError,
    add_card,
    card_conflict,
    queue_command,
)
from chargers.stamps import changed
from communities.models import Community, Membership, Site
from communities.permissions import user_can
from communities.services import audit

from .models import (
    AccessPolicy,
    LearnWindow,
    Mode,
    OfflineMode,
    OfflinePolicy,
    Reason,
    RuleEvent,
    TimeWindow,
    UsageLimit,
    UserGroup,
)


class RulesError(Exception):
    """A change refused by a business rule; `message` is shown to the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _check(community: Community, actor: User | None) -> None:
    if not user_can(community, actor, "rules:manage"):
        raise RulesError(_("You are not allowed to change the rules of use."))


def _members(community: Community, users: Iterable[User]) -> list[User]:
    users = list(users)
    current = set(
        Membership.objects.with_scopes_disabled()
        .current()
        .filter(community=community, user__in=users)
        .values_list("user_id", flat=True)
    )
    if any(u.pk not in current for u in users):
        raise RulesError(_("Only members of the community can be chosen."))
    return users


# --- groups -------------------------------------------------------------------------------------
@transaction.atomic
def save_group(
    *,
    community: Community,
    actor: User,
    name: str,
    members: Iterable[User],
    group: UserGroup | None = None,
) -> UserGroup:
    """Create a user group, or rename it and set its members."""
    _check(community, actor)
    name = name.strip()
    taken = UserGroup.objects.filter(community=community, name__iexact=name)
    if group is not None:
        taken = taken.exclude(pk=group.pk)
    if taken.exists():
        raise RulesError(_("A group with this name already exists."))
    chosen = _members(community, members)
    if group is None:
        group = UserGroup.objects.create(community=community, name=name)
        action = "group.create"
    else:
        group.name = name
        group.save(update_fields=["name"])
        action = "group.update"
    group.members.set(chosen)
    audit(
        community=community,
        actor=actor,
        action=action,
        target=name,
        group_id=group.pk,
        members=[u.pk for u in chosen],
    )
    changed(community_id=community.pk)
    return group


@transaction.atomic
def delete_group(*, group: UserGroup, actor: User) -> None:
    """Delete a group; the policies that named it no longer let its members in."""
    community = group.community
    _check(community, actor)
    name = group.name
    group.delete()
    audit(community=community, actor=actor, action="group.delete", target=name)
    changed(community_id=community.pk)


# --- access policies ----------------------------------------------------------------------------
def _policy_target(site: Site | None, connector: Connector | None) -> str:
    if connector is not None:
        return str(connector)
    return str(site)


@transaction.atomic
def set_policy(
    *,
    community: Community,
    actor: User,
    mode: str,
    site: Site | None = None,
    connector: Connector | None = None,
    users: Iterable[User] = (),
    groups: Iterable[UserGroup] = (),
) -> AccessPolicy:
    """Set who may charge on a site, or on one outlet (which then no longer follows its site)."""
    _check(community, actor)
    if (site is None) == (connector is None):
        raise ValueError("a policy is for a site or for an outlet")
    owner = site if site is not None else connector
    assert owner is not None
    if owner.community_id != community.pk:
        raise RulesError(_("This site or outlet belongs to another community."))
    if mode not in Mode.values:
        raise RulesError(_("Choose who may charge."))
    users, groups = list(users), list(groups)
    if mode == Mode.CHOSEN and not users and not groups:
        raise RulesError(_("Choose at least one user or group."))
    if any(g.community_id != community.pk for g in groups):
        raise RulesError(_("This group belongs to another community."))
    chosen = _members(community, users) if mode == Mode.CHOSEN else []
    policy, _created = AccessPolicy.objects.update_or_create(
        community=community,
        site=site,
        connector=connector,
        defaults={"mode": mode, "updated_at": timezone.now()},
    )
    policy.users.set(chosen)
    policy.groups.set(groups if mode == Mode.CHOSEN else [])
    audit(
        community=community,
        actor=actor,
        action="rule.policy",
        target=_policy_target(site, connector),
        policy_id=policy.pk,
        mode=mode,
        users=[u.pk for u in chosen],
        groups=[g.pk for g in groups] if mode == Mode.CHOSEN else [],
    )
    changed(community_id=community.pk)
    return policy


@transaction.atomic
def remove_policy(*, policy: AccessPolicy, actor: User) -> None:
    """An outlet follows its site again; a site lets every member charge again."""
    community = policy.community
    _check(community, actor)
    target = _policy_target(policy.site, policy.connector)
    policy.delete()
    audit(community=community, actor=actor, action="rule.policy_remove", target=target)
    changed(community_id=community.pk)


@transaction.atomic
def add_window(
    *, policy: AccessPolicy, actor: User, days: str, start: time, end: time
) -> TimeWindow:
    """Add a weekly window (ISO weekdays as digits, local times; an end at or before the start
    runs past midnight). With windows, charging is allowed only inside one of them."""
    community = policy.community
    _check(community, actor)
    days = "".join(sorted(set(days)))
    if not days or any(d not in "1234567" for d in days):
        raise RulesError(_("Choose at least one day."))
    if start == end and start != time(0):
        raise RulesError(_("The window must not start and end at the same time."))
    window = TimeWindow.objects.create(
        community=community, policy=policy, days=days, start=start, end=end
    )
    audit(
        community=community,
        actor=actor,
        action="rule.window_add",
        target=_policy_target(policy.site, policy.connector),
        policy_id=policy.pk,
        window=str(window),
    )
    changed(community_id=community.pk)
    return window


@transaction.atomic
def remove_window(*, window: TimeWindow, actor: User) -> None:
    policy = window.policy
    community = policy.community
    _check(community, actor)
    text = str(window)
    window.delete()
    audit(
        community=community,
        actor=actor,
        action="rule.window_remove",
        target=_policy_target(policy.site, policy.connector),
        policy_id=policy.pk,
        window=text,
    )
    changed(community_id=community.pk)


# --- limits -------------------------------------------------------------------------------------
@transaction.atomic
def set_limit(
    *,
    community: Community,
    actor: User,
    user: User,
    monthly_kwh: Decimal | None,
    session_minutes: int | None,
) -> UsageLimit | None:
    """Set a member's limits (kWh per month, session duration); none of both removes them."""
    _check(community, actor)
    _members(community, [user])
    if monthly_kwh is None and session_minutes is None:
        UsageLimit.objects.filter(community=community, user=user).delete()
        limit = None
    else:
        limit, _created = UsageLimit.objects.update_or_create(
            community=community,
            user=user,
            defaults={"monthly_kwh": monthly_kwh, "session_minutes": session_minutes},
        )
    audit(
        community=community,
        actor=actor,
        action="rule.limit",
        target=user.get_full_name() or str(user),
        user_id=user.pk,
        monthly_kwh=str(monthly_kwh) if monthly_kwh is not None else None,
        session_minutes=session_minutes,
    )
    changed(community_id=community.pk)
    return limit


# --- enforcing limits on sessions in progress ---------------------------------------------------
def limit_reached(
    session: ChargingSession, limit: UsageLimit, month_wh: float, now: Any
) -> str | None:
    """The reason `session` must stop now, if any."""
    if limit.session_minutes and session.started_at is not None:
        if (now - session.started_at).total_seconds() >= limit.session_minutes * 60:
            return Reason.SESSION_DURATION
    if limit.monthly_kwh is not None and month_wh >= float(limit.monthly_kwh) * 1000:
        return Reason.MONTHLY_LIMIT
    return None


@transaction.atomic
def stop_for_limit(*, session: ChargingSession, reason: str) -> ChargerCommand | None:
    """Ask the charger to stop a session that reached a limit (the one command path), once:
    nothing is queued while a stop for it is on its way. Recorded as a `RuleEvent` (stopped)
    with its reason, shown to the driver and the managers."""
    session = (
        ChargingSession.objects.select_for_update().select_related("charger").get(pk=session.pk)
    )
    if session.state != ChargingSession.State.ACTIVE or not session.charger.connected:
        return None
    in_flight = ChargerCommand.objects.filter(
        session=session,
        action__in=REMOTE_STOP_ACTIONS,
        status__in=[ChargerCommand.Status.PENDING, ChargerCommand.Status.SENT],
    ).exists()
    if in_flight:
        return None
    charger = session.charger
    payload: dict[str, Any]
    if charger.ocpp_version == OcppVersion.V16:
        try:
            payload = {"transactionId": int(session.transaction_id)}
        except ValueError:
            return None
        action = "RemoteStopTransaction"
    elif charger.ocpp_version == OcppVersion.V201:
        action, payload = "RequestStopTransaction", {"transactionId": session.transaction_id}
    else:
        return None
    try:
        command = queue_command(
            charger=charger, actor=None, action=action, payload=payload, session=session
        )
    except ChargerError:
        return None
    RuleEvent.objects.create(
        community=session.community,
        kind=RuleEvent.Kind.STOPPED,
        reason=reason,
        action="Limit",
        charger=charger,
        evse_id=session.connector.evse_id if session.connector else None,
        uid=session.id_tag[:36],
        holder_id=session.holder_id,
        session=session,
    )
    return command


def enforce_limits(*, community: Community) -> int:
    """Stop the sessions in progress whose holder reached a limit (session duration, kWh this
    month, the session's live energy included). Returns how many stops were queued."""
    from .evaluation import month_usage_wh

    limits = {limit.user_id: limit for limit in UsageLimit.objects.filter(community=community)}
    if not limits:
        return 0
    now = timezone.now()
    usage = month_usage_wh(community, list(limits), now)
    stopped = 0
    active = ChargingSession.objects.filter(
        community=community, state=ChargingSession.State.ACTIVE, holder_id__in=list(limits)
    ).select_related("connector")
    for session in active:
        assert session.holder_id is not None
        reason = limit_reached(
            session, limits[session.holder_id], usage.get(session.holder_id, 0), now
        )
        if reason and stop_for_limit(session=session, reason=reason):
            stopped += 1
    return stopped


# --- learning a card by scanning it -------------------------------------------------------------
LEARN_MINUTES = 2


def _may_learn_for(community: Community, actor: User, user: User) -> None:
    """A manager for any member; a driver for themselves."""
    if actor.pk != user.pk and not user_can(community, actor, "cards:write"):
        raise RulesError(_("You can only add a card for yourself."))
    _members(community, [user])


@transaction.atomic
def open_learn_window(
    *, charger: Charger, actor: User, user: User, minutes: int = LEARN_MINUTES
) -> LearnWindow:
    """Offer the next card presented at `charger` to be `user`'s, for a few minutes. An open
    window on the same charger is cancelled (one learning at a time per charger)."""
    community = charger.community
    _may_learn_for(community, actor, user)
    LearnWindow.objects.select_for_update().filter(
        charger=charger, state=LearnWindow.State.OPEN
    ).update(state=LearnWindow.State.CANCELLED)
    now = timezone.now()
    window = LearnWindow.objects.create(
        community=community,
        charger=charger,
        user=user,
        opened_by=actor,
        opened_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    audit(
        community=community,
        actor=actor,
        action="card.learn",
        target=charger.identity,
        charger_id=charger.pk,
        user_id=user.pk,
    )
    changed(community_id=community.pk)  # the gateways see the window within seconds
    return window


@transaction.atomic
def cancel_learn_window(*, window: LearnWindow, actor: User) -> LearnWindow:
    _may_learn_for(window.community, actor, window.user)
    if window.state in (LearnWindow.State.OPEN, LearnWindow.State.SCANNED):
        window.state = LearnWindow.State.CANCELLED
        window.save(update_fields=["state"])
        changed(community_id=window.community_id)
    return window


def learn_conflicts(window: LearnWindow) -> tuple[str, list[str]]:
    """(why the presented card cannot be added here — "" when it can, notes to show)."""
    uid = window.scanned_uid
    blocking = card_conflict(community=window.community, uid=uid)
    card = ChargeCard.objects.filter(community=window.community, uid=uid).first()
    if card is not None and card.holder_id == window.user_id:
        blocking = _("This card is already registered for this person.")
    notes = []
    elsewhere = (
        ChargeCard.objects.with_scopes_disabled()
        .filter(uid=uid)
        .exclude(community=window.community)
        .exclude(holder=None)
        .exists()
    )
    if elsewhere:
        notes.append(
            _(
                "This card is also registered in another community: it will work in both, "
                "and each community sees only its own sessions."
            )
        )
    return blocking, notes


@transaction.atomic
def confirm_learn_window(*, window: LearnWindow, actor: User, name: str = "") -> ChargeCard:
    """Give the presented card to the window's member (`chargers.services.add_card`)."""
    window = LearnWindow.objects.select_for_update().get(pk=window.pk)
    _may_learn_for(window.community, actor, window.user)
    if window.state != LearnWindow.State.SCANNED:
        raise RulesError(_("No card was presented at the charger."))
    blocking, _notes = learn_conflicts(window)
    if blocking:
        raise RulesError(blocking)
    try:
        card = add_card(
            community=window.community,
            actor=actor,
            holder=window.user,
            uid=window.scanned_uid,
            name=name,
        )
    except ChargerError as e:
        raise RulesError(e.message) from None
    window.state = LearnWindow.State.CONFIRMED
    window.save(update_fields=["state"])
    return card


@transaction.atomic
def set_offline_policy(*, site: Site, actor: User, mode: str) -> OfflinePolicy:
    """What the site's chargers do while they cannot reach Sparklin: allow known cards (their
    local list), everyone, or nobody. Sent to the chargers with their lists
    (`rules.locallists`)."""
    community = site.community
    _check(community, actor)
    if mode not in OfflineMode.values:
        raise RulesError(_("Choose what the chargers do while offline."))
    policy, _created = OfflinePolicy.objects.update_or_create(
        community=community, site=site, defaults={"mode": mode}
    )
    audit(community=community, actor=actor, action="rule.offline", target=site.name, mode=mode)
    changed(community_id=community.pk)
    return policy
