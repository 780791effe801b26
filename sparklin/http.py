"""Typed request objects for views: what the middlewares put on a request, so views and
helpers are checked (`request.community`, `request.membership`, `request.htmx`).

    def dashboard(request: CommunityRequest, community: str) -> HttpResponse: ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

    from accounts.models import User
    from communities.models import Community, InstallerCompany, Membership


class PortalRequest(HttpRequest):
    """Any portal request: django-htmx's details, the logged-in person (views behind
    `login_required`), and the tenant attributes the scoping middleware always sets (None
    outside `/c/<community>/…`)."""

    htmx: HtmxDetails
    user: User
    community: Community | None
    membership: Membership | None
    community_role: str | None
    installer_company: InstallerCompany | None


class CommunityRequest(PortalRequest):
    """A request under `/c/<community>/…` that passed `@community_permission`: the community is
    resolved and its scope entered; `membership` is None for an installer (pseudo-role)."""

    community: Community
    community_role: str
