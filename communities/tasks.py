"""Background work of the communities app. Ids in, scope entered (`CommunityTask`), one call."""

from celery import shared_task

from sparklin.tasks import CommunityTask

from .emails import send_invitation_email, send_welcome_email
from .models import Community, Invitation, Membership
from .services import portal_login_url


@shared_task(
    base=CommunityTask,
    acks_late=True,
    autoretry_for=(OSError,),
    max_retries=3,
    default_retry_delay=30,
)
def send_welcome_email_task(*, community: Community, membership_id: int) -> None:
    """E-mail a newly added member the link to the portal."""
    membership = Membership.objects.select_related("user").filter(pk=membership_id).first()
    if membership is None or not membership.user.email:
        return
    send_welcome_email(membership, portal_login_url())


@shared_task(
    base=CommunityTask,
    acks_late=True,
    autoretry_for=(OSError,),
    max_retries=3,
    default_retry_delay=30,
)
def send_invitation_email_task(*, community: Community, invitation_id: int, url: str) -> None:
    """E-mail an owner invitation link (the token is only in `url`, never stored)."""
    invitation = Invitation.objects.filter(pk=invitation_id).first()
    if invitation is None or not invitation.email or not invitation.is_open:
        return
    send_invitation_email(invitation, url)
