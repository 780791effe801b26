"""Django admin for platform staff: sites' power settings, circuits, and the controller's view
of each charger (its state read-only: the controller writes it)."""

from django.contrib import admin

from .models import ChargerPower, Circuit, SitePower


@admin.register(SitePower)
class SitePowerAdmin(admin.ModelAdmin):
    list_display = [
        "site",
        "community",
        "phases",
        "limit_a",
        "load_balancing",
        "solar",
        "peak_shaving",
    ]
    list_filter = ["load_balancing", "solar", "peak_shaving"]
    search_fields = ["site__name", "community__name"]


@admin.register(Circuit)
class CircuitAdmin(admin.ModelAdmin):
    list_display = ["name", "site", "parent", "limit_a"]
    search_fields = ["name", "site__name"]


@admin.register(ChargerPower)
class ChargerPowerAdmin(admin.ModelAdmin):
    list_display = [
        "charger",
        "wiring",
        "min_a",
        "max_a",
        "limit_a",
        "draw_a",
        "non_compliant_since",
        "rejected_at",
    ]
    list_filter = ["wiring"]
    search_fields = ["charger__identity"]
    readonly_fields = list(ChargerPower.STATE_FIELDS)
