"""Site meters and their readings: what power management measures (the grid connection point,
solar production, sub-loads). Meters are read over OCPP (a charger's or a standalone meter's
connector 0 / EVSE 0 MeterValues), Modbus TCP or MQTT; the readings are a bounded time series
(settings.METER_READINGS_DAYS). Power management reads them through `meters.readings`."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from communities.models import Community, Site, scoped_manager


class Meter(models.Model):
    class Kind(models.TextChoices):
        OCPP = "ocpp", _("OCPP main meter")
        MODBUS = "modbus", _("Modbus TCP")
        MQTT = "mqtt", _("MQTT")
        # The demo's stand-in, computed in-process by run_meters (meters.demo): never a real one.
        SIMULATED = "simulated", _("Simulated (demo)")

    class Role(models.TextChoices):
        GRID = "grid", _("Grid connection (import + / export −)")
        SOLAR = "solar", _("Solar production")
        BUILDING = "building", _("Building sub-load")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="meters")
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.GRID)
    # How to reach it, validated per kind by meters.forms (meters.config describes each kind).
    config = models.JSONField(_("configuration"), default=dict, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    # The time of its newest reading (never in the future): silence is judged against
    # settings.METER_SILENT_SECONDS, so an old replayed reading never passes for a live one.
    last_reading_at = models.DateTimeField(_("last reading"), null=True, blank=True)
    # What run_meters last saw going wrong (connection refused, bad payload), "" when fine.
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Moved by every save: run_meters reloads the meters whose configuration changed.
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("meter")
        ordering = ["site", "role", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="meter_unique_name"),
            # A site has one connection point: one enabled grid meter.
            models.UniqueConstraint(
                fields=["site"],
                condition=models.Q(role="grid", enabled=True),
                name="meter_one_grid_per_site",
            ),
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        # The readings' bookkeeping (last_reading_at, last_error) is not a configuration change.
        if update_fields is None or not set(update_fields) <= {"last_reading_at", "last_error"}:
            self.updated_at = timezone.now()
            if update_fields is not None and "updated_at" not in update_fields:
                kwargs["update_fields"] = [*update_fields, "updated_at"]
        super().save(*args, **kwargs)


class MeterReading(models.Model):
    """One reading: power per phase (W, signed: + import, − export; None when the phase is not
    measured), the total, currents and energy registers when the meter gives them."""

    id = models.BigAutoField(primary_key=True)
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="readings")
    # The meter's own time when it gives one (OCPP), else the arrival time.
    at = models.DateTimeField()
    power_w_l1 = models.FloatField(null=True, blank=True)
    power_w_l2 = models.FloatField(null=True, blank=True)
    power_w_l3 = models.FloatField(null=True, blank=True)
    power_w_total = models.FloatField()
    current_a_l1 = models.FloatField(null=True, blank=True)
    current_a_l2 = models.FloatField(null=True, blank=True)
    current_a_l3 = models.FloatField(null=True, blank=True)
    energy_import_wh = models.FloatField(null=True, blank=True)
    energy_export_wh = models.FloatField(null=True, blank=True)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("meter reading")
        ordering = ["meter", "at"]
        constraints = [
            # Also the (meter, at) index every read uses; a replayed reading is not stored twice.
            models.UniqueConstraint(fields=["meter", "at"], name="meter_reading_unique_at")
        ]

    def __str__(self):
        return f"{self.meter_id} {self.power_w_total:.0f} W at {self.at:%Y-%m-%d %H:%M:%S}"
