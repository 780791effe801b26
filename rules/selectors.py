"""Reads of the Rules page and of the summaries on sites and outlets: who may charge where,
and whether charging is open now (the windows read on the community's clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from chargers.models import Connector
from communities.models import Community, Site

from .evaluation import in_windows
from .models import AccessPolicy, Mode, RuleEvent, TimeWindow


@dataclass
class Summary:
    """Who may charge on a site or an outlet, in words the page shows."""

    policy: AccessPolicy | None
    mode: str
    mode_label: str
    who: list[str] = field(default_factory=list)
    windows: list[TimeWindow] = field(default_factory=list)
    open_now: bool = True
    inherited: bool = False  # an outlet following its site


def _summary(policy: AccessPolicy | None, community: Community, at: datetime) -> Summary:
    if policy is None:
        return Summary(None, Mode.MEMBERS, str(Mode.MEMBERS.label))
    windows = list(policy.windows.all())
    who = [u.get_full_name() or str(u.phone) for u in policy.users.all()]
    who += [str(g) for g in policy.groups.all()]
    open_now = policy.mode != Mode.NOBODY and in_windows(
        [[w.days, w.start.strftime("%H:%M"), w.end.strftime("%H:%M")] for w in windows],
        at,
        community.tz,
    )
    return Summary(policy, policy.mode, str(Mode(policy.mode).label), who, windows, open_now)


def site_summaries(
    community: Community, sites: QuerySet[Site] | list[Site], *, own_only: bool = False
) -> list[dict[str, Any]]:
    """For each site: its summary and those of its outlets (own policy or following the
    site). `own_only`: only the outlets with a policy of their own (a site's page, which shows
    no others: a site of 1,000 chargers no longer reads and summarises 1,000 outlets)."""
    at = timezone.now()
    policies = AccessPolicy.objects.prefetch_related("windows", "users", "groups")
    by_site = {p.site_id: p for p in policies.filter(site__isnull=False)}
    by_outlet = {p.connector_id: p for p in policies.filter(connector__isnull=False)}
    rows = []
    for site in sites:
        summary = _summary(by_site.get(site.pk), community, at)
        outlets = []
        connectors = Connector.objects.filter(charger__site=site)
        if own_only:
            connectors = connectors.filter(pk__in=list(by_outlet))
        for connector in connectors.select_related("charger").order_by(
            "charger__identity", "evse_id", "connector_id"
        ):
            own = by_outlet.get(connector.pk)
            if own is None:
                outlet = Summary(**{**summary.__dict__, "inherited": True})
            else:
                outlet = _summary(own, community, at)
            outlets.append((connector, outlet))
        rows.append({"site": site, "summary": summary, "outlets": outlets})
    return rows


def recent_events(**filters: Any) -> QuerySet[RuleEvent]:
    return RuleEvent.objects.filter(**filters).select_related("charger", "holder")[:50]
