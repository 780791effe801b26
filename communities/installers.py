"""Installer companies and their access to installations. Keyword-only verbs, one transaction
each, an audit entry in the community for every access change, CommunityError when refused.

Lifecycle of an installation created by an installer company:
1. `create_installation`: a community with its first site and no owner yet; the company holds a
   *full* grant without end date.
2. Hand-over (`communities.invitations.accept_invitation`, calling `start_handover_grants`): the
   full grant ends 14 days later and a *limited* grant without end starts.
3. The owner may add a *sensitive data* grant for a period or until revoked (`grant_access`) and
   revoke it (`revoke_grant`)."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User

from .access import FULL_ACCESS_DAYS
from .models import (
    AccessGrant,
    Community,
    InstallerCompany,
    InstallerMember,
    Membership,
    Role,
    Site,
    valid_grant_q,
)
from .permissions import user_can
from .services import CommunityError, _unique_slug, audit


def company_membership(user, company=None) -> InstallerMember | None:
    qs = InstallerMember.objects.filter(user=user).select_related("company")
    if company is not None:
        qs = qs.filter(company=company)
    return qs.first() if user.is_authenticated else None


@transaction.atomic
def add_company_member(
    *,
    company: InstallerCompany,
    actor: User,
    phone,
    first_name: str,
    last_name: str,
    email: str = "",
    is_admin: bool = False,
) -> InstallerMember:
    """A company admin adds a colleague (found or created by phone number) to the company."""
    admin = company_membership(actor, company)
    if admin is None or not admin.is_admin:
        raise CommunityError(_("Only an admin of the company can add members."))
    phone = str(phone)
    user = User.objects.filter(phone=phone).first()
    if user is None:
        user = User.objects.create_user(
            phone=phone, first_name=first_name, last_name=last_name, email=email
        )
    if InstallerMember.objects.filter(company=company, user=user).exists():
        raise CommunityError(_("%(name)s is already a member of the company.") % {"name": user})
    return InstallerMember.objects.create(company=company, user=user, is_admin=is_admin)


@transaction.atomic
def create_installation(
    *,
    actor: User,
    company: InstallerCompany,
    name: str,
    kind: str,
    address: str = "",
    time_zone: str = "Europe/Paris",
    site_name: str,
    site_address: str = "",
) -> Site:
    """An installer creates a new location for a customer: a community with its first site,
    installed by `company`, which holds full access until the hand-over. Returns the site."""
    if company_membership(actor, company) is None:
        raise CommunityError(_("Only members of an installer company can create installations."))
    community = Community.objects.create(
        name=name,
        slug=_unique_slug(name),
        kind=kind,
        address=address,
        time_zone=time_zone,
        installer=company,
    )
    site = Site.objects.create(community=community, name=site_name, address=site_address or address)
    grant = AccessGrant.objects.create(
        community=community, company=company, scope=AccessGrant.Scope.FULL, granted_by=actor
    )
    audit(
        community=community,
        actor=actor,
        action="installation.create",
        target=community.name,
        company_id=company.pk,
        site_id=site.pk,
    )
    _audit_grant(grant, actor, "access.grant")
    return site


def _audit_grant(grant: AccessGrant, actor, action: str) -> None:
    audit(
        community=grant.community,
        actor=actor,
        action=action,
        target=grant.company.name,
        company_id=grant.company_id,
        grant_id=grant.pk,
        scope=grant.scope,
        valid_until=grant.valid_until.isoformat() if grant.valid_until else None,
    )


def start_handover_grants(*, community: Community, actor: User, at=None) -> None:
    """At hand-over, the installer's open-ended full access becomes 14 days of full access
    followed by limited access without end. Runs inside the caller's transaction."""
    at = at or timezone.now()
    community.handed_over_at = at
    community.save(update_fields=["handed_over_at"])
    if community.installer_id is None:
        return
    full = AccessGrant.objects.with_scopes_disabled().filter(
        valid_grant_q(at),
        community=community,
        company_id=community.installer_id,
        scope=AccessGrant.Scope.FULL,
        valid_until__isnull=True,
    )
    for grant in full.select_related("company", "community"):
        grant.valid_until = at + timedelta(days=FULL_ACCESS_DAYS)
        grant.save(update_fields=["valid_until"])
        _audit_grant(grant, actor, "access.handover_full")
    limited = AccessGrant.objects.create(
        community=community,
        company_id=community.installer_id,
        scope=AccessGrant.Scope.LIMITED,
        valid_from=at,
        granted_by=actor,
    )
    _audit_grant(limited, actor, "access.grant")


def _check_owner(community, actor):
    if not user_can(community, actor, "installer_access:manage"):
        raise CommunityError(_("Only an owner can change installer access."))


@transaction.atomic
def grant_access(
    *, community: Community, actor: User, company: InstallerCompany, valid_until=None
) -> AccessGrant:
    """The owner gives an installer company access to sensitive data (everything a full grant
    gives) until `valid_until`, or until revoked when None."""
    _check_owner(community, actor)
    if valid_until is not None and valid_until <= timezone.now():
        raise CommunityError(_("The end of the access must be in the future."))
    grant = AccessGrant.objects.create(
        community=community,
        company=company,
        scope=AccessGrant.Scope.SENSITIVE,
        valid_until=valid_until,
        granted_by=actor,
    )
    _audit_grant(grant, actor, "access.grant")
    return grant


@transaction.atomic
def revoke_grant(*, grant: AccessGrant, actor: User) -> AccessGrant:
    """The owner ends an installer company's grant now (any scope)."""
    _check_owner(grant.community, actor)
    if grant.revoked_at is not None:
        raise CommunityError(_("This access was already revoked."))
    grant.revoked_at = timezone.now()
    grant.revoked_by = actor
    grant.save(update_fields=["revoked_at", "revoked_by"])
    _audit_grant(grant, actor, "access.revoke")
    return grant


def company_installations(company: InstallerCompany):
    """Communities the company installed or holds a grant in force on (installer area)."""
    return (
        Community.objects.filter(
            pk__in=AccessGrant.objects.with_scopes_disabled()
            .filter(valid_grant_q(), company=company)
            .values("community_id")
        )
        .distinct()
        .order_by("name")
    )


def sole_owner_of(user) -> list[Community]:
    """Communities where `user` is the only active owner (they must transfer first)."""
    owned = Membership.objects.with_scopes_disabled().filter(
        user=user, role=Role.OWNER, state=Membership.State.ACTIVE
    )
    result = []
    for m in owned.select_related("community"):
        others = (
            Membership.objects.with_scopes_disabled()
            .filter(community=m.community, role=Role.OWNER, state=Membership.State.ACTIVE)
            .exclude(user=user)
        )
        if not others.exists():
            result.append(m.community)
    return result
