"""Facts become notification rows: who is told what, on which channel.

Sources, read where they are already recorded (nothing is added to the gateway; other apps'
services only call the hooks notifications registers, `hooks.py`):
- access requests (`communities.AccessRequest`, pending) → managers (`access_requests:decide`),
  told as soon as the request is committed (`hooks.after_access_request` →
  `collect_access_requests`), the scan being the safety net;
- refusals (`rules.RuleEvent` refused, every reason but an unknown card: a stranger's badge is
  not a rule the managers set, and a badge-happy passer-by would flood them) and charges
  started offline that the rules would have refused (unknown cards included: someone charged)
  → managers (`rules:manage`); stops by a limit (`RuleEvent` stopped) → the driver;
- chargers not connected for the installation's `offline_minutes` (an outage is named by the
  charger's `connection_changed_at`: one notice per outage), and "back online" to those told;
- sessions that ended (the worker's batch names them, `hooks.after_batch`) → the driver.

`collect` scans the first three over the last `NOTIFY_MAX_AGE_MINUTES` (60): a fact older
than that when first seen (a worker backlog, an offline transaction replayed hours later) is
not announced — a late notice is noise. Rows are unique per (recipient, channel, kind, key):
scanning the same hour every 30 s, or a task run twice, adds nothing. Returns the groups
(community, recipient, kind, channel) that got new rows, for the dispatcher."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from chargers.models import Charger, ChargingSession
from communities.models import AccessRequest, Membership
from communities.permissions import PERMISSIONS
from rules.models import Reason, RuleEvent

from .models import KINDS, Channel, CommunityNotifications, Kind, Notification
from .preferences import channels_for, choices_of

logger = logging.getLogger(__name__)

Group = tuple[int, int, str, str]  # community, recipient, kind, channel


@dataclass
class Fact:
    community_id: int
    kind: str
    key: str
    data: dict[str, Any]
    recipients: list[User] = field(default_factory=list)
    # Given only for "back online": the channels each recipient was told "offline" on.
    channels: dict[int, list[str]] | None = None


def max_age() -> timedelta:
    return timedelta(minutes=settings.NOTIFY_MAX_AGE_MINUTES)


def managers(community_ids: Iterable[int], permission: str) -> dict[int, list[User]]:
    """{community id: active people whose current membership holds `permission`}: one query."""
    roles = PERMISSIONS[permission]
    found: dict[int, list[User]] = defaultdict(list)
    rows = (
        Membership.objects.with_scopes_disabled()
        .current()
        .filter(community_id__in=set(community_ids), role__in=roles, user__is_active=True)
        .select_related("user")
        .order_by("pk")
    )
    for m in rows:
        found[m.community_id].append(m.user)
    return found


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


# --- sources ----------------------------------------------------------------------------------
def access_request_facts(since: datetime, ids: Iterable[int] | None = None) -> list[Fact]:
    """Pending access requests made since `since` (only `ids` when given: the one just
    committed) → their installation's managers, the asker excepted."""
    found = AccessRequest.objects.with_scopes_disabled().filter(
        state=AccessRequest.State.PENDING, created_at__gte=since
    )
    if ids is not None:
        found = found.filter(pk__in=list(ids))
    rows = list(found.select_related("user"))
    people = managers({r.community_id for r in rows}, KINDS[Kind.ACCESS_REQUEST].permission or "")
    return [
        Fact(
            r.community_id,
            Kind.ACCESS_REQUEST,
            f"access_request:{r.pk}",
            {
                "name": str(r.user),
                "user_id": r.user_id,
                "message": r.message[:300],
                "at": _iso(r.created_at),
            },
            [u for u in people.get(r.community_id, []) if u.pk != r.user_id],
        )
        for r in rows
    ]


