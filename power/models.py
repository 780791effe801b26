"""Power management: a site's electrical model (grid connection, circuits, how each charger is
wired), its modes (dynamic load balancing, solar balancing, peak shaving) and what the controller
(`python manage.py run_power`, `power.controller`) last decided and observed per charger.

Configuration and the controller's state live in separate columns of the same rows: the portal
writes the former through `power.services`, the controller only the latter (with `update()`),
so neither overwrites the other."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chargers.models import Charger
from communities.models import Community, Site, scoped_manager

# IEC 61851: a car cannot be told to charge below 6 A (the pilot signal's lowest duty cycle).
IEC_MIN_A = Decimal("6")


class Sharing(models.TextChoices):
    EQUAL = "equal", _("Equal share")
    FIRST_COME = "fcfs", _("First come, first served")


class SitePower(models.Model):
    """A site's grid connection and power-management modes. The site is *managed* (profiles
    are sent to its chargers) when at least one mode is on."""

    class Phases(models.IntegerChoices):
        ONE = 1, _("Single-phase")
        THREE = 3, _("Three-phase")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="power")
    phases = models.PositiveSmallIntegerField(
        _("phases"), choices=Phases.choices, default=Phases.THREE
    )
    voltage_v = models.PositiveSmallIntegerField(
        _("nominal voltage (V)"),
        default=230,
        validators=[MinValueValidator(100), MaxValueValidator(400)],
    )
    limit_a = models.DecimalField(
        _("limit per phase (A)"),
        max_digits=7,
        decimal_places=1,
        validators=[MinValueValidator(Decimal("1")), MaxValueValidator(Decimal("10000"))],
    )
    margin_a = models.DecimalField(
        _("safety margin (A)"),
        max_digits=6,
        decimal_places=1,
        default=Decimal("2"),
        validators=[MinValueValidator(Decimal("0"))],
    )
    load_balancing = models.BooleanField(_("dynamic load balancing"), default=False)
    solar = models.BooleanField(_("solar balancing"), default=False)
    solar_minimum = models.BooleanField(_("minimum + solar"), default=False)
    peak_shaving = models.BooleanField(_("peak shaving"), default=False)
    peak_limit_kw = models.DecimalField(
        _("peak cap (kW)"),
        max_digits=8,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
    )
    sharing = models.CharField(
        _("sharing"), max_length=10, choices=Sharing.choices, default=Sharing.EQUAL
    )
    updated_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("site power settings")

    def __str__(self):
        return f"{self.site}: {self.phases} × {self.limit_a} A"

    @property
    def managed(self) -> bool:
        return self.load_balancing or self.solar or self.peak_shaving

    @property
    def limit_kw(self) -> Decimal:
        """The connection's power at nominal voltage (what people compare with their contract)."""
        return (self.limit_a * self.voltage_v * self.phases / 1000).quantize(Decimal("0.1"))


class PeakWindow(models.Model):
    """A weekly window of peak shaving, in the community's local time (wall clock)."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    site_power = models.ForeignKey(SitePower, on_delete=models.CASCADE, related_name="windows")
    days = models.JSONField(_("days"), default=list)  # 0 = Monday … 6 = Sunday
    start = models.TimeField(_("from"))
    end = models.TimeField(_("until"))

    objects = scoped_manager()

    class Meta:
        verbose_name = _("peak-shaving window")
        ordering = ["start", "pk"]

    def __str__(self):
        return f"{self.days} {self.start:%H:%M}–{self.end:%H:%M}"


class Circuit(models.Model):
    """A fuse feeding some of a site's chargers, nested under the site or another circuit."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="circuits")
    name = models.CharField(_("name"), max_length=100)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        verbose_name=_("fed by"),
    )
    limit_a = models.DecimalField(
        _("limit per phase (A)"),
        max_digits=7,
        decimal_places=1,
        validators=[MinValueValidator(Decimal("1")), MaxValueValidator(Decimal("10000"))],
    )

    objects = scoped_manager()

    class Meta:
        verbose_name = _("circuit")
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="circuit_unique_name")]

    def __str__(self):
        return self.name


class Wiring(models.TextChoices):
    """Which site phases a charger draws on. A three-phase charger may be connected with its
    phases rotated (its L1 on the site's L2…), which tells where a single-phase car draws."""

    THREE = "l1l2l3", _("Three-phase (L1 L2 L3)")
    THREE_231 = "l2l3l1", _("Three-phase, rotated (L2 L3 L1)")
    THREE_312 = "l3l1l2", _("Three-phase, rotated (L3 L1 L2)")
    L1 = "l1", _("Single-phase on L1")
    L2 = "l2", _("Single-phase on L2")
    L3 = "l3", _("Single-phase on L3")


def site_phases_of(wiring: str, site_phases: int) -> tuple[int, ...]:
    """The site phases (0 = L1) the charger's own phases L1, L2, L3 are connected to, in the
    charger's order. On a single-phase connection everything is on L1."""
    if site_phases == 1:
        return (0,)
    return tuple(int(wiring[i + 1]) - 1 for i in range(0, len(wiring), 2))


@dataclass(frozen=True)
class DisobeyingOutlet:
    """An outlet drawing more than its limit for longer than POWER_OBEDIENCE_SECONDS."""

    outlet: str
    since: datetime
    draw_a: float | None
    limit_a: float | None
    several: bool  # the charger has other outlets in session (the page then names this one)


