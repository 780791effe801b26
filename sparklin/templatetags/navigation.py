"""The community's tabs, grouped so they fit at 1366 px in French (and on a phone): a first row
of three groups — supervision, management, settings — and a second row with the pages of the
group the person is in. Which pages a person sees follows their permissions; "Leave" lives in
the account menu, not among the tabs. Pending access requests show a count badge."""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django import template
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from communities.models import Community

register = template.Library()


@dataclass
class Tab:
    label: StrOrPromise
    url: str
    current: bool = False
    badge: int = 0


@dataclass
class Group:
    key: str
    label: StrOrPromise
    tabs: list[Tab] = field(default_factory=list)

    @property
    def current(self) -> bool:
        return any(t.current for t in self.tabs)

    @property
    def url(self) -> str:
        return self.tabs[0].url

    @property
    def badge(self) -> int:
        return sum(t.badge for t in self.tabs)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or (p.endswith("*") and name.startswith(p[:-1])) for p in patterns)


# (group, label, URL name, permission test, URL names that make the tab current); the label
# "ownership" is chosen per person below.
_TABS: list[tuple[str, StrOrPromise, str, str, list[str]]] = [
    ("supervision", _("Dashboard"), "communities:dashboard", "community:view", ["dashboard"]),
    ("supervision", _("Outlets"), "chargers:outlet-list", "outlets:view", ["outlet-list"]),
    ("supervision", _("Sessions"), "chargers:session-list", "sessions:view_all", ["session-list"]),
    (
        "supervision",
        _("My sessions"),
        "chargers:my-session-list",
        "!sessions:view_all&community:view",
        ["my-session-list"],
    ),
    (
        "supervision",
        _("My expense notes"),
        "billing:note-list",
        "!notes:manage&notes:view_own",
        ["note-*"],
    ),
    (
        "management",
        _("Users"),
        "communities:member-list",
        "members:view",
        ["member-*", "card-*", "group-*"],
    ),
    (
        "management",
        _("Sites"),
        "communities:site-list",
        "sites:view",
        ["site-*", "charger-*", "unknown-charger-list"],
    ),
    (
        "management",
        _("Access requests"),
        "communities:access-request-list",
        "access_requests:decide",
        ["access-request-*"],
    ),
    ("management", "ownership", "communities:owner-invite", "ownership:invite", ["owner-invite*"]),
    (
        "settings",
        _("Company configuration"),
        "communities:settings",
        "community:manage",
        ["settings", "price-*"],
    ),
    (
        "settings",
        _("Rules of use"),
        "rules:rules-page",
        "rules:manage",
        ["rules-page", "rules-site", "rules-outlet"],
    ),
    ("settings", _("Tools"), "billing:export-list", "exports:run", ["export-*"]),
    (
        "settings",
        _("Installer access"),
        "communities:installer-access",
        "installer_access:manage",
        ["installer-access*"],
    ),
    ("settings", _("Audit log"), "communities:audit-log", "audit:view", ["audit-log"]),
]

_GROUPS: dict[str, StrOrPromise] = {
    "supervision": _("Supervision"),
    "management": _("Management"),
    "settings": _("Settings"),
}


def _allowed(test: str, perms: Container[str]) -> bool:
    for part in test.split("&"):
        if part.startswith("!"):
            if part[1:] in perms:
                return False
        elif part not in perms:
            return False
    return True


def _pending_requests(community: Community) -> int:
    from communities.models import AccessRequest

    pending: int = (
        AccessRequest.objects.with_scopes_disabled()
        .filter(community=community, state=AccessRequest.State.PENDING)
        .count()
    )
    return pending


@register.simple_tag(takes_context=True)
def community_tabs(context: dict[str, Any]) -> list[Group]:
    """The groups of tabs the person may see, with the current one marked."""
    community = context.get("community")
    if community is None:
        return []
    perms: Container[str] = context.get("community_perms") or set()
    match = getattr(context.get("request"), "resolver_match", None)
    name: str = (match.url_name or "") if match else ""
    groups = {key: Group(key, label) for key, label in _GROUPS.items()}
    for group, label, url_name, test, patterns in _TABS:
        if not _allowed(test, perms):
            continue
        if label == "ownership":
            label = _("Ownership") if "ownership:transfer" in perms else _("Hand-over")
        tab = Tab(
            label=label,
            url=reverse(url_name, kwargs={"community": community.slug}),
            current=_matches(name, patterns),
        )
        if url_name == "communities:access-request-list":
            tab.badge = _pending_requests(community)
        groups[group].tabs.append(tab)
    return [g for g in groups.values() if g.tabs]
