"""Rules of use: who may charge where, when and how much.

- `UserGroup(c)`: a named set of members (managed on the Users tab).
- `AccessPolicy(c)`: the access policy of a site or of one outlet (an outlet's own policy wins
  over its site's); without any policy every member may charge (the behaviour before rules).
- `TimeWindow(c)`: weekly windows of a policy, in the community's time zone.
- `UsageLimit(c)`: a member's optional limits (kWh per month, session duration).
- `RuleEvent(c)`: a refusal or a stop decided by a rule, with its reason, for the driver and the
  managers.
Every change goes through `rules.services`, which moves the community's access stamp so the
gateways apply it within seconds."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chargers.models import Charger, ChargerCommand, ChargingSession, Connector
from communities.models import Community, Site, scoped_manager


class UserGroup(models.Model):
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(_("name"), max_length=80)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+", verbose_name=_("members")
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("user group")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["community", "name"], name="user_group_unique_name")
        ]

    def __str__(self):
        return self.name


class Mode(models.TextChoices):
    MEMBERS = "members", _("All members")
    CHOSEN = "chosen", _("Chosen users or groups")
    FREE = "free", _("Free charging for anyone")
    NOBODY = "nobody", _("Nobody (out of service)")


class AccessPolicy(models.Model):
    """Who may charge on a site, or on one outlet (exactly one of the two is set)."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    site = models.OneToOneField(
        Site, null=True, blank=True, on_delete=models.CASCADE, related_name="access_policy"
    )
    connector = models.OneToOneField(
        Connector, null=True, blank=True, on_delete=models.CASCADE, related_name="access_policy"
    )
    mode = models.CharField(_("who may charge"), max_length=10, choices=Mode.choices)
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+", verbose_name=_("users")
    )
    groups: models.ManyToManyField[UserGroup, Any] = models.ManyToManyField(
        UserGroup, blank=True, related_name="policies", verbose_name=_("groups")
    )
    updated_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("access policy")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(site__isnull=False, connector__isnull=True)
                | models.Q(site__isnull=True, connector__isnull=False),
                name="policy_site_or_outlet",
            )
        ]

    def __str__(self):
        return f"{self.site or self.connector}: {self.mode}"