def rule_event_facts(since: datetime) -> list[Fact]:
    rows = list(
        RuleEvent.objects.with_scopes_disabled()
        .filter(at__gte=since)
        .exclude(kind=RuleEvent.Kind.REFUSED, reason=Reason.UNKNOWN_CARD)
        .select_related("charger", "holder")
        .order_by("at", "pk")
    )
    people = managers({r.community_id for r in rows}, KINDS[Kind.REFUSED].permission or "")
    facts = []
    for r in rows:
        data = {
            "event": r.kind,
            "reason": r.reason,
            "action": r.action,
            "charger": str(r.charger) if r.charger else "",
            "charger_id": r.charger_id,
            "evse_id": r.evse_id,
            "holder": str(r.holder) if r.holder else "",
            "holder_id": r.holder_id,
            "uid": r.uid,
            "at": _iso(r.at),
        }
        if r.kind == RuleEvent.Kind.STOPPED:
            if r.holder is not None and r.holder.is_active:
                key = f"rule_event:{r.pk}"
                facts.append(Fact(r.community_id, Kind.SESSION_STOPPED, key, data, [r.holder]))
        else:
            recipients = people.get(r.community_id, [])
            facts.append(Fact(r.community_id, Kind.REFUSED, f"rule_event:{r.pk}", data, recipients))
    return facts


def offline_minutes(community_ids: Iterable[int]) -> dict[int, int]:
    """{community id: minutes} for these installations (their setting, else the default)."""
    ids = set(community_ids)
    minutes = {cid: settings.NOTIFY_OFFLINE_MINUTES for cid in ids}
    for row in CommunityNotifications.objects.with_scopes_disabled().filter(community_id__in=ids):
        minutes[row.community_id] = row.offline_minutes
    return minutes


def _outage(charger_pk: int, since: datetime) -> str:
    return f"{charger_pk}:{int(since.timestamp())}"


def offline_facts(now: datetime) -> list[Fact]:
    """Chargers not connected for longer than their installation's setting (0: never told),
    within the last day: a charger dead for a week when notifications start is not news."""
    day = now - timedelta(days=1)
    chargers = list(
        Charger.objects.with_scopes_disabled()
        .filter(connected=False, connection_changed_at__gte=day, connection_changed_at__lte=now)
        .select_related("site")
    )
    limits = offline_minutes({c.community_id for c in chargers})
    late = [
        c
        for c in chargers
        if limits[c.community_id] > 0
        and c.connection_changed_at is not None
        and now - c.connection_changed_at >= timedelta(minutes=limits[c.community_id])
    ]
    people = managers({c.community_id for c in late}, KINDS[Kind.CHARGER_OFFLINE].permission or "")
    return [
        Fact(
            c.community_id,
            Kind.CHARGER_OFFLINE,
            f"offline:{_outage(c.pk, c.connection_changed_at)}",
            {
                "event": "offline",
                "charger": str(c),
                "charger_id": c.pk,
                "site": c.site.name,
                "since": _iso(c.connection_changed_at),
                "minutes": limits[c.community_id],
            },
            people.get(c.community_id, []),
        )
        for c in late
        if c.connection_changed_at is not None
    ]


def online_facts(now: datetime) -> list[Fact]:
    """ "Back online" for the outages announced in the last day whose charger is connected
    again, to the same people on the same channels."""
    told = list(
        Notification.objects.with_scopes_disabled()
        .filter(
            kind=Kind.CHARGER_OFFLINE,
            key__startswith="offline:",
            created_at__gte=now - timedelta(days=1),
        )
        .select_related("recipient")
    )
    if not told:
        return []
    charger_ids = {int(n.key.split(":")[1]) for n in told}
    back = {
        c.pk: c
        for c in Charger.objects.with_scopes_disabled().filter(pk__in=charger_ids, connected=True)
    }
    facts: dict[str, Fact] = {}
    for n in told:
        _, charger_pk, epoch = n.key.split(":")
        charger = back.get(int(charger_pk))
        changed = charger.connection_changed_at if charger else None
        if charger is None or changed is None or changed.timestamp() <= int(epoch):
            continue
        key = f"online:{charger_pk}:{epoch}"
        fact = facts.get(key)
        if fact is None:
            data = dict(n.data, event="online", back_at=_iso(changed))
            fact = facts[key] = Fact(n.community_id, Kind.CHARGER_OFFLINE, key, data, [], {})
        assert fact.channels is not None
        if n.recipient_id not in fact.channels:
            fact.recipients.append(n.recipient)
            fact.channels[n.recipient_id] = []
        fact.channels[n.recipient_id].append(n.channel)
    return list(facts.values())


