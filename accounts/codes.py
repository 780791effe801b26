"""One-time SMS codes for everything but the plain login: creating an account, accepting an
invitation on its invited number, confirming an irreversible action. Same properties as the
login (`accounts.services`): 6 digits from `secrets`, only an HMAC stored (bound to the number
*and* the purpose, so a code proves one thing only), expiry, attempt limit, a minimum interval
between two codes, rate limits per number and per IP address, and the SMS limits
(`accounts.sms_limits`: allowed countries, per-number hourly/daily caps).

Unlike the login page, these flows always send the SMS: the person asked for it on a page that
does not reveal whether the number has an account (sign-up), holds an invitation token, or is
already logged in."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from . import sms_limits
from .models import LoginCode, TokenBucket
from .services import (
    CHECKS_PER_IP_PER_HOUR,
    CODES_PER_IP_PER_HOUR,
    CODES_PER_PHONE_PER_HOUR,
    RESEND_INTERVAL_SECONDS,
    LoginError,
    _digest,
    hash_code,
)

Purpose = LoginCode.Purpose


def _hash(phone: str, purpose: str, code: str, scope: str = "") -> str:
    # `scope` names the action a confirmation code is for: a code sent to delete an account
    # cannot confirm an ownership transfer.
    return hash_code(phone, f"{purpose}:{scope}:{code}")


def _sms_body(purpose: str, code: str, action: str = "") -> str:
    minutes = settings.LOGIN_CODE_TTL_SECONDS // 60
    texts: dict[str, str] = {
        Purpose.SIGNUP: _(
            "Your Sparklin code to create your account: %(code)s. Valid for %(minutes)s minutes."
        ),
        Purpose.INVITATION: _(
            "Your Sparklin code to accept your invitation: %(code)s. Valid for %(minutes)s minutes."
        ),
        Purpose.CONFIRM: _(
            'Sparklin: %(code)s is your code to confirm "%(action)s". Valid for %(minutes)s '
            "minutes. If you did not ask for it, ignore this message."
        ),
    }
    return texts[purpose] % {"code": code, "minutes": minutes, "action": action}


def issue_code(
    *,
    phone,
    purpose: str,
    ip: str,
    user=None,
    language: str = "",
    scope: str = "",
    action: str = "",
) -> None:
    """Create a code for `purpose` and queue its SMS to `phone`. Raises LoginError (translated)
    when a limit refuses it: too soon after the last one, too many for this number or network,
    a destination country or number over the SMS limits."""
    if purpose == Purpose.LOGIN:
        raise ValueError("Login codes are issued by accounts.services.request_login_code")
    phone = str(phone)
    now = timezone.now()
    last = LoginCode.objects.filter(phone=phone, purpose=purpose).order_by("-created_at").first()
    if last and (now - last.created_at).total_seconds() < RESEND_INTERVAL_SECONDS:
        raise LoginError(
            _("A code was just sent. Please wait a minute before asking for another one.")
        )
    try:
        sms_limits.check_country(phone)
    except sms_limits.SmsRefused as e:
        raise LoginError(e.message)
    with transaction.atomic():
        if not TokenBucket.authorize(f"{purpose}-ip:{_digest(ip)}", CODES_PER_IP_PER_HOUR, 3600):
            raise LoginError(_("Too many codes were asked from your network. Try again later."))
        if not TokenBucket.authorize(
            f"{purpose}-phone:{_digest(phone)}", CODES_PER_PHONE_PER_HOUR, 3600
        ):
            raise LoginError(_("Too many codes were asked for this number. Try again later."))
        try:
            sms_limits.take_number_token(phone)
        except sms_limits.SmsRefused as e:
            raise LoginError(e.message)
        code = f"{secrets.randbelow(10**6):06d}"
        LoginCode.objects.create(
            phone=phone,
            purpose=purpose,
            user=user,
            code_hash=_hash(phone, purpose, code, scope),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.LOGIN_CODE_TTL_SECONDS),
        )
        with override(language or (user.language if user else None) or settings.LANGUAGE_CODE):
            body = _sms_body(purpose, code, action)
        from .tasks import send_sms_task

        transaction.on_commit(lambda: send_sms_task.delay(phone, body))


def verify_code(*, phone, purpose: str, code: str, ip: str, scope: str = "") -> LoginCode:
    """Spend the latest code of `phone` for `purpose` if `code` matches. Raises LoginError for
    a used, expired, exhausted or wrong code (the attempt is counted first)."""
    phone = str(phone)
    if not TokenBucket.authorize(f"{purpose}-check-ip:{_digest(ip)}", CHECKS_PER_IP_PER_HOUR, 3600):
        raise LoginError(_("Too many attempts from your network. Please try again later."))
    now = timezone.now()
    error = None
    with transaction.atomic():
        latest = (
            LoginCode.objects.select_for_update()
            .filter(phone=phone, purpose=purpose)
            .order_by("-created_at")
            .first()
        )
        if latest is not None and latest.used_at is not None:
            error = _("This code was already used. Ask for a new one if you need it.")
        elif latest is None or latest.expires_at <= now:
            error = _("This code has expired. Please ask for a new one.")
        elif latest.attempts >= settings.LOGIN_CODE_MAX_ATTEMPTS:
            error = _("Too many wrong attempts. Please ask for a new code.")
        elif not hmac.compare_digest(latest.code_hash, _hash(phone, purpose, code.strip(), scope)):
            latest.attempts += 1
            latest.save(update_fields=["attempts"])
            left = settings.LOGIN_CODE_MAX_ATTEMPTS - latest.attempts
            if left <= 0:
                error = _("Too many wrong attempts. Please ask for a new code.")
            else:
                error = _("Wrong code. Attempts left: %(left)d.") % {"left": left}
        else:
            latest.used_at = now
            latest.save(update_fields=["used_at"])
    if error or latest is None:  # no code at all already set `error` (expired)
        raise LoginError(error or _("This code has expired. Please ask for a new one."))
    return latest
