"""Every write on communities, members and sites. Keyword-only verbs, one transaction each, an
audit entry, a CommunityError with a translated message when a rule refuses the change.

Services take the community explicitly and enter its scope themselves when it may differ from
the caller's (a manager adds a member to another community they manage); they ask the same
permission strings as the views (`communities.permissions.user_can`)."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import override
from django_scopes import scope

from accounts import sms_limits
from accounts.models import User
from accounts.tasks import send_sms_task

from .models import AccessRequest, AuditEvent, Community, Membership, Role, Site
from .permissions import role_has, user_can

# Called with each new access request, inside the transaction that records it: the extension
# point for apps to the right of communities (notifications tells the managers once it is
# committed, `notifications.hooks.after_access_request`), so communities never imports them.
ACCESS_REQUEST_HOOKS: list[Callable[[AccessRequest], None]] = []


class CommunityError(Exception):
    """A change refused by a business rule; `message` is shown to the person."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def audit(
    *, community: Community, actor: User | None, action: str, target: object = "", **data: Any
) -> AuditEvent:
    """Record who did what to what. Called by every service inside its transaction."""
    return AuditEvent.objects.create(
        community=community,
        actor=actor if actor and actor.pk else None,
        action=action,
        target=str(target)[:200],
        data=data,
    )


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "community"
    slug, n = base, 2
    while Community.objects.filter(slug=slug).exists():
        slug = f"{base}-{n}"
        n += 1
    return slug


@transaction.atomic
def create_community(
    *, actor: User, name: str, kind: str, address: str = "", time_zone: str = "Europe/Paris"
) -> Community:
    """Create a community; its creator becomes its owner."""
    community = Community.objects.create(
        name=name, slug=_unique_slug(name), kind=kind, address=address, time_zone=time_zone
    )
    Membership.objects.create(community=community, user=actor, role=Role.OWNER)
    audit(community=community, actor=actor, action="community.create", target=community.name)
    return community


COMMUNITY_SETTINGS_FIELDS = ("name", "kind", "address", "time_zone", "expense_email")


@transaction.atomic
def update_community(*, community: Community, actor: User, **fields: Any) -> Community:
    """Change a community's name, kind, address, time zone or expense-note recipient."""
    unknown = set(fields) - set(COMMUNITY_SETTINGS_FIELDS)
    if unknown:
        raise ValueError(f"Not community settings: {sorted(unknown)}")
    changed = {k: v for k, v in fields.items() if getattr(community, k) != v}
    for key, value in changed.items():
        setattr(community, key, value)
    if changed:
        community.save(update_fields=list(changed))
        audit(
            community=community,
            actor=actor,
            action="community.update",
            target=community.name,
            fields=sorted(changed),
        )
    return community


def managed_communities(user: User) -> QuerySet[Community]:
    """Communities where `user` may add members (the "community" choice of the add form)."""
    memberships = (
        Membership.objects.with_scopes_disabled()
        .current()
        .filter(user=user, role__in=[r for r in Role.values if role_has(r, "members:write")])
    )
    return Community.objects.filter(pk__in=memberships.values("community")).order_by("name")


def portal_login_url() -> str:
    return settings.SITE_URL + reverse("accounts:login")


@transaction.atomic
def add_member(
    *,
    community: Community,
    actor: User,
    phone: object,
    first_name: str,
    last_name: str,
    role: str,
    email: str = "",
) -> Membership:
    """Add a person to a community by phone number: reuse the global user with that number or
    create one, create (or re-open) the membership as *invited*, and queue a welcome e-mail and
    SMS with the portal link. Their first code login turns the invitation active."""
    if role not in (Role.INDIVIDUAL, Role.MANAGER):
        raise CommunityError(_("A user can be added as individual or manager only."))
    with scope(community=community):  # may be another community than the request's
        return _add_member(community, actor, phone, first_name, last_name, role, email)


def _add_member(
    community: Community,
    actor: User,
    phone: object,
    first_name: str,
    last_name: str,
    role: str,
    email: str,
) -> Membership:
    if not user_can(community, actor, "members:write"):
        raise CommunityError(_("You cannot add users to this community."))
    phone = str(phone)
    authorize_sms(community=community, phone=phone)
    user = User.objects.filter(phone=phone).first()
    if user is None:
        user = User.objects.create_user(
            phone=phone, first_name=first_name, last_name=last_name, email=email
        )
    else:
        # Fill what we did not know; never overwrite what the person set themselves.
        for field, value in (
            ("first_name", first_name),
            ("last_name", last_name),
            ("email", email),
        ):
            if value and not getattr(user, field):
                setattr(user, field, value)
        user.save()
    membership: Membership | None = (
        Membership.objects.with_scopes_disabled().of(community, user).first()
    )
    if membership and membership.state != Membership.State.LEFT:
        raise CommunityError(
            _("%(name)s is already a member of %(community)s.")
            % {"name": user, "community": community}
        )
    if membership:
        membership.role, membership.state, membership.left_at = role, Membership.State.INVITED, None
        membership.save(update_fields=["role", "state", "left_at"])
    else:
        membership = Membership.objects.create(
            community=community, user=user, role=role, state=Membership.State.INVITED
        )
    audit(
        community=community,
        actor=actor,
        action="member.add",
        target=user,
        role=role,
        user_id=user.pk,
    )
    _queue_welcome(membership)
    return membership