def session_facts(session_ids: Iterable[int], now: datetime) -> list[Fact]:
    """Sessions that ended, for their driver; one that ended longer than the maximum age ago
    (an offline transaction replayed) is not announced."""
    rows = (
        ChargingSession.objects.with_scopes_disabled()
        .filter(
            pk__in=list(session_ids),
            state=ChargingSession.State.COMPLETED,
            holder__is_active=True,
            stopped_at__gte=now - max_age(),
        )
        .select_related("holder", "charger", "connector", "community")
    )
    return [
        Fact(
            s.community_id,
            Kind.SESSION_ENDED,
            f"session:{s.pk}",
            {
                "charger": str(s.charger),
                "charger_id": s.charger_id,
                "outlet": str(s.connector) if s.connector else "",
                "started": _iso(s.started_at),
                "stopped": _iso(s.stopped_at),
                "energy_wh": str(s.energy_wh),
                "cost": str(s.cost) if s.price_per_kwh is not None else None,
                "currency": s.community.currency,
                "stop_reason": s.stop_reason,
            },
            [s.holder],
        )
        for s in rows
        if s.holder is not None
    ]


# --- rows -------------------------------------------------------------------------------------
def store(facts: list[Fact], now: datetime) -> set[Group]:
    """Create the rows the facts call for (recipients' choices, reachable channels), skipping
    those that exist. Returns the groups that got new rows."""
    if not facts:
        return set()
    choices = choices_of({u.pk for f in facts for u in f.recipients})
    wanted: dict[tuple[int, str, str, str], Notification] = {}
    for f in facts:
        for user in f.recipients:
            if f.channels is not None:
                channels = f.channels.get(user.pk, [])
            else:
                channels = channels_for(user, f.kind, choices[user.pk][f.kind])
            for channel in channels:
                wanted[(user.pk, channel, f.kind, f.key)] = Notification(
                    community_id=f.community_id,
                    recipient=user,
                    kind=f.kind,
                    channel=channel,
                    key=f.key,
                    data=f.data,
                    created_at=now,
                    send_after=now,
                )
    if not wanted:
        return set()
    existing = set(
        Notification.objects.with_scopes_disabled()
        .filter(key__in={k[3] for k in wanted}, kind__in={k[2] for k in wanted})
        .values_list("recipient_id", "channel", "kind", "key")
    )
    new = [n for k, n in wanted.items() if k not in existing]
    # A concurrent collect may have made some meanwhile: the unique constraint decides.
    Notification.objects.with_scopes_disabled().bulk_create(new, ignore_conflicts=True)
    return {(n.community_id, n.recipient_id, n.kind, n.channel) for n in new}


def collect(now: datetime | None = None) -> set[Group]:
    """One scan of every source (beat, and after a worker batch that recorded refusals)."""
    now = now or timezone.now()
    since = now - max_age()
    with transaction.atomic():
        facts = [
            *access_request_facts(since),
            *rule_event_facts(since),
            *offline_facts(now),
            *online_facts(now),
        ]
        return store(facts, now)


def collect_access_requests(request_ids: Iterable[int], now: datetime | None = None) -> set[Group]:
    """The facts of these access requests now (queued when one is committed), the same rows
    the scan would make."""
    now = now or timezone.now()
    with transaction.atomic():
        return store(access_request_facts(now - max_age(), ids=request_ids), now)


def collect_sessions(session_ids: Iterable[int], now: datetime | None = None) -> set[Group]:
    now = now or timezone.now()
    with transaction.atomic():
        return store(session_facts(session_ids, now), now)


__all__ = ["Channel", "Fact", "collect", "collect_access_requests", "collect_sessions", "store"]
