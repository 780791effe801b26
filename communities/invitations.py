"""Invitations to become owner of an installation: hand-over (an installer invites the end user)
and ownership transfer (the owner invites the next one). Single use, expiring; only a hash of the
token is stored, so the link is shown once to its creator (with a QR code) and sent by e-mail
and/or SMS. Accepting needs a logged-in person (SMS login first)."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.tasks import send_sms_task

from .installers import start_handover_grants
from .models import Community, Invitation, Membership, Role
from .permissions import user_can
from .services import CommunityError, audit, authorize_sms

INVITATION_DAYS = 7


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_url(token: str) -> str:
    return settings.SITE_URL + reverse("invitation-accept", kwargs={"token": token})


def _active_owners(community):
    return Membership.objects.with_scopes_disabled().filter(
        community=community, role=Role.OWNER, state=Membership.State.ACTIVE
    )


@transaction.atomic
def invite_owner(
    *, community: Community, actor: User, email: str = "", phone: str = ""
) -> tuple[Invitation, str]:
    """Invite someone to become owner: the installer before the hand-over, an owner to transfer
    ownership. Earlier open invitations of the community are revoked (one link at a time).
    Returns the invitation and its token (never stored)."""
    if not user_can(community, actor, "ownership:invite"):
        raise CommunityError(_("You cannot invite an owner to this installation."))
    transfer = user_can(community, actor, "ownership:transfer")
    if not transfer and _active_owners(community).exists():
        raise CommunityError(
            _("This installation already has an owner: only the owner can transfer it.")
        )
    if phone:
        authorize_sms(community=community, phone=phone)
    now = timezone.now()
    Invitation.objects.with_scopes_disabled().filter(
        community=community, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=now)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        community=community,
        role=Role.OWNER,
        email=email,
        phone=str(phone or ""),
        token_hash=hash_token(token),
        created_by=actor,
        created_at=now,
        expires_at=now + timedelta(days=INVITATION_DAYS),
    )
    kind = "transfer" if transfer else "handover"
    audit(
        community=community,
        actor=actor,
        action=f"invitation.{kind}",
        target=email or str(phone) or "link",
        invitation_id=invitation.pk,
    )
    _send(invitation, token)
    return invitation, token


def _send(invitation: Invitation, token: str) -> None:
    from .tasks import send_invitation_email_task

    url = invitation_url(token)
    if invitation.phone:
        body = _("You are invited to become the owner of %(community)s on Sparklin: %(url)s") % {
            "community": invitation.community.name,
            "url": url,
        }
        phone = invitation.phone
        transaction.on_commit(lambda: send_sms_task.delay(phone, body))
    if invitation.email:
        ids = {"community": invitation.community_id, "invitation_id": invitation.pk}
        transaction.on_commit(lambda: send_invitation_email_task.delay(**ids, url=url))


def find_invitation(token: str) -> Invitation | None:
    """The invitation behind a link, whatever its state (None for a forged token)."""
    if not token or len(token) > 100:
        return None
    return (
        Invitation.objects.with_scopes_disabled()
        .select_related("community", "created_by")
        .filter(token_hash=hash_token(token))
        .first()
    )


def invitation_problem(invitation: Invitation | None) -> str | None:
    """Why a link cannot be used, for the person who opened it; None when it can."""
    if invitation is None:
        return _("This invitation link is not valid. Check that you copied it completely.")
    if invitation.accepted_at is not None:
        return _("This invitation was already used. Ask for a new one if you need it.")
    if invitation.revoked_at is not None:
        return _("This invitation was cancelled. Ask for a new one if you need it.")
    if invitation.expires_at <= timezone.now():
        return _("This invitation has expired. Ask for a new one.")
    return None


@transaction.atomic
def accept_invitation(*, token: str, user: User) -> Membership:
    """Spend the invitation: `user` becomes owner. A transfer makes the inviting owner a manager;
    the first owner of an installation starts the installer's 14 days of full access."""
    invitation = find_invitation(token)
    if invitation is not None:
        invitation = (
            Invitation.objects.with_scopes_disabled().select_for_update().get(pk=invitation.pk)
        )
    problem = invitation_problem(invitation)
    if problem or invitation is None:
        raise CommunityError(problem or "")
    if invitation.created_by_id == user.pk:
        raise CommunityError(_("You cannot accept an invitation you sent yourself."))
    community = invitation.community
    now = timezone.now()
    previous_owners = list(_active_owners(community).exclude(user=user))
    membership = Membership.objects.with_scopes_disabled().of(community, user).first()
    if membership is None:
        membership = Membership.objects.create(
            community=community, user=user, role=invitation.role, state=Membership.State.ACTIVE
        )
    else:
        membership.role, membership.state, membership.left_at = (
            invitation.role,
            Membership.State.ACTIVE,
            None,
        )
        membership.save(update_fields=["role", "state", "left_at"])
    invitation.accepted_at, invitation.accepted_by = now, user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    inviter = invitation.created_by
    transfer = inviter is not None and any(m.user_id == inviter.pk for m in previous_owners)
    if transfer:
        for old in previous_owners:
            if old.user_id == inviter.pk:
                old.role = Role.MANAGER
                old.save(update_fields=["role"])
        action = "ownership.transfer"
    else:
        action = "ownership.handover"
    audit(
        community=community,
        actor=user,
        action=action,
        target=user,
        user_id=user.pk,
        invitation_id=invitation.pk,
        previous_owner_id=inviter.pk if transfer else None,
    )
    if not transfer and community.handed_over_at is None:
        start_handover_grants(community=community, actor=user, at=now)
    return membership


@transaction.atomic
def revoke_invitation(*, invitation: Invitation, actor: User) -> None:
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit(
            community=invitation.community,
            actor=actor,
            action="invitation.revoke",
            target=invitation.email or invitation.phone or "link",
            invitation_id=invitation.pk,
        )


def qr_svg(url: str) -> str:
    """The link as an inline SVG QR code (segno, pure Python)."""
    import segno

    return segno.make(url, error="m").svg_inline(scale=4, dark="#111", light="#fff")
