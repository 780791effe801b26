"""Outlets, chargers, refused identities, charging sessions and cards."""

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from communities.models import Site
from communities.permissions import community_permission, has_permission
from ocpp_gateway.ocpplib import known_actions
from sparklin.dates import month_bounds
from sparklin.http import CommunityRequest
from sparklin.live import render_live
from sparklin.pagination import uncounted_page

from .. import ocpp_log, selectors, services
from ..forms import (
    ChargerEditForm,
    ChargerForm,
    LogFilterForm,
    OutletFilterForm,
    RefusedLookupForm,
    SessionFilterForm,
)
from ..models import (
    ChargeCard,
    Charger,
    ChargingSession,
    Connector,
    QuarantinedEvents,
    UnknownCharger,
)
from ..uptime import charger_uptime

OUTLETS_PER_PAGE = 50


@community_permission("outlets:view")
def outlet_list(request: CommunityRequest, community: str) -> HttpResponse:
    """Outlets, 50 a page, searchable and filterable by state and site. The table polls itself
    every 5 s with the change token of what it shows and gets 204 (htmx swaps nothing) until
    something changes; the token is one query, so an unchanged poll lists nothing."""
    form = OutletFilterForm(request.GET or None)
    query = request.GET.copy()
    query.pop("fp", None)
    poll_query = query.urlencode()  # the poll shows the same page with the same filters
    query.pop("page", None)

    def context() -> dict:
        connectors = selectors.outlets(**form.filters())
        page = Paginator(connectors, OUTLETS_PER_PAGE).get_page(request.GET.get("page"))
        return {
            "rows": selectors.with_live(page),
            "page": page,
            "query": query.urlencode(),
            "poll_query": poll_query,
        }

    template = ("chargers/outlet_list.html", "outlet-table")
    token = selectors.live_token(request.community)
    if token is None:  # no cheap token (SQLite): fingerprint the rows listed
        data = context()
        return render_live(
            request, *template, data, selectors.outlets_fingerprint(data["rows"]), {"form": form}
        )
    return render_live(request, *template, context, token, {"form": form})


def _back(request, community) -> str:
    """Where a portal start/stop returns: the page it was asked from (outlets or dashboard)."""
    target = request.POST.get("next", "")
    if target.startswith(f"/c/{community}/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}
    ):
        return target
    return reverse("chargers:outlet-list", kwargs={"community": community})


@community_permission("charging:remote")
@require_POST
def outlet_start(request: CommunityRequest, community, connector):
    """The "Start charging" button of an outlet: a remote start with the driver's card."""
    connector = get_object_or_404(Connector.objects.select_related("charger"), pk=connector)
    try:
        services.request_remote_start(connector=connector, user=request.user)
    except services.ChargerError as e:
        messages.error(request, e.message)
    else:
        messages.success(
            request,
            _("Start asked to %(outlet)s: charging begins when the charger accepts.")
            % {"outlet": connector},
        )
    return redirect(_back(request, community))


@community_permission("charging:remote")
@require_POST
def session_stop(request: CommunityRequest, community, session):
    """The "Stop charging" button of a session in progress (drivers their own, managers any)."""
    session = get_object_or_404(ChargingSession.objects.select_related("charger"), pk=session)
    try:
        services.request_remote_stop(session=session, user=request.user)
    except services.ChargerError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("Stop asked: the session ends when the charger accepts."))
    return redirect(_back(request, community))


@community_permission("chargers:write")
def charger_add(request: CommunityRequest, community, site):
    site = get_object_or_404(Site, pk=site)
    form = ChargerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            charger = services.register_charger(
                site=site,
                actor=request.user,
                company=request.installer_company,
                **form.cleaned_data,
            )
        except services.ChargerError as e:
            form.add_error("identity", e.message)
        else:
            messages.success(
                request, _("Charger %(identity)s registered.") % {"identity": charger.identity}
            )
            return redirect(
                "chargers:charger-commissioning", community=community, charger=charger.pk
            )
    return render(
        request,
        "chargers/charger_form.html",
        {"form": form, "site": site, "gateway_url": settings.GATEWAY_PUBLIC_URL},
    )


