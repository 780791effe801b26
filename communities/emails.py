"""E-mails of the communities app: one function per kind over a subject/text/html triplet."""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils.translation import override

from .models import Membership


def send_welcome_email(membership: Membership, login_url: str) -> None:
    """Tell someone a manager added them to a community, with the link to the portal."""
    user = membership.user
    context = {"user": user, "community": membership.community, "login_url": login_url}
    with override(user.language):
        subject = render_to_string("communities/email/welcome_subject.txt", context).strip()
        text = render_to_string("communities/email/welcome.txt", context)
        html = render_to_string("communities/email/welcome.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [user.email])
    message.attach_alternative(html, "text/html")
    message.send()


def send_invitation_email(invitation, url: str) -> None:
    """Send an owner invitation link (hand-over or transfer)."""
    context = {"invitation": invitation, "community": invitation.community, "url": url}
    subject = render_to_string("communities/email/invitation_subject.txt", context).strip()
    text = render_to_string("communities/email/invitation.txt", context)
    html = render_to_string("communities/email/invitation.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [invitation.email])
    message.attach_alternative(html, "text/html")
    message.send()
