"""Sending a support ticket to the support address (after the ticket was committed)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.utils import timezone

from .emails import send_ticket_email
from .models import Ticket

logger = logging.getLogger(__name__)

RETRY_BASE, RETRY_MAX, MAX_RETRIES = 60, 3600, 30


@shared_task(name="support.tasks.send_ticket", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def send_ticket(self: Task[Any, Any], ticket_id: int) -> bool:
    """E-mail ticket `ticket_id` to SUPPORT_EMAIL once (`emailed_at`); an SMTP failure is kept on
    the ticket (staff see it in the admin) and retried with backoff. Sent at least once: a
    crash between the SMTP answer and the commit may send it twice, never zero times."""
    ticket = Ticket.objects.filter(pk=ticket_id).first()
    if ticket is None or ticket.emailed_at is not None:
        return False
    try:
        send_ticket_email(ticket)
    except Exception as e:  # SMTP refused, server away: kept and retried
        logger.warning("Support ticket %s: e-mail failed: %s", ticket_id, e)
        Ticket.objects.filter(pk=ticket_id).update(email_error=str(e)[:1000])
        if self.request.is_eager:
            return False
        raise self.retry(countdown=min(RETRY_MAX, RETRY_BASE * 2**self.request.retries), exc=e)
    Ticket.objects.filter(pk=ticket_id).update(emailed_at=timezone.now(), email_error="")
    return True
