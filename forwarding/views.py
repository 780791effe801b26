"""The operators of a charger: connect, see their state and the frames relayed, test the
connection, disconnect. Reached from the charger page (`_charger_operators.html`)."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from chargers.models import Charger
from communities.permissions import community_permission
from sparklin.http import CommunityRequest
from sparklin.live import render_live

from . import secrets, services
from .forms import OperatorEditForm, OperatorForm
from .models import OperatorConnection
from .probe import probe

PAGE = ("forwarding/operator_detail.html", "operator-state")


@community_permission("operators:manage")
def operator_add(request: CommunityRequest, community: str, charger: int) -> HttpResponse:
    found = get_object_or_404(Charger, pk=charger)
    form = OperatorForm(request.POST or None, initial={"identity": found.identity})
    if request.method == "POST" and form.is_valid():
        try:
            operator = services.connect_operator(
                charger=found, actor=request.user, **form.cleaned()
            )
        except services.ForwardingError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Operator connected: forwarding starts within seconds."))
            return redirect(
                "forwarding:operator-detail",
                community=community,
                charger=found.pk,
                operator=operator.pk,
            )
    return render(request, "forwarding/operator_form.html", {"form": form, "charger": found})


@community_permission("operators:manage")
def operator_edit(
    request: CommunityRequest, community: str, charger: int, operator: int
) -> HttpResponse:
    op: OperatorConnection = get_object_or_404(
        OperatorConnection.objects.select_related("charger"), pk=operator, charger=charger
    )
    if not op.enabled:
        messages.error(request, _("This operator is disconnected: connect it again instead."))
        return redirect(
            "forwarding:operator-detail", community=community, charger=charger, operator=op.pk
        )
    form = OperatorEditForm(request.POST or None, operator=op)
    if request.method == "POST" and form.is_valid():
        try:
            changed = services.update_operator(operator=op, actor=request.user, **form.cleaned())
        except services.ForwardingError as e:
            form.add_error(None, e.message)
        else:
            if changed:
                messages.success(
                    request, _("Operator changed: the gateway reconnects it within seconds.")
                )
            return redirect(
                "forwarding:operator-detail", community=community, charger=charger, operator=op.pk
            )
    return render(
        request,
        "forwarding/operator_form.html",
        {"form": form, "charger": op.charger, "operator": op},
    )


@community_permission("operators:manage")
def operator_detail(
    request: CommunityRequest, community: str, charger: int, operator: int
) -> HttpResponse:
    """State (polled every 3 s, 204 while unchanged) and the frames relayed, newest first."""
    op: OperatorConnection = get_object_or_404(
        OperatorConnection.objects.select_related("charger"), pk=operator, charger=charger
    )
    fp = f"{op.enabled}|{op.connected}|{op.state_at}|{op.buffered}|{op.last_error}"
    return render_live(
        request,
        *PAGE,
        {"operator": op, "charger": op.charger},
        fp,
        page_extra=lambda: {
            "frames": Paginator(op.frames.all(), 50).get_page(request.GET.get("page"))
        },
    )


@community_permission("operators:manage")
@require_POST
def operator_test(
    request: CommunityRequest, community: str, charger: int, operator: int
) -> HttpResponse:
    """ "Test the connection": a handshake and a Heartbeat, answer shown on the page."""
    op: OperatorConnection = get_object_or_404(
        OperatorConnection.objects.select_related("charger"), pk=operator, charger=charger
    )
    try:
        password = secrets.decrypt(op.password_encrypted)
    except secrets.UnreadableSecret:
        password = ""
    result = probe(
        url=op.url, identity=op.identity, password=password, version=op.charger.ocpp_version
    )
    frames = Paginator(op.frames.all(), 50).get_page(1)
    return render(
        request,
        PAGE[0],
        {
            "operator": op,
            "charger": op.charger,
            "frames": frames,
            "probe": result,
            "fingerprint": "",
        },
    )


@community_permission("operators:manage")
@require_POST
def operator_disconnect(
    request: CommunityRequest, community: str, charger: int, operator: int
) -> HttpResponse:
    op: OperatorConnection = get_object_or_404(
        OperatorConnection.objects.select_related("charger"), pk=operator, charger=charger
    )
    try:
        services.disconnect_operator(operator=op, actor=request.user)
    except services.ForwardingError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("Operator disconnected: nothing more is forwarded to it."))
    return redirect("chargers:charger-detail", community=community, charger=charger)
