"""Installer access to communities: which pseudo-role an installer company's member gets in a
community, from the company's grants in force. Read by the scoping middleware (the one entry
point) and by the installer area; written only by `communities.installers`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from django.utils import timezone

from .models import AccessGrant, Community, InstallerCompany, InstallerMember, valid_grant_q

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User

    Person = User | AnonymousUser

INSTALLER_FULL = "installer_full"
INSTALLER_LIMITED = "installer_limited"
INSTALLER_ROLES = (INSTALLER_FULL, INSTALLER_LIMITED)

# Full access for this long after the hand-over, limited access after.
FULL_ACCESS_DAYS = 14

_STRENGTH: dict[str, str] = {
    AccessGrant.Scope.FULL: INSTALLER_FULL,
    AccessGrant.Scope.SENSITIVE: INSTALLER_FULL,
    AccessGrant.Scope.LIMITED: INSTALLER_LIMITED,
}


def role_for_scopes(scopes: Iterable[str]) -> str | None:
    """The pseudo-role given by a set of grant scopes in force: the strongest wins."""
    roles = {_STRENGTH[s] for s in scopes if s in _STRENGTH}
    if INSTALLER_FULL in roles:
        return INSTALLER_FULL
    if INSTALLER_LIMITED in roles:
        return INSTALLER_LIMITED
    return None


def installer_access(
    community: Community, user: Person, at: datetime | None = None
) -> tuple[str | None, InstallerCompany | None]:
    """(pseudo-role, company) for `user` in `community` through the grants in force of an
    installer company they belong to, or (None, None). Two queries at most."""
    if not user.is_authenticated:
        return None, None
    company_ids = list(
        InstallerMember.objects.filter(user=user).values_list("company_id", flat=True)
    )
    if not company_ids:
        return None, None
    at = at or timezone.now()
    grants = list(
        AccessGrant.objects.with_scopes_disabled()
        .filter(valid_grant_q(at), community=community, company_id__in=company_ids)
        .select_related("company")
    )
    best: tuple[str | None, InstallerCompany | None] = (None, None)
    for company_id in {g.company_id for g in grants}:
        scopes = {g.scope for g in grants if g.company_id == company_id}
        role = role_for_scopes(scopes)
        if role and (best[0] is None or role == INSTALLER_FULL):
            company = next(g.company for g in grants if g.company_id == company_id)
            best = role, company
    return best


def company_role(
    community: Community, company: InstallerCompany, at: datetime | None = None
) -> str | None:
    """The pseudo-role a company holds in a community now (for the installer area)."""
    scopes = (
        AccessGrant.objects.with_scopes_disabled()
        .filter(valid_grant_q(at), community=community, company=company)
        .values_list("scope", flat=True)
    )
    return role_for_scopes(set(scopes))


def user_company(user: Person) -> InstallerCompany | None:
    """The installer company `user` belongs to (the first one), or None."""
    if not user.is_authenticated:
        return None
    member = InstallerMember.objects.filter(user=user).select_related("company").first()
    return member.company if member else None
