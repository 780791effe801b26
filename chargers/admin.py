"""Django admin for platform staff: the charger inventory, with a CSV import (the same as
`python manage.py import_inventory FILE`)."""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect, render
from django.urls import path

from .inventory import InventoryError, import_inventory_csv
from .models import InventoryCharger


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
