"""Fleet operations from the charger page (`chargers.operations`): restart, unlock an outlet,
availability, reports, move and delete; and the download of the OCPP log's last 24 hours. Each POST asks a service and returns to the charger
page with a message; a hard restart and a deletion go through the confirmation pattern
(`sparklin/confirm.py`)."""

from django.contrib import messages
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from communities.permissions import community_permission, has_permission
from sparklin.confirm import Confirmation, confirm, render_confirmation
from sparklin.http import CommunityRequest

from .. import ocpp_log, operations
from ..forms import AvailabilityForm, MoveForm, ReportForm
from ..models import Charger, Connector
from ..services import ChargerError


def _to_page(community: str, charger: Charger) -> HttpResponse:
    url = reverse("chargers:charger-detail", kwargs={"community": community, "charger": charger.pk})
    return redirect(url + "#operations")


def _done(request: CommunityRequest, call, success: str) -> None:
    try:
        call()
    except ChargerError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, success)


@community_permission("chargers:operate")
@require_POST
def charger_reset(request: CommunityRequest, community: str, charger: int) -> HttpResponse:
    """A soft restart: the charger ends its sessions properly first, so no confirmation."""
    obj = get_object_or_404(Charger, pk=charger)
    _done(
        request,
        lambda: operations.request_reset(charger=obj, actor=request.user, hard=False),
        _("Restart asked: the charger's answer appears under Commands."),
    )
    return _to_page(community, obj)


@community_permission("chargers:operate")
def charger_reset_hard(request: CommunityRequest, community: str, charger: int) -> HttpResponse:
    obj = get_object_or_404(Charger, pk=charger)
    confirmation = Confirmation(
        title=_("Hard restart of %(charger)s") % {"charger": obj},
        consequences=[
            _("The charger reboots at once: charging sessions in progress stop immediately."),
            _("Drivers must plug in again to charge after the restart."),
        ],
        button=_("Restart now"),
        cancel_url=reverse(
            "chargers:charger-detail", kwargs={"community": community, "charger": obj.pk}
        ),
    )
    confirmed, form = confirm(request, confirmation)
    if not confirmed:
        return render_confirmation(request, confirmation, form)
    _done(
        request,
        lambda: operations.request_reset(charger=obj, actor=request.user, hard=True),
        _("Hard restart asked: the charger's answer appears under Commands."),
    )
    return _to_page(community, obj)


@community_permission("chargers:operate")
@require_POST
def outlet_unlock(
    request: CommunityRequest, community: str, charger: int, connector: int
) -> HttpResponse:
    obj = get_object_or_404(Charger, pk=charger)
    outlet = get_object_or_404(Connector, pk=connector, charger=obj)
    _done(
        request,
        lambda: operations.request_unlock(charger=obj, connector=outlet, actor=request.user),
        _("Unlock asked for outlet #%(n)s.") % {"n": outlet.connector_id},
    )
    return _to_page(community, obj)


@community_permission("chargers:operate")
@require_POST
def outlet_availability(
    request: CommunityRequest, community: str, charger: int, connector: int
) -> HttpResponse:
    obj = get_object_or_404(Charger, pk=charger)
    outlet = get_object_or_404(Connector, pk=connector, charger=obj)
    form = AvailabilityForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose available or unavailable."))
        return _to_page(community, obj)
    available = form.cleaned_data["available"]
    _done(
        request,
        lambda: operations.request_availability(
            charger=obj, connector=outlet, actor=request.user, available=available
        ),
        _("Availability change asked for outlet #%(n)s.") % {"n": outlet.connector_id},
    )
    return _to_page(community, obj)


@community_permission("chargers:operate")
@require_POST
def charger_report(request: CommunityRequest, community: str, charger: int) -> HttpResponse:
    obj = get_object_or_404(Charger, pk=charger)
    form = ReportForm(request.POST, charger=obj)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(str(e) for e in errors))
        return _to_page(community, obj)
    _done(
        request,
        lambda: operations.request_report(charger=obj, actor=request.user, **form.cleaned_data),
        _("Report asked: it appears on this page when the charger sends it."),
    )
    return _to_page(community, obj)


@community_permission("chargers:write")
def charger_move(request: CommunityRequest, community: str, charger: int) -> HttpResponse:
    obj: Charger = get_object_or_404(Charger.objects.select_related("site"), pk=charger)
    form = MoveForm(request.POST or None, charger=obj)
    if request.method == "POST" and form.is_valid():
        try:
            operations.move_charger(charger=obj, actor=request.user, **form.cleaned_data)
        except ChargerError as e:
            form.add_error(None, e.message)
        else:
            messages.success(
                request, _("Charger moved to %(site)s.") % {"site": form.cleaned_data["site"]}
            )
            return _to_page(community, obj)
    return render(request, "chargers/charger_move.html", {"charger": obj, "form": form})


@community_permission("chargers:write")
def charger_delete(request: CommunityRequest, community: str, charger: int) -> HttpResponse:
    obj: Charger = get_object_or_404(Charger.objects.select_related("site"), pk=charger)
    page = reverse("chargers:charger-detail", kwargs={"community": community, "charger": obj.pk})
    refusal = operations.deletion_refusal(obj)
    if refusal:
        messages.error(request, refusal)
        return redirect(page)
    confirmation = Confirmation(
        title=_("Delete the charger %(charger)s") % {"charger": obj},
        consequences=[
            _("Its outlets, commands and OCPP message log are deleted."),
            _("If it connects again, it is refused as an unknown charger."),
        ],
        button=_("Delete the charger"),
        cancel_url=page,
    )
    confirmed, form = confirm(request, confirmation)
    if not confirmed:
        return render_confirmation(request, confirmation, form)
    try:
        identity = operations.delete_charger(charger=obj, actor=request.user)
    except ChargerError as e:
        messages.error(request, e.message)
        return redirect(page)
    messages.success(request, _("Charger %(identity)s deleted.") % {"identity": identity})
    return redirect("communities:site-detail", community=community, site=obj.site_id)


@community_permission("chargers:view")
def charger_log_download(request: CommunityRequest, community: str, charger: int):
    """The last 24 hours of OCPP frames as JSON lines, streamed (for support); redacted for
    whoever may not see personal data, like the page."""
    obj = get_object_or_404(Charger, pk=charger)
    lines = ocpp_log.export_last_day(
        charger=obj, actor=request.user, redact=not has_permission(request, "sessions:view_all")
    )
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="{obj.identity}-ocpp-{stamp}.jsonl"'
    return response
