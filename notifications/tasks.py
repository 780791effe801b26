"""Celery tasks of notifications: collecting facts into rows, then sending them.

- `collect` (beat every `NOTIFY_SCAN_SECONDS`, and poked after a worker batch that recorded
  refusals): access requests, refusals and stops, chargers offline or back → rows, then the
  groups due are queued;
- `session_ended` (queued after a worker batch's commit with the sessions it completed);
- `access_requested` (queued when an access request is committed: managers are told at once);
- `dispatch` (beat, same period): every group with rows due (after the throttle, retries,
  claims left by a dead worker) gets its `send_group`;
- `send_group` (CommunityTask): one message for one person, kind and channel;
- `purge` (beat, daily): rows older than `NOTIFY_KEEP_DAYS`.
All are idempotent: rows are unique per fact, recipient and channel, and sending claims them."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction

from sparklin.tasks import CommunityTask

from . import collect as collecting
from . import sending

logger = logging.getLogger(__name__)


def _queue(groups) -> None:
    """Queue a send for each group that got new rows, once they are committed."""
    for community_id, recipient_id, kind, channel in sorted(groups):
        kwargs = {
            "community": community_id,
            "recipient_id": recipient_id,
            "kind": kind,
            "channel": channel,
        }
        transaction.on_commit(lambda kw=kwargs: send_group.delay(**kw))


@shared_task(acks_late=True, ignore_result=True)
def collect() -> int:
    """Scan the sources for facts to tell; returns how many groups got new rows."""
    with transaction.atomic():
        groups = collecting.collect()
        _queue(groups)
    return len(groups)


@shared_task(acks_late=True, ignore_result=True)
def session_ended(session_ids: list[int]) -> int:
    """Tell the drivers of these sessions (ended in one worker batch) that they ended."""
    with transaction.atomic():
        groups = collecting.collect_sessions([int(i) for i in session_ids])
        _queue(groups)
    return len(groups)


@shared_task(acks_late=True, ignore_result=True)
def access_requested(request_id: int) -> int:
    """Tell the managers of this access request's installation, once it is committed."""
    with transaction.atomic():
        groups = collecting.collect_access_requests([int(request_id)])
        _queue(groups)
    return len(groups)


@shared_task(acks_late=True, ignore_result=True)
def dispatch() -> int:
    """Queue a send for every group with rows due; returns how many."""
    groups = sending.due_groups()
    with transaction.atomic():
        _queue(groups)
    return len(groups)


@shared_task(base=CommunityTask, acks_late=True, ignore_result=True)
def send_group(*, community, recipient_id: int, kind: str, channel: str) -> str:
    """Send one group's due rows as one message (see `notifications.sending`)."""
    return sending.send_group(
        community=community, recipient_id=recipient_id, kind=kind, channel=channel
    )


@shared_task(acks_late=True, ignore_result=True)
def purge() -> int:
    """Delete notification rows older than `NOTIFY_KEEP_DAYS` (they name people and places);
    returns how many."""
    return sending.purge()
