"""A person's own data: download it (JSON or CSV) and delete the account. Deleting erases or
anonymises personal data everywhere; charging sessions stay for the communities' accounting,
without anything that identifies the person. The sole owner of an installation must transfer it
first."""

from __future__ import annotations

import io

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scopes_disabled

from sparklin import csv_safe

from .models import LoginCode, User

ANONYMOUS_PHONE_PREFIX = "+999"  # no such country code: a placeholder no SMS can reach


class AccountError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


def _iso(value):
    return value.isoformat() if value else None


def export_user_data(user: User) -> dict:
    """Everything Sparklin holds about `user`, as JSON-ready data."""
    from chargers.models import ChargeCard, ChargingSession
    from communities.models import AccessRequest, InstallerMember, Membership

    with scopes_disabled():
        memberships = Membership.objects.filter(user=user).select_related("community")
        cards = ChargeCard.objects.filter(holder=user).select_related("community")
        sessions = (
            ChargingSession.objects.filter(holder=user)
            .select_related("community", "charger")
            .order_by("started_at")
        )
        requests = AccessRequest.objects.filter(user=user).select_related("community")
        companies = InstallerMember.objects.filter(user=user).select_related("company")
        return {
            "profile": {
                "phone": str(user.phone),
                "first_name": user.first_name,
                "last_name": user.last_name,
                "email": user.email,
                "language": user.language,
                "joined": _iso(user.date_joined),
                "phone_confirmed": _iso(user.phone_confirmed_at),
            },
            "memberships": [
                {
                    "community": m.community.name,
                    "role": m.role,
                    "state": m.state,
                    "since": _iso(m.created_at),
                    "left": _iso(m.left_at),
                }
                for m in memberships
            ],
            "cards": [
                {"community": c.community.name, "uid": c.uid, "name": c.name, "active": c.active}
                for c in cards
            ],
            "sessions": [
                {
                    "community": s.community.name,
                    "charger": s.charger.identity,
                    "started": _iso(s.started_at),
                    "stopped": _iso(s.stopped_at),
                    "energy_wh": str(s.energy_wh),
                    "cost": str(s.cost),
                    "currency": s.community.currency,
                    "card": s.id_tag,
                }
                for s in sessions
            ],
            "access_requests": [
                {
                    # The name only once the managers let the person in: an account that asks
                    # with a slug must not learn whose installation it is.
                    "community": (
                        r.community.name
                        if r.state == AccessRequest.State.ACCEPTED
                        else r.community.slug
                    ),
                    "state": r.state,
                    "asked": _iso(r.created_at),
                }
                for r in requests
            ],
            "installer_companies": [m.company.name for m in companies],
        }


_NUMBER_FIELDS = {"energy_wh", "cost"}


def _typed(field: str, value):
    """The value column mixes kinds: the phone and the figures stay machine-readable, every
    other value is text made inert for spreadsheets (csv_safe)."""
    if field == "phone":
        return csv_safe.Typed(value, csv_safe.PHONE)
    if field in _NUMBER_FIELDS:
        return csv_safe.Typed(value, csv_safe.NUMBER)
    return value


def export_user_data_csv(user: User) -> str:
    """The same data as one CSV table: section, field, value (sessions one line each)."""
    data = export_user_data(user)
    out = io.StringIO()
    writer = csv_safe.writer(out, columns=["section", "item", "field", "value"])
    writer.writerow(["section", "item", "field", "value"])
    for field, value in data["profile"].items():
        writer.writerow(["profile", "", field, _typed(field, value or "")])
    for section in ("memberships", "cards", "sessions", "access_requests"):
        for n, row in enumerate(data[section], start=1):
            for field, value in row.items():
                writer.writerow([section, n, field, _typed(field, "" if value is None else value)])
    for name in data["installer_companies"]:
        writer.writerow(["installer_companies", "", "name", name])
    return out.getvalue()


def sole_owner_communities(user: User):
    from communities.installers import sole_owner_of

    with scopes_disabled():
        return sole_owner_of(user)


@transaction.atomic
def delete_account(*, user: User) -> None:
    """Erase `user`'s personal data: names, e-mail and phone (replaced by a unique placeholder),
    login codes, cards, installer company memberships, invitations sent to them; memberships end;
    sessions stay for accounting without holder, card or card UID; audit entries about them lose
    their name (those they wrote point to the anonymised account); notifications to them or naming
    them are deleted. The account is deactivated. Refused for the sole owner of an installation."""
    from chargers.models import ChargeCard, ChargingSession
    from chargers.stamps import changed
    from communities.models import (
        AccessRequest,
        AuditEvent,
        InstallerMember,
        Invitation,
        Membership,
    )
    from notifications.models import Notification, Preference

    owned = sole_owner_communities(user)
    if owned:
        raise AccountError(
            _(
                "You are the only owner of %(names)s: transfer the ownership to someone else "
                "before deleting your account."
            )
            % {"names": ", ".join(c.name for c in owned)}
        )
    now = timezone.now()
    with scopes_disabled():
        Membership.objects.current().filter(user=user).update(
            state=Membership.State.LEFT, left_at=now
        )
        ChargingSession.objects.filter(holder=user).update(holder=None, card=None, id_tag="")
        freed = set(ChargeCard.objects.filter(holder=user).values_list("community_id", flat=True))
        ChargeCard.objects.filter(holder=user).update(
            holder=None, active=False, name="", expires_on=None
        )
        for community_id in freed:  # the gateways forget these cards' decisions within seconds
            changed(community_id=community_id)
        AccessRequest.objects.filter(user=user).delete()
        # Notices to them, and notices naming them (their access requests, their refusals).
        Notification.objects.filter(
            Q(recipient=user) | Q(data__user_id=user.pk) | Q(data__holder_id=user.pk)
        ).delete()
        Preference.objects.filter(user=user).delete()
        InstallerMember.objects.filter(user=user).delete()
        if user.email:
            Invitation.objects.filter(email__iexact=user.email).update(email="")
        Invitation.objects.filter(phone=str(user.phone)).update(phone="")
        AuditEvent.objects.filter(data__user_id=user.pk).update(target=_("deleted account"))
        LoginCode.objects.filter(phone=str(user.phone)).delete()
        LoginCode.objects.filter(user=user).delete()
    user.first_name = user.last_name = user.email = ""
    user.phone = f"{ANONYMOUS_PHONE_PREFIX}{user.pk:011d}"
    user.is_active = False
    user.is_staff = user.is_superuser = False
    user.phone_confirmed_at = None
    user.set_unusable_password()
    user.save()
