"""Sending: the rows of one (community, recipient, kind, channel) that are due go out as one
message, at most one message per `NOTIFY_THROTTLE_MINUTES` (15) per group.

The throttle is what bounds a flood: 500 refusals at one charger within a quarter of an hour
make the first e-mail at once and one digest ("… and 490 more") when the quarter is over, per
manager and channel — never 500 e-mails. An SMS digest is one SMS, and it passes the same limits
as every SMS a community triggers (`accounts.sms_limits.authorize_community_sms`: country,
per-installation and per-number buckets); a refused SMS is logged and kept as `refused`, never
retried, never an error.

Exactly once per row, like expense notes (`billing.dispatch`): a sender claims the group's rows
(state `sending`, `claimed_at`) in a short transaction, commits, talks to the mail server or
the SMS provider outside any lock, then marks them sent. A claim older than `CLAIM_TIMEOUT`
(its worker died mid-send) is taken again — the one case where a message may go out twice.
Delivery errors are retried with backoff up to `MAX_ATTEMPTS`, then the rows are `failed`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F, Max, Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import override

from accounts import sms, sms_limits
from accounts.models import User
from communities.models import Community

from .messages import Message, build
from .models import Channel, Notification

logger = logging.getLogger(__name__)

CLAIM_TIMEOUT = timedelta(minutes=15)
MAX_ATTEMPTS = 5

State = Notification.State


def throttle() -> timedelta:
    return timedelta(minutes=settings.NOTIFY_THROTTLE_MINUTES)


def _claimable(now: datetime) -> Q:
    return Q(state=State.PENDING, send_after__lte=now) | Q(
        state=State.SENDING, claimed_at__lt=now - CLAIM_TIMEOUT
    )


def due_groups(now: datetime | None = None) -> list[tuple[int, int, str, str]]:
    """The groups with rows to send now (beat's dispatcher), along the partial index."""
    now = now or timezone.now()
    rows = (
        Notification.objects.with_scopes_disabled()
        .filter(_claimable(now))
        .values_list("community_id", "recipient_id", "kind", "channel")
        .distinct()
    )
    return sorted(set(rows))


def _last_message(
    community: Community, recipient_id: int, kind: str, channel: str
) -> datetime | None:
    """When this group last sent (or began sending) a message."""
    found = Notification.objects.filter(
        community=community, recipient_id=recipient_id, kind=kind, channel=channel
    ).aggregate(
        sent=Max("sent_at", filter=Q(state=State.SENT)),
        sending=Max("claimed_at", filter=Q(state=State.SENDING)),
    )
    times = [t for t in (found["sent"], found["sending"]) if t is not None]
    return max(times) if times else None


def _mark(rows: Sequence[Notification], **fields) -> None:
    Notification.objects.filter(pk__in=[r.pk for r in rows]).update(**fields)


def send_group(
    *, community: Community, recipient_id: int, kind: str, channel: str, now: datetime | None = None
) -> str:
    """Send what is due for one group, inside the community's scope. Returns what happened:
    "sent", "throttled", "refused" (SMS limits), "failed", "retry" or "nothing"."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(community=community, recipient_id=recipient_id, kind=kind, channel=channel)
            .filter(_claimable(now))
            .order_by("created_at", "pk")
        )
        if not rows:
            return "nothing"
        last = _last_message(community, recipient_id, kind, channel)
        if last is not None and now < last + throttle():
            # Gathered into the next message, due when the throttle allows it.
            _mark(rows, send_after=last + throttle(), state=State.PENDING, claimed_at=None)
            return "throttled"
        recipient = User.objects.get(pk=recipient_id)
        if not recipient.is_active:
            _mark(rows, state=State.FAILED, error="account deactivated", claimed_at=None)
            return "failed"
        if channel == Channel.SMS:
            try:
                sms_limits.authorize_community_sms(community=community, phone=recipient.phone)
            except sms_limits.SmsRefused as refused:
                logger.warning(
                    "Notification SMS to user %s (%s, %d fact(s)) refused by the SMS limits: %s",
                    recipient_id,
                    kind,
                    len(rows),
                    refused.message,
                )
                _mark(rows, state=State.REFUSED, error=refused.message[:500], claimed_at=None)
                return "refused"
        if channel == Channel.EMAIL and not recipient.email:
            _mark(rows, state=State.FAILED, error="no e-mail address", claimed_at=None)
            return "failed"
        _mark(rows, state=State.SENDING, claimed_at=now)
    message = build(rows, recipient, community)
    try:
        deliver(message, recipient, channel)
    except Exception as exc:  # the mail server or the SMS provider: retried later
        attempts = max(r.attempts for r in rows) + 1
        error = f"{type(exc).__name__}: {exc}"[:500]
        logger.warning("Notification %s to user %s not delivered: %s", kind, recipient_id, error)
        if attempts >= MAX_ATTEMPTS:
            _mark(
                rows, state=State.FAILED, error=error, attempts=F("attempts") + 1, claimed_at=None
            )
            return "failed"
        _mark(
            rows,
            state=State.PENDING,
            error=error,
            attempts=F("attempts") + 1,
            claimed_at=None,
            send_after=timezone.now() + timedelta(minutes=2**attempts),
        )
        return "retry"
    _mark(rows, state=State.SENT, sent_at=now, error="", claimed_at=None)
    return "sent"


def deliver(message: Message, recipient: User, channel: str) -> None:
    """Hand one message to the mail server or the SMS boundary."""
    if channel == Channel.SMS:
        sms.send_sms(recipient.phone, message.sms)
        return
    context = {"message": message, "user": recipient}
    with override(recipient.language):
        text = render_to_string("notifications/email/notice.txt", context)
        html = render_to_string("notifications/email/notice.html", context)
    email = EmailMultiAlternatives(
        message.subject, text, settings.DEFAULT_FROM_EMAIL, [recipient.email]
    )
    email.attach_alternative(html, "text/html")
    email.send()


def purge(now: datetime | None = None) -> int:
    """Rows older than `NOTIFY_KEEP_DAYS`, whatever their state (a fact that old is never sent:
    it is past the maximum age)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.NOTIFY_KEEP_DAYS)
    deleted, _ = Notification.objects.with_scopes_disabled().filter(created_at__lt=cutoff).delete()
    return deleted
