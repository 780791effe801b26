"""Background work of the communities app. Ids in, scope entered, one call."""

from celery import shared_task
from django_scopes import scope, scopes_disabled

from .emails import send_invitation_email, send_welcome_email
from .models import Invitation, Membership
from .services import portal_login_url


@shared_task(acks_late=True, autoretry_for=(OSError,), max_retries=3, default_retry_delay=30)
def send_welcome_email_task(membership_id: int) -> None:
    """E-mail a newly added member the link to the portal."""
    with scopes_disabled():
        membership = (
            Membership.objects.select_related("user", "community").filter(pk=membership_id).first()
        )
    if membership is None or not membership.user.email:
        return
    with scope(community=membership.community):
        send_welcome_email(membership, portal_login_url())


@shared_task(acks_late=True, autoretry_for=(OSError,), max_retries=3, default_retry_delay=30)
def send_invitation_email_task(invitation_id: int, url: str) -> None:
    """E-mail an owner invitation link (the token is only in `url`, never stored)."""
    with scopes_disabled():
        invitation = Invitation.objects.select_related("community").filter(pk=invitation_id).first()
    if invitation is None or not invitation.email or not invitation.is_open:
        return
    with scope(community=invitation.community):
        send_invitation_email(invitation, url)
