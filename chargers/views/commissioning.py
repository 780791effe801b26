"""Commissioning: claiming a charger by serial + PIN, the live commissioning page (connection,
OCPP version, firmware, connectors, gateway address and credentials, what the gateway refused),
and the charger's configuration (read at connection, changed through commands)."""

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from communities.models import Site
from communities.permissions import community_permission
from sparklin.http import CommunityRequest
from sparklin.live import fingerprint, render_live

from .. import inventory, selectors, services
from ..forms import ClaimForm, ConfigurationForm
from ..models import Charger, UnknownCharger

_SESSION_PASSWORD = "charger_password"


@community_permission("chargers:write")
def charger_claim(request: CommunityRequest, community, site):
    site = get_object_or_404(Site, pk=site)
    form = ClaimForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            charger = inventory.claim_charger(
                site=site,
                actor=request.user,
                company=request.installer_company,
                **form.cleaned_data,
            )
        except services.ChargerError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Charger %(identity)s added.") % {"identity": charger})
            return redirect(
                "chargers:charger-commissioning", community=community, charger=charger.pk
            )
    return render(request, "chargers/charger_claim.html", {"form": form, "site": site})


def _commissioning_context(charger):
    refusals = UnknownCharger.objects.filter(identity=charger.identity).order_by("-last_seen")
    return {
        "charger": charger,
        "connectors": list(charger.connectors.all()),
        "refusals": list(refusals),
        "gateway_url": settings.GATEWAY_PUBLIC_URL,
    }


def _fingerprint(context) -> str:
    c = context["charger"]
    return fingerprint(
        c.connected, c.ocpp_version, c.firmware_version, c.last_seen, c.password_hash[-8:],
        [(x.pk, x.status) for x in context["connectors"]],
        [(r.reason, r.attempts, r.last_seen) for r in context["refusals"]],
    )  # fmt: skip


@community_permission("chargers:configure")
def charger_commissioning(request: CommunityRequest, community, charger):
    """Live: polls a small partial every 3 s and gets 204 while nothing changed."""
    charger = get_object_or_404(Charger.objects.select_related("site"), pk=charger)
    context = _commissioning_context(charger)
    return render_live(
        request,
        "chargers/charger_commissioning.html",
        "commissioning-status",
        context,
        _fingerprint(context),
        # The generated password is shown once, on the whole page (never in a poll).
        page_extra=None
        if request.htmx
        else {"new_password": request.session.pop(_SESSION_PASSWORD, None)},
    )


@community_permission("chargers:write")
@require_POST
def charger_password(request: CommunityRequest, community, charger):
    charger = get_object_or_404(Charger, pk=charger)
    password = services.generate_charger_password(charger=charger, actor=request.user)
    request.session[_SESSION_PASSWORD] = password  # shown once, on the next page
    return redirect("chargers:charger-commissioning", community=community, charger=charger.pk)


@community_permission("chargers:configure")
def charger_configuration(request: CommunityRequest, community: str, charger: int) -> HttpResponse:
    obj = get_object_or_404(Charger, pk=charger)
    form = ConfigurationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.change_configuration(charger=obj, actor=request.user, **form.cleaned_data)
        except services.ChargerError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Sent to the charger: its answer appears below."))
            return redirect("chargers:charger-configuration", community=community, charger=obj.pk)
    return render_live(
        request,
        "chargers/charger_configuration.html",
        "configuration-live",
        lambda: {
            "charger": obj,
            "form": form,
            "commands": list(obj.commands.select_related("asked_by")[:15]),
            "configuration": sorted((obj.configuration or {}).items()),
        },
        selectors.configuration_token(obj),
    )


@community_permission("chargers:configure")
@require_POST
def charger_reconfigure(request: CommunityRequest, community, charger):
    charger = get_object_or_404(Charger, pk=charger)
    services.reconfigure(charger=charger, actor=request.user)
    messages.success(request, _("The charger will be read and configured again."))
    return redirect("chargers:charger-configuration", community=community, charger=charger.pk)
