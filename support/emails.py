"""The e-mail a support report becomes: to SUPPORT_EMAIL, reply-to the person, the screenshot
attached. Written in the support desk's language (the site's default)."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation

from .models import Ticket


def send_ticket_email(ticket: Ticket) -> None:
    with translation.override(settings.LANGUAGE_CODE):
        context = {"ticket": ticket, "base_url": settings.SITE_URL}
        subject = " ".join(render_to_string("emails/support_report_subject.txt", context).split())
        body = render_to_string("emails/support_report.txt", context)
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[settings.SUPPORT_EMAIL],
        reply_to=[ticket.email] if ticket.email else None,
    )
    if ticket.screenshot:
        with ticket.screenshot.open("rb") as f:
            name = f"ticket-{ticket.pk}-{ticket.screenshot.name.rsplit('/', 1)[-1]}"
            kind = "image/jpeg" if name.endswith(".jpg") else "image/png"
            message.attach(name, f.read(), kind)
    message.send()
