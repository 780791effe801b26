"""What each person chose to receive: per kind, e-mail and SMS. No stored row means the
defaults of `models.KINDS`; saving writes a row per kind, so a later change of defaults does
not override what someone chose."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from accounts.models import User
from communities.models import Membership
from communities.permissions import PERMISSIONS

from .models import KINDS, MANAGER_KINDS, Channel, Preference

Choice = dict[str, bool]  # {"email": bool, "sms": bool}


def defaults(kind: str) -> Choice:
    info = KINDS[kind]
    return {Channel.EMAIL: info.email, Channel.SMS: info.sms}


def choices_of(user_ids: Iterable[int]) -> dict[int, dict[str, Choice]]:
    """{user id: {kind: {"email", "sms"}}} for every kind, stored choices over the defaults:
    one query for any number of people."""
    ids = list(user_ids)
    result = {uid: {kind: defaults(kind) for kind in KINDS} for uid in ids}
    for p in Preference.objects.filter(user_id__in=ids):
        if p.kind in KINDS:
            result[p.user_id][p.kind] = {Channel.EMAIL: p.email, Channel.SMS: p.sms}
    return result


def channels_for(user: User, kind: str, choice: Choice) -> list[str]:
    """The channels a person receives `kind` on: chosen, and reachable (an e-mail needs an
    address; every account has a phone number)."""
    channels: list[str] = []
    if choice.get(Channel.EMAIL) and user.email:
        channels.append(Channel.EMAIL)
    if choice.get(Channel.SMS) and user.phone:
        channels.append(Channel.SMS)
    return channels


def kinds_for(user: User) -> list[str]:
    """The kinds shown on a person's account page: the driver's always, the managers' when a
    current membership somewhere gives the permission they are for."""
    roles = set(
        Membership.objects.with_scopes_disabled()
        .current()
        .filter(user=user)
        .values_list("role", flat=True)
    )
    shown = [k for k in KINDS if k not in MANAGER_KINDS]
    managed = [
        k for k in MANAGER_KINDS if roles & PERMISSIONS[KINDS[k].permission or "community:view"]
    ]
    return managed + shown


@transaction.atomic
def save_choices(*, user: User, choices: dict[str, Choice]) -> None:
    """Store a person's choices (kinds not given are left as they are)."""
    for kind, choice in choices.items():
        if kind not in KINDS:
            raise ValueError(f"Unknown notification kind {kind!r}")
        Preference.objects.update_or_create(
            user=user,
            kind=kind,
            defaults={"email": bool(choice.get("email")), "sms": bool(choice.get("sms"))},
        )
