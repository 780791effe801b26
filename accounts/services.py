"""Login by SMS code. The same steps run whether or not the number belongs to someone: an
unknown number gets a code row too (never sent), so timing, throttling and answers are identical
and the login page cannot be used to discover who has an account."""

import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from . import sms_limits
from .models import LoginCode, TokenBucket, User, salted_digest
from .tasks import send_sms_task

logger = logging.getLogger(__name__)

RESEND_INTERVAL_SECONDS = 60
# Codes asked per number and per IP address, per hour.
CODES_PER_PHONE_PER_HOUR = 5
CODES_PER_IP_PER_HOUR = 20
# Code checks per IP address per hour (across numbers: stops guessing over many numbers).
CHECKS_PER_IP_PER_HOUR = 30


class LoginError(Exception):
    """A login step refused, with a message for the person (translated)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _digest(value: str) -> str:
    return salted_digest(value)


def hash_code(phone: str, code: str) -> str:
    """HMAC of the code bound to its number: a leaked table reveals no code, and a hash cannot
    be replayed for another number."""
    return hmac.new(
        settings.SECRET_KEY.encode(), f"{phone}:{code}".encode(), hashlib.sha256
    ).hexdigest()


def request_login_code(*, phone: object, ip: str) -> None:
    """Create a login code for `phone` and queue its SMS (only when the number belongs to an
    active user). Raises LoginError when throttled; the answer never depends on whether the
    number is known."""
    phone = str(phone)
    now = timezone.now()
    last = (
        LoginCode.objects.filter(phone=phone, purpose=LoginCode.Purpose.LOGIN)
        .order_by("-created_at")
        .first()
    )
    if last and (now - last.created_at).total_seconds() < RESEND_INTERVAL_SECONDS:
        raise LoginError(
            _("A code was just sent. Please wait a minute before asking for another one.")
        )
    if not TokenBucket.authorize(f"login-ip:{_digest(ip)}", CODES_PER_IP_PER_HOUR, 3600):
        raise LoginError(_("Too many login attempts from your network. Please try again later."))
    if not TokenBucket.authorize(f"login-phone:{_digest(phone)}", CODES_PER_PHONE_PER_HOUR, 3600):
        raise LoginError(_("Too many codes were asked for this number. Please try again later."))
    # Counted for known and unknown numbers alike: a refusal reveals nothing.
    try:
        sms_limits.take_number_token(phone)
    except sms_limits.SmsRefused as e:
        raise LoginError(e.message)

    user = User.objects.filter(phone=phone, is_active=True).first()
    code = f"{secrets.randbelow(10**6):06d}"
    with transaction.atomic():
        LoginCode.objects.create(
            phone=phone,
            user=user,
            code_hash=hash_code(phone, code),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.LOGIN_CODE_TTL_SECONDS),
        )
        if user is not None:
            with override(user.language):
                body = _("Your Sparklin code: %(code)s. It is valid for %(minutes)s minutes.") % {
                    "code": code,
                    "minutes": settings.LOGIN_CODE_TTL_SECONDS // 60,
                }
            transaction.on_commit(lambda: send_sms_task.delay(phone, body))
        else:
            logger.info("Login code asked for an unknown number; no SMS sent")


def _latest_was_used(phone: str, purpose: str) -> bool:
    latest = LoginCode.objects.filter(phone=phone, purpose=purpose).order_by("-created_at").first()
    return latest is not None and latest.used_at is not None


def verify_login_code(*, phone: object, code: str, ip: str) -> User:
    """Spend the latest code of `phone` if `code` matches; return its user. Raises LoginError
    for an expired, exhausted or wrong code. First success confirms the phone number and turns
    invitations into active memberships."""
    from communities.models import Membership

    phone = str(phone)
    if not TokenBucket.authorize(f"login-check-ip:{_digest(ip)}", CHECKS_PER_IP_PER_HOUR, 3600):
        raise LoginError(_("Too many login attempts from your network. Please try again later."))
    now = timezone.now()
    # The error is raised after the block: raising inside it would roll back the attempt count.
    error = None
    with transaction.atomic():
        login_code = (
            LoginCode.objects.select_for_update()
            .filter(phone=phone, used_at__isnull=True, purpose=LoginCode.Purpose.LOGIN)
            .order_by("-created_at")
            .first()
        )
        if login_code is None and _latest_was_used(phone, LoginCode.Purpose.LOGIN):
            error = _("This code was already used. Ask for a new one if you need to log in again.")
        elif login_code is None or login_code.expires_at <= now:
            error = _("This code has expired. Please ask for a new one.")
        elif login_code.attempts >= settings.LOGIN_CODE_MAX_ATTEMPTS:
            error = _("Too many wrong attempts. Please ask for a new code.")
        elif not (
            hmac.compare_digest(login_code.code_hash, hash_code(phone, code.strip()))
            and login_code.user is not None
            and login_code.user.is_active
        ):
            login_code.attempts += 1
            login_code.save(update_fields=["attempts"])
            left = settings.LOGIN_CODE_MAX_ATTEMPTS - login_code.attempts
            if left <= 0:
                error = _("Too many wrong attempts. Please ask for a new code.")
            else:
                error = _("Wrong code. Attempts left: %(left)d.") % {"left": left}
        else:
            login_code.used_at = now
            login_code.save(update_fields=["used_at"])
            user: User = login_code.user
            if user.phone_confirmed_at is None:
                user.phone_confirmed_at = now
                user.save(update_fields=["phone_confirmed_at"])
            Membership.objects.with_scopes_disabled().filter(
                user=user, state=Membership.State.INVITED
            ).update(state=Membership.State.ACTIVE)
    if error:
        raise LoginError(error)
    return user


def set_user_language(*, user: User, language: str) -> None:
    """Remember the language a person chose: activated again at each login."""
    if user.language != language:
        user.language = language
        user.save(update_fields=["language"])


def prune_login_data(now: datetime | None = None) -> dict[str, int]:
    """Delete login codes nobody can use any more (codes asked for unknown numbers included:
    their numbers are not kept) and rate-limit buckets idle long enough to be full again."""
    now = now or timezone.now()
    codes, _ = LoginCode.objects.stale(now).delete()
    return {"login_codes": codes, "token_buckets": TokenBucket.prune(now)}
