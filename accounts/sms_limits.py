"""Limits on the SMS Sparklin sends, against SMS pumping (fraudsters make a platform send SMS
to premium numbers they are paid for, or just burn its Twilio budget).

Three checks, asked by every service *before* it queues an SMS, inside its transaction (a
refused action rolls back, tokens included):

- the destination country must be allowed (`SMS_ALLOWED_COUNTRIES`, default the EU/EEA);
- one number receives at most `SMS_PER_NUMBER_PER_HOUR` / `_PER_DAY` SMS of any kind;
- one community triggers at most `SMS_PER_COMMUNITY_PER_HOUR` / `_PER_DAY` SMS (welcome
  messages, invitations, access answers, notifications) — whatever its managers do.

Notifications (`notifications.sending`) ask the same checks when they claim a message; a refusal
there is logged and kept on the notification row, never shown to anyone nor retried.

The counters are `TokenBucket`s (a row per key, locked while it is updated), shared by every
web and worker process. Refusals raise `SmsRefused` with a message meant for the person who
clicked."""

from __future__ import annotations

import hashlib

import phonenumbers
from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .models import TokenBucket

HOUR, DAY = 3600, 86400


class SmsRefused(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:40]


def region_of(phone) -> str | None:
    try:
        number = phonenumbers.parse(str(phone), None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(number)


def country_allowed(phone) -> bool:
    allowed = settings.SMS_ALLOWED_COUNTRIES
    if "*" in allowed:
        return True
    return region_of(phone) in {c.upper() for c in allowed}


def check_country(phone) -> None:
    """Refuse a destination outside the allowed countries (no token taken)."""
    if not country_allowed(phone):
        raise SmsRefused(
            _(
                "Sparklin does not send SMS to numbers of this country (%(prefix)s). "
                "Use a mobile number from the European Union."
            )
            % {"prefix": _prefix(phone)}
        )


def _prefix(phone) -> str:
    try:
        return f"+{phonenumbers.parse(str(phone), None).country_code}"
    except phonenumbers.NumberParseException:
        return "?"


def take_number_token(phone) -> None:
    """One SMS to `phone`: refused beyond the per-number hourly and daily limits."""
    key = _digest(str(phone))
    hourly, daily = settings.SMS_PER_NUMBER_PER_HOUR, settings.SMS_PER_NUMBER_PER_DAY
    if not TokenBucket.authorize(f"sms-to-h:{key}", hourly, HOUR):
        raise SmsRefused(
            ngettext(
                "This number already received %(count)d SMS from Sparklin in the last hour: "
                "try again later.",
                "This number already received %(count)d SMS from Sparklin in the last hour: "
                "try again later.",
                hourly,
            )
            % {"count": hourly}
        )
    if not TokenBucket.authorize(f"sms-to-d:{key}", daily, DAY):
        raise SmsRefused(
            ngettext(
                "This number already received %(count)d SMS from Sparklin today: try again "
                "tomorrow.",
                "This number already received %(count)d SMS from Sparklin today: try again "
                "tomorrow.",
                daily,
            )
            % {"count": daily}
        )


def take_community_token(community) -> None:
    """One SMS triggered by `community`: refused beyond its hourly and daily limits."""
    hourly, daily = settings.SMS_PER_COMMUNITY_PER_HOUR, settings.SMS_PER_COMMUNITY_PER_DAY
    if not TokenBucket.authorize(f"sms-community-h:{community.pk}", hourly, HOUR):
        raise SmsRefused(
            _(
                "This community has reached its limit of %(count)d SMS per hour (invitations "
                "and welcome messages). Nothing was changed: try again in an hour."
            )
            % {"count": hourly}
        )
    if not TokenBucket.authorize(f"sms-community-d:{community.pk}", daily, DAY):
        raise SmsRefused(
            _(
                "This community has reached its limit of %(count)d SMS per day (invitations "
                "and welcome messages). Nothing was changed: try again tomorrow, or contact "
                "Sparklin support if you need more."
            )
            % {"count": daily}
        )


def authorize_community_sms(*, community, phone) -> None:
    """Everything a community-triggered SMS must pass: country, community and number limits.
    Call it inside the transaction that queues the SMS."""
    check_country(phone)
    take_community_token(community)
    take_number_token(phone)