@community_permission("chargers:view")
def charger_detail(request: CommunityRequest, community, charger):
    charger = get_object_or_404(Charger.objects.select_related("site"), pk=charger)
    log_form = LogFilterForm(request.GET or None)
    where = log_form.cleaned_data if log_form.is_valid() else {}
    action = where.get("action", "")
    log = ocpp_log.page(
        charger, action=action, before=where.get("before", ""), after=where.get("after", "")
    )
    # Limited installer access: the frames without card identifiers or personal data.
    ocpp_log.prepare(log, redact=not has_permission(request, "sessions:view_all"))
    quarantine = list(charger.quarantine.exclude(state=QuarantinedEvents.State.RESOLVED)[:5])
    return render(
        request,
        "chargers/charger_detail.html",
        {
            "charger": charger,
            "connectors": charger.connectors.all(),
            "log": log,  # templates/chargers/_charger_log.html
            "log_form": log_form,
            "log_query": urlencode({"action": action}) if action else "",
            "log_actions": sorted(known_actions(charger.ocpp_version or "1.6")),
            "commands": charger.commands.select_related("asked_by")[:20],
            "gateway_url": settings.GATEWAY_PUBLIC_URL,
            # Events the worker kept aside (chargers.events.quarantine): a notice.
            "quarantine": quarantine,
            "quarantine_count": sum(q.count for q in quarantine),
            "uptime": charger_uptime(charger),  # templates/chargers/_charger_uptime.html
        },
    )


@community_permission("chargers:write")
@require_POST
def charger_events_retry(request: CommunityRequest, community, charger):
    """The "Retry" button of the notice about events the worker could not record."""
    charger = get_object_or_404(Charger, pk=charger)
    try:
        count = services.retry_quarantined_events(charger=charger, actor=request.user)
    except services.ChargerError as e:
        messages.error(request, e.message)
    else:
        messages.success(
            request,
            ngettext(
                "Retry asked for %(count)d group of events: the notice goes away once recorded.",
                "Retry asked for %(count)d groups of events: the notice goes away once recorded.",
                count,
            )
            % {"count": count},
        )
    return redirect("chargers:charger-detail", community=community, charger=charger.pk)


@community_permission("chargers:write")
def charger_edit(request: CommunityRequest, community, charger):
    charger = get_object_or_404(Charger, pk=charger)
    form = ChargerEditForm(request.POST or None, initial=ChargerEditForm.initial_for(charger))
    if request.method == "POST" and form.is_valid():
        try:
            services.update_charger(charger=charger, actor=request.user, **form.cleaned_data)
        except services.ChargerError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Changes saved."))
            return redirect("chargers:charger-detail", community=community, charger=charger.pk)
    return render(request, "chargers/charger_edit.html", {"form": form, "charger": charger})


@community_permission("chargers:view")
def unknown_charger_list(request: CommunityRequest, community):
    """Connections the gateway refused at the handshake. A manager (or an installer with
    access) sees those of this community's own chargers (wrong password…) and can look up one
    exact serial number that no community has registered ("did my new charger try to
    connect?"). A serial registered in another community shows nothing: its refusals (reason,
    times, attempts) are that tenant's business, and nobody can list serial numbers elsewhere."""
    form = RefusedLookupForm(request.GET or None)
    # A subquery, not the list of a fleet's 10,000 serial numbers sent back to the database.
    refused = UnknownCharger.objects.filter(identity__in=Charger.objects.values("identity"))
    if form.is_valid():
        identity = form.cleaned_data["identity"]
        registered_elsewhere = (
            Charger.objects.with_scopes_disabled()
            .filter(identity=identity)
            .exclude(community=request.community)
            .exists()
        )
        if not registered_elsewhere:
            refused = refused | UnknownCharger.objects.filter(identity=identity)
    page = Paginator(refused.order_by("-last_seen"), 50).get_page(request.GET.get("page"))
    return render(request, "chargers/unknown_charger_list.html", {"refused": page, "form": form})


@community_permission("sessions:view_all")
def session_list(request: CommunityRequest, community):
    form = SessionFilterForm(request.GET or None, community=request.community)
    sessions = selectors.sessions_for_list()
    if form.is_valid():
        data = form.cleaned_data
        if data["month"]:
            start, end = month_bounds(request.community, *data["month"])
            sessions = sessions.filter(started_at__gte=start, started_at__lt=end)
        if data["user"]:
            sessions = sessions.filter(holder=data["user"])
        if data["site"]:
            sessions = sessions.filter(charger__site=data["site"])
    # A community's history is millions of rows: pages are not counted.
    page = uncounted_page(sessions, request.GET.get("page"), 50)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "chargers/session_list.html",
        {"form": form, "page": page, "query": query.urlencode()},
    )


@community_permission("community:view")
def my_session_list(request: CommunityRequest, community):
    sessions = selectors.sessions_for_list().filter(holder=request.user)
    page = Paginator(sessions, 50).get_page(request.GET.get("page"))
    cards = ChargeCard.objects.filter(holder=request.user)
    return render(request, "chargers/my_session_list.html", {"page": page, "cards": cards})
