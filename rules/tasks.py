"""Celery tasks of the rules app: the limits check (beat, every `RULES_LIMITS_SECONDS`)."""

from __future__ import annotations

import logging

from celery import shared_task
from django_scopes import scope

from communities.models import Community

from . import services
from .models import UsageLimit

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def check_limits() -> int:
    """Stop the sessions that reached a limit, community by community, each in its scope.
    Idempotent: a stop already on its way is not asked again."""
    ids = sorted(
        set(UsageLimit.objects.with_scopes_disabled().values_list("community_id", flat=True))
    )
    stopped = 0
    for community in Community.objects.filter(pk__in=ids):
        with scope(community=community):
            stopped += services.enforce_limits(community=community)
    if stopped:
        logger.info("Limits: %d session(s) asked to stop", stopped)
    return stopped


@shared_task(acks_late=True, ignore_result=True)
def sync_local_lists() -> int:
    """Bring the local authorization lists and offline behaviour of every connected charger in
    line with the cards and rules (`rules.locallists`), community by community."""
    from chargers.models import Charger

    from .locallists import sync_local_lists as sync

    ids = sorted(
        set(
            Charger.objects.with_scopes_disabled()
            .filter(connected=True)
            .values_list("community_id", flat=True)
        )
    )
    queued = 0
    for community in Community.objects.filter(pk__in=ids):
        with scope(community=community):
            queued += sync(community=community)
    return queued
