"""Support reports: one keyword-only service, `report_problem`, which keeps the ticket and queues
its e-mail to the support address after commit; and the closing of a ticket by staff."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import TokenBucket
from communities.models import Community
from communities.permissions import role_of

from .models import Ticket

if TYPE_CHECKING:
    from accounts.models import User

HOUR, DAY = 3600, 86400


class SupportError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def community_of_page(page: str, user: User) -> Community | None:
    """The community a page belongs to (`/c/<slug>/…`), when `user` may see it: a report never
    names a community its author has no access to."""
    try:
        match = resolve(page.split("?")[0])
    except Resolver404:
        return None
    slug = match.kwargs.get("community")
    if not slug:
        return None
    community = Community.objects.filter(slug=slug).first()
    if community is None or role_of(community, user) is None:
        return None
    return community


def _rate_limit(user: User) -> None:
    hourly, daily = settings.SUPPORT_REPORTS_PER_HOUR, settings.SUPPORT_REPORTS_PER_DAY
    if not TokenBucket.authorize(f"support-h:{user.pk}", hourly, HOUR) or (
        not TokenBucket.authorize(f"support-d:{user.pk}", daily, DAY)
    ):
        raise SupportError(
            _(
                "You have sent several reports already: we are reading them. Please wait a "
                "little before sending another one, or call us at %(phone)s."
            )
            % {"phone": settings.SUPPORT_PHONE}
        )


def report_problem(
    *,
    user: User,
    description: str,
    phone: object = None,
    page: str = "",
    screenshot: ContentFile | None = None,
    user_agent: str = "",
) -> Ticket:
    """Keep a support ticket from `user` and e-mail it to SUPPORT_EMAIL after commit (with the
    screenshot attached). Limited per person (SUPPORT_REPORTS_PER_HOUR / _PER_DAY)."""
    from .tasks import send_ticket

    _rate_limit(user)
    community = community_of_page(page, user) if page else None
    with transaction.atomic():
        ticket = Ticket(
            reporter=user,
            reporter_name=user.get_full_name() or str(user.phone),
            email=user.email or "",
            phone=phone or "",
            description=description,
            page=page[:500],
            source_community=community,
            community_name=community.name if community else "",
            user_agent=user_agent[:300],
        )
        if screenshot is not None:
            ticket.screenshot.save(screenshot.name or "screenshot.png", screenshot, save=False)
        ticket.save()
        transaction.on_commit(partial(send_ticket.delay, ticket.pk))
    return ticket


def close_ticket(*, ticket: Ticket) -> Ticket:
    if ticket.status != Ticket.Status.CLOSED:
        ticket.status, ticket.closed_at = Ticket.Status.CLOSED, timezone.now()
        ticket.save(update_fields=["status", "closed_at"])
    return ticket


def reopen_ticket(*, ticket: Ticket) -> Ticket:
    if ticket.status != Ticket.Status.OPEN:
        ticket.status, ticket.closed_at = Ticket.Status.OPEN, None
        ticket.save(update_fields=["status", "closed_at"])
    return ticket
