"""Creating an account: the front door of a person who has none.

Three ways in, one finish (`complete_signup`):
- the sign-up page (before any installation, like Zaptec's): names, e-mail, country, phone;
  the phone is proven by an SMS code, the e-mail by a link;
- an owner invitation (hand-over or transfer) opened without an account: the code goes to the
  invited number (or to the number the invitee types, for e-mail-only invitations);
- a manager's "add a user": the person exists as an unconfirmed account (names typed by the
  manager); their first code login leads to the same profile confirmation.

A number that already has a confirmed account is never re-created nor overwritten: proving the
number simply logs its owner in (nobody learns whether a number had an account, except its
owner, on their own phone)."""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from .models import User

EMAIL_SALT = "sparklin.accounts.email-confirmation"


class SignupError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


@transaction.atomic
def complete_signup(
    *,
    phone,
    first_name: str,
    last_name: str,
    email: str,
    country: str,
    language: str,
) -> tuple[User, bool]:
    """The account of the person who just proved `phone` (an SMS code): created, or completed
    when a manager had added the number, or — when the number already has a confirmed account —
    returned unchanged. Returns (user, created_or_completed). Invitations of the number become
    active memberships, as at a first login."""
    from communities.models import Membership

    phone = str(phone)
    now = timezone.now()
    user = User.objects.select_for_update().filter(phone=phone).first()
    if user is not None and not user.is_active:
        raise SignupError(_("This account is closed. Contact Sparklin support."))
    if user is not None and user.phone_confirmed_at is not None:
        return user, False
    if user is None:
        user = User.objects.create_user(phone=phone)
    user.first_name, user.last_name, user.country = first_name, last_name, country
    if language:
        user.language = language
    if email.lower() != (user.email or "").lower():
        user.email_confirmed_at = None
    user.email = email
    user.phone_confirmed_at = now
    user.save()
    Membership.objects.with_scopes_disabled().filter(
        user=user, state=Membership.State.INVITED
    ).update(state=Membership.State.ACTIVE)
    if user.email and user.email_confirmed_at is None:
        queue_email_confirmation(user)
    return user, True


@transaction.atomic
def update_profile(
    *, user: User, first_name: str, last_name: str, email: str, country: str
) -> User:
    """A person confirms or corrects their names, e-mail and country (after a manager added
    them, or later from their account). A new e-mail is confirmed again by a link."""
    email_changed = email.lower() != (user.email or "").lower()
    user.first_name, user.last_name, user.country, user.email = (
        first_name,
        last_name,
        country,
        email,
    )
    if email_changed:
        user.email_confirmed_at = None
    user.save(update_fields=["first_name", "last_name", "country", "email", "email_confirmed_at"])
    if email and user.email_confirmed_at is None and email_changed:
        queue_email_confirmation(user)
    return user


def needs_profile(user: User) -> bool:
    """True until the person has confirmed their own names (a manager may have typed them)."""
    return not (user.first_name and user.last_name and user.country)


# --- e-mail confirmation ---------------------------------------------------------------------


def email_token(user: User) -> str:
    """A signed, expiring token for `user`'s current e-mail: a later change of address makes
    earlier links useless."""
    return signing.dumps({"u": user.pk, "e": user.email.lower()}, salt=EMAIL_SALT, compress=True)


def queue_email_confirmation(user: User) -> None:
    user_id = user.pk

    def _queue():
        from .tasks import send_email_confirmation_task

        send_email_confirmation_task.delay(user_id)

    transaction.on_commit(_queue)


def send_email_confirmation(user: User) -> None:
    """E-mail the confirmation link (subject/text/html triplet)."""
    url = settings.SITE_URL + reverse("accounts:email-confirm", kwargs={"token": email_token(user)})
    context = {"user": user, "url": url, "days": settings.EMAIL_CONFIRMATION_DAYS}
    with override(user.language):
        subject = render_to_string("accounts/email/confirm_subject.txt", context).strip()
        text = render_to_string("accounts/email/confirm.txt", context)
        html = render_to_string("accounts/email/confirm.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [user.email])
    message.attach_alternative(html, "text/html")
    message.send()


def confirm_email(token: str) -> User:
    """Mark the e-mail of a link as confirmed. Raises SignupError for a forged, expired or
    outdated link (the address changed since)."""
    try:
        data = signing.loads(
            token, salt=EMAIL_SALT, max_age=settings.EMAIL_CONFIRMATION_DAYS * 86400
        )
    except signing.SignatureExpired:
        raise SignupError(_("This confirmation link has expired. Ask for a new one."))
    except signing.BadSignature:
        raise SignupError(_("This confirmation link is not valid."))
    user = User.objects.filter(pk=data.get("u"), is_active=True).first()
    if user is None or (user.email or "").lower() != data.get("e"):
        raise SignupError(_("This link is for an e-mail address that is no longer on the account."))
    if user.email_confirmed_at is None:
        user.email_confirmed_at = timezone.now()
        user.save(update_fields=["email_confirmed_at"])
    return user
