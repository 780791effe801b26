"""Django admin for platform staff: the charger inventory, with a CSV import (the same as
`python manage.py import_inventory FILE`)."""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .inventory import InventoryError, import_inventory_csv
from .models import InventoryCharger, QuarantinedEvents


class InventoryImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header line: serial,pin,vendor,model")


@admin.register(InventoryCharger)
class InventoryChargerAdmin(admin.ModelAdmin):
    list_display = ["serial", "vendor", "model", "imported_at", "claimed_at", "charger"]
    list_filter = ["vendor"]
    search_fields = ["serial"]
    readonly_fields = ["pin_hash", "claimed_at", "claimed_by", "charger"]
    change_list_template = "admin/chargers/inventorycharger/change_list.html"

    def get_urls(self):
        custom = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_csv),
                name="chargers_inventorycharger_import",
            )
        ]
        return custom + super().get_urls()

    def import_csv(self, request):
        form = InventoryImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                counts = import_inventory_csv(form.cleaned_data["file"].read().decode("utf-8"))
            except (InventoryError, UnicodeDecodeError) as e:
                messages.error(request, str(e))
            else:
                messages.success(
                    request,
                    f"{counts['created']} created, {counts['updated']} updated, "
                    f"{counts['skipped']} already claimed",
                )
                return redirect("admin:chargers_inventorycharger_changelist")
        context = {**self.admin_site.each_context(request), "form": form, "title": "Import CSV"}
        return render(request, "admin/chargers/inventorycharger/import.html", context)


@admin.register(QuarantinedEvents)
class QuarantinedEventsAdmin(admin.ModelAdmin):
    """Events the worker could not record, per charger, with their error: retry them once the
    cause is fixed (a new release, a corrected charger), or mark them resolved."""

    list_display = ["charger", "community", "cause", "short_error", "count", "last_at", "state"]
    list_filter = ["state", "cause"]
    search_fields = ["charger__identity", "error"]
    readonly_fields = [
        "community",
        "charger",
        "cause",
        "error",
        "events",
        "count",
        "first_at",
        "last_at",
        "attempts",
        "resolved_at",
    ]
    actions = ["retry", "mark_resolved"]

    def get_queryset(self, request):
        return QuarantinedEvents.objects.with_scopes_disabled().select_related(
            "charger", "community"
        )

    def has_add_permission(self, request):
        return False

    @admin.display(description=_("error"))
    def short_error(self, obj):
        return obj.error[:120]

    @admin.action(description=_("Retry the selected events"))
    def retry(self, request, queryset):
        from django_scopes import scope

        from .services import ChargerError, retry_quarantined_events

        queued = 0
        by_charger: dict[int, list] = {}
        for entry in queryset.filter(state=QuarantinedEvents.State.OPEN):
            by_charger.setdefault(entry.charger_id, []).append(entry)
        for entries in by_charger.values():
            charger = entries[0].charger
            with scope(community=charger.community):
                try:
                    queued += retry_quarantined_events(
                        charger=charger, actor=request.user, entries=entries
                    )
                except ChargerError as e:
                    messages.warning(request, e.message)
        messages.success(request, _("Retry queued for %(count)d entries.") % {"count": queued})

    @admin.action(description=_("Mark the selected events resolved"))
    def mark_resolved(self, request, queryset):
        count = queryset.exclude(state=QuarantinedEvents.State.RESOLVED).update(
            state=QuarantinedEvents.State.RESOLVED, resolved_at=timezone.now()
        )
        messages.success(request, _("%(count)d entries marked resolved.") % {"count": count})
