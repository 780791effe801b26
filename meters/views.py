"""The site's meters in the portal: add, edit, remove (the list is a section of the site page,
templates/meters/_site_meters.html)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _

from communities.models import Site
from communities.permissions import community_permission
from sparklin.confirm import Confirmation, confirm, render_confirmation

from . import services
from .forms import MeterForm
from .models import Meter

FIELDS = ("name", "kind", "role", "config", "enabled")


def _site_url(community, site_id):
    return reverse("communities:site-detail", kwargs={"community": community, "site": site_id})


@community_permission("sites:write")
def meter_add(request, community, site):
    site = get_object_or_404(Site, pk=site)
    form = MeterForm(request.POST or None, site=site)
    if request.method == "POST" and form.is_valid():
        try:
            services.create_meter(
                site=site, actor=request.user, **{k: form.cleaned_data[k] for k in FIELDS}
            )
        except services.MeterError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Meter added."))
            return redirect(_site_url(community, site.pk))
    return render(request, "meters/meter_form.html", {"form": form, "site": site})


@community_permission("sites:write")
def meter_edit(request, community, meter):
    meter = get_object_or_404(Meter.objects.select_related("site"), pk=meter)
    form = MeterForm(request.POST or None, site=meter.site, meter=meter)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_meter(
                meter=meter, actor=request.user, **{k: form.cleaned_data[k] for k in FIELDS}
            )
        except services.MeterError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Changes saved."))
            return redirect(_site_url(community, meter.site_id))
    context = {"form": form, "site": meter.site, "meter": meter}
    return render(request, "meters/meter_form.html", context)


@community_permission("sites:write")
def meter_delete(request, community, meter):
    meter = get_object_or_404(Meter, pk=meter)
    site_url = _site_url(community, meter.site_id)
    confirmation = Confirmation(
        title=_("Remove this meter"),
        question=_("Remove the meter %(name)s?") % {"name": meter.name},
        consequences=[_("Its readings are deleted; power management no longer sees it.")],
        button=_("Remove the meter"),
        cancel_url=site_url,
    )
    confirmed, form = confirm(request, confirmation)
    if not confirmed:
        return render_confirmation(request, confirmation, form)
    try:
        services.delete_meter(meter=meter, actor=request.user)
    except services.MeterError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("Meter removed."))
    return redirect(site_url)