def authorize_sms(*, community: Community, phone: object) -> None:
    """The SMS limits (accounts.sms_limits) as a CommunityError: the whole change is refused
    and rolled back, tokens included, with the reason shown to the manager."""
    try:
        sms_limits.authorize_community_sms(community=community, phone=phone)
    except sms_limits.SmsRefused as e:
        raise CommunityError(e.message) from e


def _queue_welcome(membership: Membership) -> None:
    from .tasks import send_welcome_email_task

    user = membership.user
    with override(user.language):
        body = _(
            "%(community)s invites you to Sparklin. Log in with your phone number: %(url)s"
        ) % {"community": membership.community.name, "url": portal_login_url()}
    phone = str(user.phone)
    transaction.on_commit(lambda: send_sms_task.delay(phone, body))
    if user.email:
        ids = {"community": membership.community_id, "membership_id": membership.pk}
        transaction.on_commit(lambda: send_welcome_email_task.delay(**ids))


def _check_can_change(membership: Membership, actor: User) -> None:
    community = membership.community
    if not user_can(community, actor, "members:write"):
        raise CommunityError(_("You cannot change the users of this community."))
    if membership.role == Role.OWNER and not user_can(community, actor, "ownership:transfer"):
        raise CommunityError(_("Only an owner can change or remove another owner."))


@transaction.atomic
def update_member(
    *, membership: Membership, actor: User, first_name: str, last_name: str, email: str, role: str
) -> Membership:
    """Edit a member's information (names, e-mail) and role."""
    _check_can_change(membership, actor)
    if role not in Role.values:
        raise CommunityError(_("Unknown role."))
    if (
        membership.role == Role.OWNER
        and role != Role.OWNER
        and not _other_owners(membership).exists()
    ):
        raise CommunityError(_("A community keeps at least one owner."))
    if role == Role.OWNER and membership.role != Role.OWNER:
        raise CommunityError(_("Ownership cannot be given from this form."))
    user = membership.user
    user.first_name, user.last_name, user.email = first_name, last_name, email
    user.save(update_fields=["first_name", "last_name", "email"])
    old_role = membership.role
    if role != old_role:
        membership.role = role
        membership.save(update_fields=["role"])
    audit(
        community=membership.community,
        actor=actor,
        action="member.update",
        target=user,
        user_id=user.pk,
        role=role,
        old_role=old_role,
    )
    return membership


def _other_owners(membership: Membership) -> QuerySet[Membership]:
    owners: QuerySet[Membership] = (
        Membership.objects.with_scopes_disabled()
        .filter(community=membership.community, role=Role.OWNER, state=Membership.State.ACTIVE)
        .exclude(pk=membership.pk)
    )
    return owners


@transaction.atomic
def remove_member(*, membership: Membership, actor: User) -> Membership:
    """Take someone out of a community. Their sessions stay in its history; their cards stop
    working (the gateway answers Blocked for a card whose holder left)."""
    _check_can_change(membership, actor)
    if membership.state == Membership.State.LEFT:
        raise CommunityError(_("This user already left the community."))
    if membership.role == Role.OWNER and not _other_owners(membership).exists():
        raise CommunityError(_("A community keeps at least one owner."))
    _end_membership(membership, actor=actor, action="member.remove", target=membership.user)
    return membership


def _end_membership(membership: Membership, *, actor: User, action: str, target: object) -> None:
    """The one way a membership ends (removed or left): the row stays, so past sessions keep
    their community; `LEFT` is what makes cards answer Blocked and names show as former."""
    membership.state = Membership.State.LEFT
    membership.left_at = timezone.now()
    membership.save(update_fields=["state", "left_at"])
    audit(
        community=membership.community,
        actor=actor,
        action=action,
        target=target,
        user_id=membership.user_id,
    )


