"""Forwarding's periodic work (beat)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import ForwardedFrame


def purge_frames(days: int) -> int:
    """Delete forwarded frames older than `days`; returns how many."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted: int
    deleted, _ = ForwardedFrame.objects.with_scopes_disabled().filter(at__lt=cutoff).delete()
    return deleted


@shared_task(name="forwarding.tasks.purge_forwarded_frames", acks_late=True)
def purge_forwarded_frames() -> int:
    """The frame log of operators is kept as long as the OCPP message log."""
    return purge_frames(settings.OCPP_MESSAGE_LOG_DAYS)
