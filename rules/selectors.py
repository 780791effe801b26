"""Reads of the Rules page and of the summaries on sites and outlets: who may charge where,
and whether charging is open now (the windows read on the community's clock)."""

from __future__ import annotations

from collections.abc import Iterable
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


def _policies(**filters: Any) -> QuerySet[AccessPolicy]:
    return AccessPolicy.objects.filter(**filters).prefetch_related("windows", "users", "groups")


def site_summaries(
    community: Community, sites: QuerySet[Site] | list[Site]
) -> list[dict[str, Any]]:
    """For each site: who may charge there now (its own rule or the default). Its outlets are
    summarised a page at a time by `outlet_summaries`: a site can have thousands."""
    at = timezone.now()
    sites = list(sites)
    by_site = {p.site_id: p for p in _policies(site__in=[s.pk for s in sites])}
    return [{"site": s, "summary": _summary(by_site.get(s.pk), community, at)} for s in sites]


def outlet_summaries(
    community: Community, connectors: Iterable[Connector]
) -> list[tuple[Connector, Summary]]:
    """Who may charge now on each outlet given (a page of them, with their charger loaded):
    its own rule, or its site's (`inherited`). Three queries bounded by the outlets given,
    whatever the size of the fleet."""
    at = timezone.now()
    connectors = list(connectors)
    own = {p.connector_id: p for p in _policies(connector__in=[c.pk for c in connectors])}
    site_ids = {c.charger.site_id for c in connectors if c.pk not in own}
    by_site = {p.site_id: p for p in _policies(site__in=site_ids)} if site_ids else {}
    inherited: dict[int | None, Summary] = {}
    rows = []
    for connector in connectors:
        policy = own.get(connector.pk)
        if policy is not None:
            rows.append((connector, _summary(policy, community, at)))
            continue
        site_id = connector.charger.site_id
        if site_id not in inherited:
            summary = _summary(by_site.get(site_id), community, at)
            inherited[site_id] = Summary(**{**summary.__dict__, "inherited": True})
        rows.append((connector, inherited[site_id]))
    return rows


def _own_rule() -> QuerySet[AccessPolicy, Any]:
    return AccessPolicy.objects.filter(connector__isnull=False).values("connector_id")


def outlets_with_own_rule(**filters: Any) -> QuerySet[Connector]:
    """The outlets that have a rule of their own (`filters` on the outlets, e.g. a site's)."""
    return Connector.objects.filter(pk__in=_own_rule(), **filters).select_related("charger")


def filter_by_rule(outlets: QuerySet[Connector], rule: str) -> QuerySet[Connector]:
    """Outlets with a rule of their own ("own"), following their site's ("site") or all."""
    if rule == "own":
        return outlets.filter(pk__in=_own_rule())
    if rule == "site":
        return outlets.exclude(pk__in=_own_rule())
    return outlets


def recent_events(**filters: Any) -> QuerySet[RuleEvent]:
    return RuleEvent.objects.filter(**filters).select_related("charger", "holder")[:50]
