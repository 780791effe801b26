"""Writes of the notifications app that the portal triggers: a person's choices (in
`preferences.save_choices`) and an installation's settings, audited here."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import User
from communities.models import Community
from communities.permissions import user_can
from communities.services import CommunityError, audit

from .models import CommunityNotifications

OFFLINE_MINUTES_MAX = 7 * 24 * 60


def offline_minutes_of(community: Community) -> int:
    from django.conf import settings

    row = CommunityNotifications.objects.filter(community=community).first()
    return row.offline_minutes if row else settings.NOTIFY_OFFLINE_MINUTES


@transaction.atomic
def set_offline_minutes(*, community: Community, actor: User, minutes: int) -> None:
    """After how many minutes without connection a charger is announced to the managers
    (0: never)."""
    if not user_can(community, actor, "community:manage"):
        raise CommunityError(_("You cannot change the settings of this community."))
    if not 0 <= minutes <= OFFLINE_MINUTES_MAX:
        raise CommunityError(_("Give a number of minutes between 0 and 10080 (a week)."))
    old = offline_minutes_of(community)
    CommunityNotifications.objects.update_or_create(
        community=community, defaults={"offline_minutes": minutes}
    )
    if old != minutes:
        audit(
            community=community,
            actor=actor,
            action="notifications.offline_minutes",
            target=community.name,
            old=old,
            new=minutes,
        )
