"""Notifications: what managers and drivers are told by e-mail or SMS, and what they chose.

- `Preference`: a person's choice per kind (e-mail, SMS); no row = the defaults (`KINDS`).
  Global like the person (a manager of two installations chooses once).
- `CommunityNotifications(c)`: an installation's settings (minutes offline before a charger
  is announced).
- `Notification(c)`: one thing to tell one person on one channel. Unique on (recipient,
  channel, kind, key) — `key` names the fact (a refusal, a session, an outage) — so a task run
  twice or a fact seen twice never makes a second row, hence never a second message. Rows of
  one (community, recipient, kind, channel) due together go out as one message (a digest)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from communities.models import Community, scoped_manager


class Kind(models.TextChoices):
    ACCESS_REQUEST = "access_request", _("A driver asks for access")
    REFUSED = "refused", _("A charge was refused by a rule")
    CHARGER_OFFLINE = "charger_offline", _("A charger is offline (and back online)")
    SESSION_ENDED = "session_ended", _("My charging session ended")
    SESSION_STOPPED = "session_stopped", _("My session was stopped by a rule")


class Channel(models.TextChoices):
    EMAIL = "email", _("E-mail")
    SMS = "sms", _("SMS")


@dataclass(frozen=True)
class KindInfo:
    """Who a kind is for (a permission string of `communities.permissions`, or None: the
    driver concerned) and its defaults: e-mail on, SMS off — SMS cost money and share the
    installation's SMS budget (`accounts.sms_limits`) with invitations, so people opt in."""

    permission: str | None
    email: bool = True
    sms: bool = False


KINDS: dict[str, KindInfo] = {
    Kind.ACCESS_REQUEST: KindInfo("access_requests:decide"),
    Kind.REFUSED: KindInfo("rules:manage"),
    Kind.CHARGER_OFFLINE: KindInfo("chargers:write"),
    Kind.SESSION_ENDED: KindInfo(None),
    Kind.SESSION_STOPPED: KindInfo(None),
}
MANAGER_KINDS = [k for k, info in KINDS.items() if info.permission]
DRIVER_KINDS = [k for k, info in KINDS.items() if not info.permission]


class Preference(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    email = models.BooleanField(_("e-mail"))
    sms = models.BooleanField(_("SMS"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("notification preference")
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="notification_preference_unique")
        ]

    def __str__(self):
        return f"{self.user_id} {self.kind}: email={self.email} sms={self.sms}"


class CommunityNotifications(models.Model):
    """An installation's notification settings; no row = the defaults."""

    community = models.OneToOneField(
        Community, on_delete=models.CASCADE, related_name="notification_settings"
    )
    # A charger not connected for this long is announced to the managers; 0: never.
    offline_minutes = models.PositiveIntegerField(_("charger offline after (minutes)"))
    updated_at = models.DateTimeField(auto_now=True)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("notification settings")

    def __str__(self):
        return f"{self.community_id}: offline after {self.offline_minutes} min"


class Notification(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", _("Waiting")
        SENDING = "sending", _("Being sent")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        # Refused by the SMS limits (country, per number, per installation): kept, not retried.
        REFUSED = "refused", _("Not sent (SMS limits)")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # The fact told: "rule_event:<pk>", "access_request:<pk>", "session:<pk>",
    # "offline:<charger pk>:<epoch>", "online:<charger pk>:<epoch>".
    key = models.CharField(max_length=80)
    # What the message says about it, captured when the fact was seen (plain JSON).
    data = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    # Not sent before this (the throttle gathers what happens meanwhile into one message).
    send_after = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("notification")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "channel", "kind", "key"], name="notification_unique_fact"
            )
        ]
        indexes = [
            # The dispatcher's look for what is due (a small partial index: sent rows leave it).
            models.Index(
                fields=["send_after"],
                condition=models.Q(state__in=["pending", "sending"]),
                name="notification_due",
            ),
            # The throttle's look for the last message of a group.
            models.Index(
                fields=["recipient", "kind", "channel", "-sent_at"], name="notification_last_sent"
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.key} → {self.recipient_id} ({self.channel}, {self.state})"