@transaction.atomic
def create_site(
    *,
    community: Community,
    actor: User,
    name: str,
    address: str = "",
) -> Site:
    """Add a site (a location with chargers) to a community; names are unique per community."""
    if Site.objects.with_scopes_disabled().filter(community=community, name=name).exists():
        raise CommunityError(_("A site with this name already exists."))
    site = Site.objects.create(community=community, name=name, address=address)
    audit(community=community, actor=actor, action="site.create", target=site.name, site_id=site.pk)
    return site


@transaction.atomic
def update_site(*, site: Site, actor: User, name: str, address: str = "") -> Site:
    """Rename a site or change its address (its electrical model: `power.services`)."""
    if (
        Site.objects.with_scopes_disabled()
        .filter(community=site.community_id, name=name)
        .exclude(pk=site.pk)
        .exists()
    ):
        raise CommunityError(_("A site with this name already exists."))
    site.name, site.address = name, address
    site.save(update_fields=["name", "address"])
    audit(
        community=site.community,
        actor=actor,
        action="site.update",
        target=site.name,
        site_id=site.pk,
    )
    return site


@transaction.atomic
def leave_community(*, membership: Membership, actor: User) -> Membership:
    """A person leaves an installation (moving out): the membership ends, their cards stop
    working there (the gateway answers Blocked for holders who left), remaining members see
    "former member" on their past sessions, and they keep their account. The sole owner must
    transfer ownership first."""
    if membership.user_id != actor.pk:
        raise CommunityError(_("You can only leave an installation yourself."))
    if membership.state == Membership.State.LEFT:
        raise CommunityError(_("You already left this installation."))
    if membership.role == Role.OWNER and not _other_owners(membership).exists():
        raise CommunityError(
            _("You are the only owner of %(community)s: transfer the ownership before leaving.")
            % {"community": membership.community}
        )
    _end_membership(membership, actor=actor, action="member.leave", target=_("former member"))
    return membership


@transaction.atomic
def request_access(*, user: User, slug: str, message: str = "") -> AccessRequest:
    """A driver who cannot charge asks an installation's managers (found by its short name)
    for access."""
    community = Community.objects.filter(slug=slug.strip().lower()).first()
    if community is None:
        raise CommunityError(_("No installation has this short name. Check it with its manager."))
    if Membership.objects.with_scopes_disabled().current().of(community, user).exists():
        raise CommunityError(
            _("You are already a member of %(community)s.") % {"community": community}
        )
    pending = AccessRequest.objects.with_scopes_disabled().filter(
        community=community, user=user, state=AccessRequest.State.PENDING
    )
    if pending.exists():
        raise CommunityError(_("Your request is already waiting for the managers' answer."))
    access_request = AccessRequest.objects.create(community=community, user=user, message=message)
    audit(
        community=community,
        actor=user,
        action="access_request.create",
        target=user,
        user_id=user.pk,
        request_id=access_request.pk,
    )
    for hook in ACCESS_REQUEST_HOOKS:
        hook(access_request)
    return access_request


@transaction.atomic
def decide_access_request(
    *, access_request: AccessRequest, actor: User, accept: bool
) -> AccessRequest:
    """A manager accepts (the driver becomes an active individual member) or refuses a request;
    the driver is told by SMS."""
    if not user_can(access_request.community, actor, "access_requests:decide"):
        raise CommunityError(_("You cannot answer access requests here."))
    if access_request.state != AccessRequest.State.PENDING:
        raise CommunityError(_("This request was already answered."))
    access_request.state = AccessRequest.State.ACCEPTED if accept else AccessRequest.State.REFUSED
    access_request.decided_at, access_request.decided_by = timezone.now(), actor
    access_request.save(update_fields=["state", "decided_at", "decided_by"])
    community, user = access_request.community, access_request.user
    if accept:
        membership = Membership.objects.with_scopes_disabled().of(community, user).first()
        if membership is None:
            Membership.objects.create(community=community, user=user, role=Role.INDIVIDUAL)
        elif membership.state == Membership.State.LEFT:
            membership.role, membership.state, membership.left_at = (
                Role.INDIVIDUAL,
                Membership.State.ACTIVE,
                None,
            )
            membership.save(update_fields=["role", "state", "left_at"])
    audit(
        community=community,
        actor=actor,
        action="access_request.accept" if accept else "access_request.refuse",
        target=user,
        user_id=user.pk,
        request_id=access_request.pk,
    )
    with override(user.language):
        if accept:
            body = _("You can now charge at %(community)s. Log in: %(url)s")
        else:
            body = _("Your access request to %(community)s was refused.")
        # A refused request names the installation by the short name the person typed: its
        # name is for members only.
        name = community.name if accept else community.slug
        body = body % {"community": name, "url": portal_login_url()}
    phone = str(user.phone)
    authorize_sms(community=community, phone=phone)
    transaction.on_commit(lambda: send_sms_task.delay(phone, body))
    return access_request
