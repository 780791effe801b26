"""The Power page of a site: live chart and limits (an htmx-polled region), alerts, and the
electrical model's configuration (grid connection and modes, circuits, each charger's wiring)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from chargers.models import Charger
from communities.models import Site
from communities.permissions import community_permission, has_permission
from sparklin.http import CommunityRequest
from sparklin.live import render_live

from . import selectors, services
from .forms import (
    ChargerSearchForm,
    CircuitForm,
    charger_power_form,
    site_power_form,
    window_formset,
)
from .models import Circuit

TEMPLATE = "power/site_power.html"


CHARGERS_PER_PAGE = 50


def _live(site: Site, request: CommunityRequest) -> dict[str, Any]:
    """The live region: the chart, the alerts, the meter and one page of chargers (a fixed
    number of queries whatever the site's size)."""
    search_form = ChargerSearchForm(request.GET)
    search = search_form.search()
    page = Paginator(selectors.site_chargers(site, search), CHARGERS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    meter, silent = selectors.grid_meter(site)
    query = request.GET.copy()
    query.pop("fp", None)
    poll_query = query.urlencode()  # the poll shows the same page
    query.pop("page", None)
    return {
        "site": site,
        "lines": selectors.charger_lines(site, page),
        "page": page,
        "query": query.urlencode(),
        "poll_query": poll_query,
        "search_form": search_form,
        "can_edit": has_permission(request, "power:write"),
        "chart": selectors.history_chart(site, request.community),
        "latest": selectors.latest_sample(site),
        "alerts": selectors.alerts(site),
        "meter": meter,
        "meter_silent": silent,
    }


def _page(request: CommunityRequest, site: Site, **forms: Any) -> dict[str, Any]:
    power = selectors.site_power(site)
    context: dict[str, Any] = {
        "power": power,
        "circuits": Circuit.objects.filter(site=site),
    }
    if has_permission(request, "power:write"):
        context["site_form"] = forms.get("site_form") or site_power_form(power)
        context["windows"] = forms.get("windows") or window_formset(power)
        context["circuit_form"] = forms.get("circuit_form") or CircuitForm(site=site)
    return context


def _token(site: Site, request: CommunityRequest) -> tuple[str, dict[str, Any] | None]:
    """The live region's change token (one query) and, where there is no cheap token (SQLite),
    the region's context it was computed from."""
    token = selectors.live_token(site)
    if token is not None:
        return token, None
    data = _live(site, request)
    return selectors.live_fingerprint(site, selectors.charger_lines(site)), data


@community_permission("power:view")
def site_power(request: CommunityRequest, community: str, site: int) -> HttpResponse:
    """The page, or its live region for an htmx poll (204 while nothing changed)."""
    found = get_object_or_404(Site, pk=site)
    fp, data = _token(found, request)
    return render_live(
        request,
        TEMPLATE,
        "power-live",
        data if data is not None else (lambda: _live(found, request)),
        fp,
        page_extra=lambda: _page(request, found),
    )


def _render_invalid(request: CommunityRequest, site: Site, **forms: Any) -> HttpResponse:
    fp, data = _token(site, request)
    context = {**(data or _live(site, request)), **_page(request, site, **forms), "fingerprint": fp}
    return render(request, TEMPLATE, context, status=400)


@community_permission("power:write")
@require_POST
def site_power_edit(request: CommunityRequest, community: str, site: int) -> HttpResponse:
    found = get_object_or_404(Site, pk=site)
    power = selectors.site_power(found)
    form, windows = site_power_form(power, request.POST), window_formset(power, request.POST)
    if form.is_valid() and windows.is_valid():
        chosen = [w for w in (f.window() for f in windows.forms) if w is not None]
        try:
            services.configure_site(
                site=found, actor=request.user, windows=chosen, **form.cleaned_data
            )
        except services.PowerError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Power settings saved."))
            return redirect("power:site-power", community=community, site=found.pk)
    return _render_invalid(request, found, site_form=form, windows=windows)


@community_permission("power:write")
@require_POST
def circuit_add(request: CommunityRequest, community: str, site: int) -> HttpResponse:
    found = get_object_or_404(Site, pk=site)
    form = CircuitForm(request.POST, site=found)
    if form.is_valid():
        try:
            services.save_circuit(site=found, actor=request.user, **form.cleaned_data)
        except services.PowerError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Circuit saved."))
            return redirect("power:site-power", community=community, site=found.pk)
    return _render_invalid(request, found, circuit_form=form)


@community_permission("power:write")
@require_POST
def circuit_delete(
    request: CommunityRequest, community: str, site: int, circuit: int
) -> HttpResponse:
    found = get_object_or_404(Circuit, pk=circuit, site_id=site)
    try:
        services.delete_circuit(circuit=found, actor=request.user)
    except services.PowerError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("Circuit removed."))
    return redirect("power:site-power", community=community, site=site)


@community_permission("power:write")
def charger_power_edit(
    request: CommunityRequest, community: str, site: int, charger: int
) -> HttpResponse:
    """One charger's wiring and currents, on its own small page (the Power page lists the
    chargers a page at a time, each with a link here)."""
    found: Charger = get_object_or_404(
        Charger.objects.select_related("site"), pk=charger, site_id=site
    )
    power = selectors.charger_power(found)
    prefix = f"c{found.pk}"
    if request.method != "POST":
        form = charger_power_form(found.site, power, prefix=prefix)
        return _charger_page(request, found, form)
    form = charger_power_form(found.site, None, request.POST, prefix=prefix)
    if form.is_valid():
        try:
            services.configure_charger(charger=found, actor=request.user, **form.cleaned_data)
        except services.PowerError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Settings of %(charger)s saved.") % {"charger": found})
            back = reverse("power:site-power", kwargs={"community": community, "site": site})
            page = request.POST.get("page", "")
            return redirect(f"{back}?page={page}" if page.isdigit() else back)
    return _charger_page(request, found, form, status=400)


def _charger_page(
    request: CommunityRequest, charger: Charger, form: Any, status: int = 200
) -> HttpResponse:
    page = request.POST.get("page") or request.GET.get("page") or ""
    context = {
        "site": charger.site,
        "charger": charger,
        "form": form,
        "page_number": page if page.isdigit() else "",  # the Power page's page to go back to
    }
    return render(request, "power/charger_power_form.html", context, status=status)
