"""Django admin for platform staff: meters across communities, their readings read-only."""

from django.contrib import admin

from .models import Meter, MeterReading


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    list_display = ["name", "site", "community", "kind", "role", "enabled", "last_reading_at"]
    list_filter = ["kind", "role", "enabled"]
    search_fields = ["name", "site__name", "community__name"]
    readonly_fields = ["last_reading_at", "last_error", "created_at", "updated_at"]


@admin.register(MeterReading)
class MeterReadingAdmin(admin.ModelAdmin):
    list_display = ["meter", "at", "power_w_total", "power_w_l1", "power_w_l2", "power_w_l3"]
    list_filter = ["meter__kind"]
    # A large table: no date hierarchy (its year/month query scans every row).
    raw_id_fields = ["meter"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
