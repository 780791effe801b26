"""Communities are the tenants. Every tenant-owned row carries a direct `community` key and a
`ScopedManager`, so a query made outside `scope(community=...)` raises instead of leaking."""

import zoneinfo

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_scopes import ScopedManager


def scoped_manager(queryset_class=None):
    """The one manager of every tenant-owned model: filters on the active community scope.
    `queryset_class` adds the model's reusable reads (`Membership.objects.current()`)."""
    if queryset_class is None:
        return ScopedManager(community="community")
    return ScopedManager(models.Manager.from_queryset(queryset_class), community="community")


TIME_ZONE_CHOICES = [(tz, tz) for tz in sorted(zoneinfo.available_timezones()) if "/" in tz]


class Community(models.Model):
    class Kind(models.TextChoices):
        HOME = "home", _("Home")
        CONDOMINIUM = "condominium", _("Condominium")
        COMPANY = "company", _("Company")

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("short name"), max_length=60, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.COMPANY)
    address = models.TextField(_("address"), blank=True)
    time_zone = models.CharField(
        _("time zone"), max_length=64, choices=TIME_ZONE_CHOICES, default="Europe/Paris"
    )
    currency = models.CharField(_("currency"), max_length=3, default="EUR")
    expense_email = models.EmailField(_("expense-note recipient"), blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Installations created by an installer company for someone else: who installed it, and
    # when its first owner accepted the hand-over (None until then).
    installer = models.ForeignKey(
        "InstallerCompany",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="installations",
        verbose_name=_("installer company"),
    )
    handed_over_at = models.DateTimeField(_("handed over"), null=True, blank=True)

    class Meta:
        verbose_name = _("community")
        verbose_name_plural = _("communities")
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def tz(self):
        return zoneinfo.ZoneInfo(self.time_zone)


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    MANAGER = "manager", _("Manager")
    INDIVIDUAL = "individual", _("Individual")


class MembershipQuerySet(models.QuerySet):
    def current(self):
        """Memberships in force: invited or active, not ended (the person left or was removed).
        The one definition of "a current member" (portal access, cards, lists, services)."""
        return self.exclude(state=Membership.State.LEFT)

    def of(self, community, user):
        """`user`'s membership rows in `community` (at most one)."""
        return self.filter(community=community, user=user)


class Membership(models.Model):
    class State(models.TextChoices):
        INVITED = "invited", _("Invited")
        ACTIVE = "active", _("Active")
        LEFT = "left", _("Left")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.INDIVIDUAL)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    left_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager(MembershipQuerySet)

    class Meta:
        verbose_name = _("membership")
        constraints = [
            models.UniqueConstraint(fields=["community", "user"], name="membership_unique_user")
        ]

    def __str__(self):
        return f"{self.user} in {self.community} ({self.role})"


class Site(models.Model):
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="sites")
    name = models.CharField(_("name"), max_length=200)
    address = models.TextField(_("address"), blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("site")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["community", "name"], name="site_unique_name")
        ]

    def __str__(self):
        return self.name


class AuditEvent(models.Model):
    """Who did what to what, when: written by services, read by owners and platform staff."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=80)
    target = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["-at"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.target}"


class InstallerCompany(models.Model):
    """An installer company (a "user group"): its members create installations for others and
    support every charger the company installed. Global; platform staff create it and its first
    member in the Django admin, a company admin adds the others in the portal."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("installer company")
        verbose_name_plural = _("installer companies")
        ordering = ["name"]

    def __str__(self):
        return self.name


class InstallerMember(models.Model):
    company = models.ForeignKey(InstallerCompany, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="installer_memberships"
    )
    is_admin = models.BooleanField(_("company admin"), default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("installer company member")
        constraints = [
            models.UniqueConstraint(fields=["company", "user"], name="installer_member_unique")
        ]

    def __str__(self):
        return f"{self.user} @ {self.company}"


def valid_grant_q(at=None, prefix: str = "") -> models.Q:
    """The grants in force at `at` (now): not revoked, started, not yet expired. `prefix`
    reaches them through a relation (e.g. "grants__")."""
    at = at or timezone.now()
    return models.Q(**{f"{prefix}revoked_at__isnull": True, f"{prefix}valid_from__lte": at}) & (
        models.Q(**{f"{prefix}valid_until__isnull": True})
        | models.Q(**{f"{prefix}valid_until__gt": at})
    )


class AccessGrant(models.Model):
    """An installer company's access to a community. Several grants may be in force at once;
    the strongest wins (see `communities.access`). At hand-over the company gets *full* access
    for 14 days and *limited* access without end; the owner can add *sensitive data* access
    (everything a full grant gives) for a period or until revoked."""

    class Scope(models.TextChoices):
        FULL = "full", _("Full access")
        LIMITED = "limited", _("Limited access (charger health, configuration, message log)")
        SENSITIVE = "sensitive", _("Access to sensitive data")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="access_grants")
    company = models.ForeignKey(InstallerCompany, on_delete=models.CASCADE, related_name="grants")
    scope = models.CharField(_("scope"), max_length=20, choices=Scope.choices)
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("installer access grant")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.company} → {self.community}: {self.scope}"

    def is_valid(self, at=None) -> bool:
        at = at or timezone.now()
        return (
            self.revoked_at is None
            and self.valid_from <= at
            and (self.valid_until is None or self.valid_until > at)
        )


class Invitation(models.Model):
    """A single-use, expiring link that makes its acceptor a member with `role` (hand-over and
    ownership transfer invite an owner). Only a hash of the token is stored: the link is shown
    once to whoever created it (and sent by e-mail / SMS)."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.OWNER)
    email = models.EmailField(_("e-mail"), blank=True)
    phone = models.CharField(_("phone number"), max_length=32, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("invitation")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.role} invitation to {self.community}"

    @property
    def is_open(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )


class AccessRequest(models.Model):
    """A driver without access asks an installation's managers to let them charge."""

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        ACCEPTED = "accepted", _("Accepted")
        REFUSED = "refused", _("Refused")

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="access_requests"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_requests"
    )
    message = models.TextField(_("message"), blank=True, max_length=1000)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = scoped_manager()

    class Meta:
        verbose_name = _("access request")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.user} → {self.community} ({self.state})"
