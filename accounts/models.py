"""People and how they prove who they are: the phone number is the login, a code sent by SMS
the proof. Users are global; what they may see is decided by their memberships (communities)."""

import hashlib
import hmac
from datetime import datetime, timedelta
from typing import ClassVar

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from phonenumber_field.modelfields import PhoneNumberField

from .countries import COUNTRIES


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, phone, password=None, **extra_fields):
        if not phone:
            raise ValueError("A phone number is required")
        user = self.model(phone=phone, **extra_fields)
        if password:
            user.set_password(password)
        else:
            # Portal users never have a password: they log in with an SMS code.
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, phone, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self.create_user(phone, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    class Language(models.TextChoices):
        FRENCH = "fr", _("French")
        ENGLISH = "en", _("English")

    phone = PhoneNumberField(_("phone number"), unique=True)
    first_name = models.CharField(_("first name"), max_length=150, blank=True)
    last_name = models.CharField(_("last name"), max_length=150, blank=True)
    email = models.EmailField(_("e-mail"), blank=True)
    language = models.CharField(
        _("language"), max_length=8, choices=Language.choices, default=Language.FRENCH
    )
    is_active = models.BooleanField(_("active"), default=True)
    is_staff = models.BooleanField(_("platform staff"), default=False)
    date_joined = models.DateTimeField(_("joined"), default=timezone.now)
    # Set at the first successful code login: the number is proven to reach this person.
    phone_confirmed_at = models.DateTimeField(_("phone confirmed"), null=True, blank=True)
    # Sign-up: the person's country (ISO 3166 alpha-2) and when their e-mail was confirmed by
    # the link sent to it (cleared when the e-mail changes).
    country = models.CharField(_("country"), max_length=2, choices=COUNTRIES, blank=True)
    email_confirmed_at = models.DateTimeField(_("e-mail confirmed"), null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "phone"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self):
        return self.get_full_name() or str(self.phone)

    def get_full_name(self):
        return f"{self.first_name} {self.last_name}".strip()

    def get_short_name(self):
        return self.first_name or str(self.phone)


class LoginCodeQuerySet(models.QuerySet):
    def stale(self, now: datetime | None = None) -> "LoginCodeQuerySet":
        """Codes that can no longer be used by anyone: expired (or spent) for more than
        `LoginCode.KEPT_AFTER_EXPIRY`. A code asked for an unknown number is one of them after
        that: the number is not kept."""
        return self.filter(expires_at__lt=(now or timezone.now()) - LoginCode.KEPT_AFTER_EXPIRY)


class LoginCode(models.Model):
    """A one-time code sent by SMS. Only a hash is stored; a code is spent by its first
    successful use, and dies after its time-to-live or too many wrong attempts."""

    class Purpose(models.TextChoices):
        LOGIN = "login", _("log in")
        SIGNUP = "signup", _("create an account")
        INVITATION = "invitation", _("accept an invitation")
        CONFIRM = "confirm", _("confirm an irreversible action")

    phone = PhoneNumberField(db_index=True)
    # A code proves one thing only: a sign-up or deletion code never logs anyone in.
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.LOGIN)
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE)
    code_hash = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    # Past its expiry a code only serves the "wait a minute" answer, which reads the latest code
    # of the last minute: an hour is plenty, then the row and its phone number go.
    KEPT_AFTER_EXPIRY = timedelta(hours=1)

    objects = LoginCodeQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["phone", "created_at"])]

    def __str__(self):
        return f"code for {self.phone} ({self.created_at:%Y-%m-%d %H:%M})"


def salted_digest(value: str) -> str:
    """A keyed digest (HMAC-SHA256 with SECRET_KEY) of something a bucket limits (a phone
    number, an IP address, a serial): the table names no number, and unlike a plain hash the
    digest of a number cannot be found by hashing the whole numbering plan."""
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"bucket:{value}".encode(), hashlib.sha256).hexdigest()[:40]


class TokenBucket(models.Model):
    """Rate limiting shared by every web process (healthchecks' TokenBucket): `value` names the
    thing limited by a kind and a salted digest ("login-phone:<salted_digest(phone)>"),
    `tokens` refill continuously. A bucket untouched for longer than its refill time is full,
    the same as no row: `prune` deletes those rows."""

    # The longest refill time of any bucket (login limits: 1 hour; charger claims: 15 min).
    IDLE_FULL_AFTER = timedelta(days=1)

    value = models.CharField(max_length=80, unique=True)
    tokens = models.FloatField(default=1.0)
    updated = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return self.value

    @staticmethod
    def authorize(value: str, capacity: int, refill_time_secs: int) -> bool:
        """Take one token from the bucket named `value`; False when it is empty. A full bucket
        holds `capacity` tokens and refills completely in `refill_time_secs`.

        healthchecks reads and saves without a lock and accepts that two concurrent requests may
        both pass; here the row is locked (SELECT … FOR UPDATE on PostgreSQL) so a burst of
        parallel requests cannot slip past a login limit."""
        now = timezone.now()
        with transaction.atomic():
            TokenBucket.objects.get_or_create(value=value, defaults={"updated": now})
            bucket = TokenBucket.objects.select_for_update().get(value=value)
            elapsed = max((now - bucket.updated).total_seconds(), 0.0)
            bucket.tokens = min(1.0, bucket.tokens + elapsed / refill_time_secs)
            bucket.tokens -= 1.0 / capacity
            if bucket.tokens < 0:
                return False
            bucket.updated = now
            bucket.save(update_fields=["tokens", "updated"])
            return True

    @staticmethod
    def prune(now: datetime | None = None) -> int:
        """Delete buckets idle long enough to be full again; returns how many."""
        cutoff = (now or timezone.now()) - TokenBucket.IDLE_FULL_AFTER
        deleted, _ = TokenBucket.objects.filter(updated__lt=cutoff).delete()
        return deleted