class ChargerPower(models.Model):
    """How a charger is wired and what it may draw (configuration), and what the controller
    last told it and saw it draw (state, written by `power.controller` only)."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    charger = models.OneToOneField(Charger, on_delete=models.CASCADE, related_name="power")
    circuit = models.ForeignKey(
        Circuit,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="chargers",
        verbose_name=_("circuit"),
    )
    wiring = models.CharField(
        _("wiring"), max_length=6, choices=Wiring.choices, default=Wiring.THREE
    )
    min_a = models.DecimalField(
        _("minimum current (A)"),
        max_digits=5,
        decimal_places=1,
        default=IEC_MIN_A,
        validators=[MinValueValidator(IEC_MIN_A)],
    )
    max_a = models.DecimalField(
        _("maximum current (A)"),
        max_digits=5,
        decimal_places=1,
        default=Decimal("32"),
        validators=[MinValueValidator(IEC_MIN_A), MaxValueValidator(Decimal("500"))],
    )

    # --- the controller's state ---------------------------------------------------------------
    # The dynamic limit last sent (A, 0 = paused), for which transaction, and until when it is
    # valid in the charger (after that the charger falls back to its failsafe limit).
    limit_a = models.FloatField(null=True, blank=True)
    limit_at = models.DateTimeField(null=True, blank=True)
    limit_until = models.DateTimeField(null=True, blank=True)
    limit_transaction = models.CharField(max_length=64, blank=True)
    # The dynamic limit of each outlet in session ({"1": 16.0, "2": 0.0}): a charger with
    # several outlets gets a TxProfile per outlet; `limit_a` is their sum.
    outlet_limits = models.JSONField(default=dict, blank=True)
    # The failsafe (default) limit stored in the charger, and when it was sent.
    failsafe_a = models.FloatField(null=True, blank=True)
    failsafe_at = models.DateTimeField(null=True, blank=True)
    # The charger's own maximum sent as a ChargePointMaxProfile / ChargingStationMaxProfile
    # (A, for the whole charger), and when.
    max_profile_a = models.FloatField(null=True, blank=True)
    max_profile_at = models.DateTimeField(null=True, blank=True)
    # What it was measured drawing (highest phase, A; and W), and when.
    draw_a = models.FloatField(null=True, blank=True)
    draw_w = models.FloatField(null=True, blank=True)
    draw_at = models.DateTimeField(null=True, blank=True)
    # Obedience per outlet in session: {"2": {"over": ISO time it went over its outlet's limit,
    # "since": ISO time it became non-compliant (absent: not yet), "draw": A}}; an outlet
    # within its limit has no entry. Only a non-compliant outlet leaves the sharing.
    outlet_obedience = models.JSONField(default=dict, blank=True)
    # The charger as a whole (the earliest of its outlets): drawing more than its limit since
    # (None: within it); non-compliant once that lasted longer than POWER_OBEDIENCE_SECONDS,
    # until it obeys again. What the dashboard and the charger page show.
    over_since = models.DateTimeField(null=True, blank=True)
    non_compliant_since = models.DateTimeField(null=True, blank=True)
    # It answered a charging profile with a refusal (or an error): left out of the sharing.
    rejected_at = models.DateTimeField(null=True, blank=True)
    # Fair rotation: since when its session runs, or waits paused.
    running_since = models.DateTimeField(null=True, blank=True)
    paused_since = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("charger power settings")

    def __str__(self):
        return f"{self.charger}: {self.min_a}–{self.max_a} A"

    STATE_FIELDS = (
        "limit_a",
        "limit_at",
        "limit_until",
        "limit_transaction",
        "outlet_limits",
        "failsafe_a",
        "failsafe_at",
        "max_profile_a",
        "max_profile_at",
        "draw_a",
        "draw_w",
        "draw_at",
        "outlet_obedience",
        "over_since",
        "non_compliant_since",
        "rejected_at",
        "running_since",
        "paused_since",
    )

    def disobeying_outlets(self) -> list[DisobeyingOutlet]:
        """The outlets found non-compliant, oldest first (what the Power page's alert names)."""
        found = []
        for outlet, entry in (self.outlet_obedience or {}).items():
            if not entry.get("since"):
                continue
            limits = self.outlet_limits or {}
            limit = limits.get(outlet, self.limit_a)
            found.append(
                DisobeyingOutlet(
                    outlet=outlet,
                    since=datetime.fromisoformat(entry["since"]),
                    draw_a=entry.get("draw"),
                    limit_a=float(limit) if limit is not None else None,
                    several=len(limits) > 1,
                )
            )
        if not found and self.non_compliant_since is not None:
            # Flagged as a whole (a row the controller has not judged per outlet yet).
            return [
                DisobeyingOutlet("1", self.non_compliant_since, self.draw_a, self.limit_a, False)
            ]
        return sorted(found, key=lambda d: (d.since, d.outlet))


class PowerSample(models.Model):
    """What the controller saw and allowed on a site, every POWER_HISTORY_SECONDS: the Power
    page's chart. Kept POWER_HISTORY_HOURS (the controller purges older rows)."""

    id = models.BigAutoField(primary_key=True)
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()
    grid_w = models.FloatField(null=True, blank=True)
    chargers_w = models.FloatField(default=0)
    solar_w = models.FloatField(null=True, blank=True)
    limit_w = models.FloatField(default=0)
    failsafe = models.BooleanField(default=False)

    objects = scoped_manager()

    class Meta:
        ordering = ["site", "at"]
        indexes = [models.Index(fields=["site", "at"])]

    def __str__(self):
        return f"{self.site_id} at {self.at:%H:%M:%S}"
