"""Price history and exports."""

import io

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from communities.permissions import community_permission

from . import services
from .exports import write_sessions_csv
from .forms import ExportForm, PriceForm


@community_permission("community:manage")
@require_POST
def price_add(request, community):
    form = PriceForm(request.POST)
    if form.is_valid():
        try:
            services.set_price(community=request.community, actor=request.user, **form.cleaned_data)
        except services.BillingError as e:
            messages.error(request, e.message)
        else:
            messages.success(
                request, _("New price saved. Sessions already recorded keep their price.")
            )
    else:
        for field, errors in form.errors.items():
            messages.error(
                request,
                f"{form.fields[field].label}: {' '.join(errors)}"
                if field in form.fields
                else " ".join(errors),
            )
    return redirect("communities:settings", community=community)


@community_permission("exports:run")
def export_list(request, community):
    return render(request, "billing/export_list.html", {"form": ExportForm()})


@community_permission("exports:run")
def export_sessions(request, community):
    form = ExportForm(request.GET)
    if not form.is_valid():
        return render(request, "billing/export_list.html", {"form": form}, status=400)
    year, month = form.cleaned_data["month"]
    out = io.StringIO()
    write_sessions_csv(out, community=request.community, year=year, month=month)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    filename = f"sessions-{request.community.slug}-{year:04d}-{month:02d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