class TimeWindow(models.Model):
    """A weekly window: on `days` (ISO weekdays 1–7 as digits, e.g. "12345"), from `start` to
    `end` local time. An end at or before the start runs past midnight into the next day."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    policy = models.ForeignKey(AccessPolicy, on_delete=models.CASCADE, related_name="windows")
    days = models.CharField(_("days"), max_length=7)
    start = models.TimeField(_("from"))
    end = models.TimeField(_("to"))

    objects = scoped_manager()

    class Meta:
        ordering = ["days", "start"]

    def __str__(self):
        return f"{self.days} {self.start:%H:%M}–{self.end:%H:%M}"


class UsageLimit(models.Model):
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("user")
    )
    monthly_kwh = models.DecimalField(
        _("kWh per month"), max_digits=8, decimal_places=1, null=True, blank=True
    )
    session_minutes = models.PositiveIntegerField(
        _("session duration (minutes)"), null=True, blank=True
    )

    objects = scoped_manager()

    class Meta:
        verbose_name = _("usage limit")
        constraints = [
            models.UniqueConstraint(fields=["community", "user"], name="usage_limit_unique_user")
        ]

    def __str__(self):
        return f"{self.user}: {self.monthly_kwh} kWh, {self.session_minutes} min"


class Reason(models.TextChoices):
    """Why a rule refused or stopped a charge: shown to the driver and to managers."""

    UNKNOWN_CARD = "unknown_card", _("unknown card")
    CARD_BLOCKED = "card_blocked", _("card deactivated or holder no longer a member")
    CARD_EXPIRED = "card_expired", _("card expired")
    NOT_ALLOWED = "not_allowed", _("not allowed on this outlet")
    OUT_OF_SERVICE = "out_of_service", _("outlet out of service")
    OUTSIDE_HOURS = "outside_hours", _("outside charging hours")
    MONTHLY_LIMIT = "monthly_limit", _("monthly limit reached")
    SESSION_DURATION = "session_duration", _("maximum session duration reached")


class RuleEvent(models.Model):
    """A charge refused by a rule (Authorize, a start, a remote start), a session stopped by
    one (a limit reached), or a charge started offline that a rule would have refused, with its
    reason."""

    class Kind(models.TextChoices):
        REFUSED = "refused", _("Refused")
        STOPPED = "stopped", _("Stopped")
        # Started while the charger was offline with a card the rules would have refused:
        # recorded and shown to managers, never refused after the fact.
        OFFLINE = "offline", _("Started offline")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.REFUSED)
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    # What asked: Authorize, StartTransaction, TransactionEvent, RemoteStart, Limit.
    action = models.CharField(max_length=40, blank=True)
    at = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    charger = models.ForeignKey(
        Charger, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    uid = models.CharField(_("card UID"), max_length=36, blank=True)
    holder = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    session = models.ForeignKey(
        ChargingSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = scoped_manager()

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["community", "-at"])]

    def __str__(self):
        return f"{self.kind} {self.reason} at {self.at:%Y-%m-%d %H:%M}"


class LearnWindow(models.Model):
    """A few minutes during which the next card presented at one charger is offered to be
    given to one member (learn by scanning). The gateway records the presented UID (an `access`
    event of type "scan"); nothing becomes a card until someone confirms it in the portal."""

    class State(models.TextChoices):
        OPEN = "open", _("Waiting for a card")
        SCANNED = "scanned", _("Card presented")
        CONFIRMED = "confirmed", _("Card added")
        CANCELLED = "cancelled", _("Cancelled")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("for")
    )
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    opened_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    scanned_uid = models.CharField(_("card UID"), max_length=36, blank=True)
    scanned_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["charger", "state"])]

    def __str__(self):
        return f"learn {self.charger_id} for {self.user_id} ({self.state})"

    @property
    def expired(self) -> bool:
        return self.state == self.State.OPEN and timezone.now() >= self.expires_at

    @property
    def remaining_seconds(self) -> int:
        return max(0, int((self.expires_at - timezone.now()).total_seconds()))


class OfflineMode(models.TextChoices):
    KNOWN = "known", _("Allow known cards")
    EVERYONE = "everyone", _("Allow everyone")
    NOBODY = "nobody", _("Allow nobody")


class OfflinePolicy(models.Model):
    """What the chargers of a site do while they cannot reach Sparklin (none: known cards)."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="offline_policy")
    mode = models.CharField(
        _("while offline"), max_length=10, choices=OfflineMode.choices, default=OfflineMode.KNOWN
    )

    objects = scoped_manager()

    def __str__(self):
        return f"{self.site}: {self.mode}"


class LocalList(models.Model):
    """The local authorization list of one charger as Sparklin last had it accepted: its
    version and entries ({uid: status}); the list being sent (`pending_*`); the offline
    behaviour applied; whether the charger supports local lists at all."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    charger = models.OneToOneField(Charger, on_delete=models.CASCADE, related_name="local_list")
    version = models.PositiveIntegerField(_("list version"), default=0)
    entries = models.JSONField(default=dict, blank=True)
    pending_command = models.ForeignKey(
        ChargerCommand, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pending_version = models.PositiveIntegerField(default=0)
    pending_entries = models.JSONField(default=dict, blank=True)
    # None: not known yet; False: the charger answered NotSupported (or has no such feature).
    supported = models.BooleanField(null=True, blank=True)
    in_sync = models.BooleanField(default=False)
    offline_mode = models.CharField(
        max_length=10, blank=True, choices=OfflineMode.choices
    )  # what was last sent
    offline_command = models.ForeignKey(
        ChargerCommand, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    # Free charging as last applied (`rules.locallists`): "" off; "charger" the charger was
    # told to stop asking for cards (2.0.1 AuthCtrlr.Enabled false, 1.6 a vendor's free-vend
    # keys); "gateway" a 1.6 charger without such a setting, whose every card the gateway
    # accepts on its free outlets.
    free_vend = models.CharField(max_length=10, blank=True)
    free_vend_command = models.ForeignKey(
        ChargerCommand, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The version the charger itself reported (GetLocalListVersion, asked after each boot or
    # reconnection) and when: a version other than Sparklin's makes the next list a full one.
    reported_version = models.IntegerField(null=True, blank=True)
    version_command = models.ForeignKey(
        ChargerCommand, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    version_checked_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager()

    def __str__(self):
        return f"{self.charger_id} v{self.version}"

    @property
    def reported_differs(self) -> bool:
        """The charger reported another list version than Sparklin's (until a new list is
        accepted, which makes the report moot)."""
        if self.reported_version is None:
            return False
        return self.reported_version != self.version or self.last_error.startswith(
            "VersionMismatch"
        )
