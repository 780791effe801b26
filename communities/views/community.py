"""Community pages: home, create, dashboard, users (members), sites, company configuration."""

import copy
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _

from billing.forms import PriceForm
from billing.prices import price_history
from chargers import selectors, usage
from chargers.forms import CardForm, UsageFilterForm
from chargers.models import ChargeCard, Charger, ChargingSession
from chargers.usage_charts import usage_charts
from sparklin.charts import Chart, Series
from sparklin.confirm import Confirmation, confirm, render_confirmation
from sparklin.dates import current_month, month_bounds
from sparklin.http import CommunityRequest
from sparklin.live import fingerprint, render_live
from sparklin.pagination import uncounted_page

from .. import services
from ..access import user_company
from ..forms import (
    CommunityForm,
    CommunitySettingsForm,
    MemberAddForm,
    MemberEditForm,
    MemberSearchForm,
    SiteForm,
)
from ..middleware import user_communities
from ..models import Community, Membership, Site
from ..permissions import community_permission, has_permission


@login_required
def home(request):
    first = user_communities(request.user).first()
    if first is None:
        if user_company(request.user) is not None:
            return redirect("installer-home")
        return redirect("community-create")
    return redirect("communities:dashboard", community=first.slug)


@login_required
def community_create(request):
    form = CommunityForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        community = services.create_community(actor=request.user, **form.cleaned_data)
        messages.success(request, _("Community %(name)s created.") % {"name": community.name})
        return redirect("communities:dashboard", community=community.slug)
    return render(request, "communities/community_create.html", {"form": form})


# The dashboard lists at most this many outlets and sessions in progress; the outlets and
# sessions pages have the rest.
DASHBOARD_ROWS = 10


@community_permission("community:view")
def dashboard(request: CommunityRequest, community: str) -> HttpResponse:
    """The community's home: outlets by state, this month's totals, sessions in progress and
    the latest ones, energy and cost charts (the person's own for drivers; a manager can choose
    a site or a person). Live like the outlets page: the change token (one query that reads no
    list, `selectors.live_token`) comes first, an unchanged poll answers 204 before any
    list query. Every figure is an aggregate or a
    bounded list, whatever the size of the fleet."""
    tenant = request.community
    manager = has_permission(request, "sessions:view_all")
    sessions = selectors.sessions_for_list()
    holder = None if manager else request.user
    if holder is not None:
        sessions = sessions.filter(holder=holder)
    active = sessions.filter(state=ChargingSession.State.ACTIVE)
    live: dict[tuple, Any] = {}

    def live_for(person: Any = holder, site: Any = None) -> Any:
        """Sessions in progress read once per request for the totals and the charts."""
        if (person, site) not in live:
            live[person, site] = usage.live_sessions(tenant, holder=person, site=site)
        return live[person, site]

    def context() -> dict[str, Any]:
        outlets = list(selectors.outlets()[: DASHBOARD_ROWS + 1]) if not manager else []
        counts = selectors.state_counts()
        active_count = active.count()
        return {
            "rows": selectors.with_live(outlets[:DASHBOARD_ROWS]),
            "more_outlets": len(outlets) > DASHBOARD_ROWS,
            "counts": counts,
            "totals": selectors.month_totals(tenant, holder, live_for()),
            "active_sessions": active[:DASHBOARD_ROWS] if active_count else [],
            "active_count": active_count,
            "latest_sessions": sessions[:DASHBOARD_ROWS],
            "my_cards": ChargeCard.objects.filter(holder=request.user) if not manager else None,
        }

    def page_extra() -> dict[str, Any]:
        form = UsageFilterForm(request.GET or None, community=tenant) if manager else None
        site = user = None
        if form is not None and form.is_valid():
            site, user = form.cleaned_data["site"], form.cleaned_data["user"]
        return {
            "usage_form": form,
            "charts": usage_charts(
                tenant, holder=holder or user, site=site, live=live_for(holder or user, site)
            ),
        }

    page = ("communities/dashboard.html", "dashboard-live")
    month_start = month_bounds(tenant, *current_month(tenant))[0]
    token = selectors.live_token(tenant, sessions_since=month_start)
    if token is None:  # no cheap token (SQLite): fingerprint what is shown
        data = context()
        totals = data["totals"]
        fp = fingerprint(
            selectors.outlets_fingerprint(data["rows"]),
            [(state, n) for state, _label, n in data["counts"]],
            data["active_count"],
            totals["count"],
            totals["energy_wh"],
        )
        return render_live(request, *page, data, fp, page_extra)
    return render_live(request, *page, context, token, page_extra)


MEMBERS_PER_PAGE = 50
CHARGERS_PER_PAGE = 50


@community_permission("members:view")
def member_list(request: CommunityRequest, community: str) -> HttpResponse:
    # People who left are not listed: the remaining members no longer see their details.
    members = (
        Membership.objects.current()
        .select_related("user")
        .order_by("state", "user__last_name", "user__first_name", "pk")
    )
    form = MemberSearchForm(request.GET or None)
    if form.is_valid() and form.cleaned_data["q"]:
        members = members.filter(form.search_q())
    page = Paginator(members, MEMBERS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "communities/member_list.html",
        {"members": page, "page": page, "form": form, "query": query.urlencode()},
    )


@community_permission("members:write")
def member_add(request: CommunityRequest, community):
    managed = services.managed_communities(request.user).values("pk")
    communities = Community.objects.filter(Q(pk__in=managed) | Q(pk=request.community.pk)).order_by(
        "name"
    )
    form = MemberAddForm(
        request.POST or None, communities=communities, initial={"community": request.community.slug}
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        target = data.pop("community")
        try:
            membership = services.add_member(community=target, actor=request.user, **data)
        except services.CommunityError as e:
            form.add_error(None, e.message)
        else:
            messages.success(
                request,
                _("%(name)s was added to %(community)s and invited by SMS.")
                % {"name": membership.user, "community": target},
            )
            return redirect("communities:member-list", community=target.slug)
    return render(request, "communities/member_form.html", {"form": form, "adding": True})


@community_permission("members:view")
def member_detail(request: CommunityRequest, community, member):
    # Someone who left is no longer shown (name, contact, sessions) to the remaining members.
    membership = get_object_or_404(Membership.objects.current().select_related("user"), pk=member)
    sessions = selectors.sessions_for_list().filter(holder=membership.user)
    page = uncounted_page(sessions, request.GET.get("page"), 25)
    cards = (
        ChargeCard.objects.filter(holder=membership.user)
        .select_related("community")
        .with_last_use()
    )
    return render(
        request,
        "communities/member_detail.html",
        {
            "member": membership,
            "page": page,
            "cards": cards,
            "card_form": CardForm(),
        },
    )


@community_permission("members:write")
def member_edit(request: CommunityRequest, community, member):
    membership: Membership = get_object_or_404(Membership.objects.select_related("user"), pk=member)
    user = membership.user
    initial = {
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "role": membership.role,
    }
    form = MemberEditForm(request.POST or None, initial=initial, membership=membership)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_member(membership=membership, actor=request.user, **form.cleaned_data)
        except services.CommunityError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Changes saved."))
            return redirect("communities:member-detail", community=community, member=membership.pk)
    return render(request, "communities/member_form.html", {"form": form, "member": membership})


@community_permission("members:write")
def member_remove(request: CommunityRequest, community, member):
    membership: Membership = get_object_or_404(Membership.objects.select_related("user"), pk=member)
    confirmation = Confirmation(
        title=_("Remove %(name)s from the community?") % {"name": membership.user},
        consequences=[
            _("Their cards stop working here at once."),
            _("Their charging sessions stay in the community's history."),
            _("To give them access again, you will have to add them again."),
        ],
        button=_("Remove"),
        cancel_url=reverse(
            "communities:member-detail", kwargs={"community": community, "member": membership.pk}
        ),
        scope="member.remove",
    )
    confirmed, form = confirm(request, confirmation)
    if not confirmed:
        return render_confirmation(request, confirmation, form)
    try:
        services.remove_member(membership=membership, actor=request.user)
    except services.CommunityError as e:
        messages.error(request, e.message)
        return redirect("communities:member-detail", community=community, member=membership.pk)
    messages.success(
        request, _("%(name)s was removed from the community.") % {"name": membership.user}
    )
    return redirect("communities:member-list", community=community)


@community_permission("sites:view")
def site_list(request: CommunityRequest, community):
    sites = list(Site.objects.annotate(charger_count=Count("chargers")).order_by("name", "pk"))
    power = selectors.site_power(sites)
    for site in sites:
        site.power_kw, site.charging = power[site.pk]  # type: ignore[attr-defined]
    chart = Chart(
        id="site-power",
        title=_("Power now, by site"),
        labels=[site.name for site in sites],
        series=[Series(_("Power"), [power[site.pk][0] for site in sites], "kW")],
        unit="kW",
    )
    return render(request, "communities/site_list.html", {"sites": sites, "chart": chart})


@community_permission("sites:write")
def site_add(request: CommunityRequest, community):
    form = SiteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            site = services.create_site(
                community=request.community, actor=request.user, **form.cleaned_data
            )
        except services.CommunityError as e:
            form.add_error("name", e.message)
        else:
            messages.success(request, _("Site %(name)s added.") % {"name": site.name})
            return redirect("communities:site-detail", community=community, site=site.pk)
    return render(request, "communities/site_form.html", {"form": form})


@community_permission("sites:view")
def site_detail(request: CommunityRequest, community, site):
    site = get_object_or_404(Site, pk=site)
    chargers = Charger.objects.filter(site=site).order_by("identity").prefetch_related("connectors")
    page = Paginator(chargers, CHARGERS_PER_PAGE).get_page(request.GET.get("page"))
    power_kw, charging = selectors.site_power([site])[site.pk]
    return render(
        request,
        "communities/site_detail.html",
        {
            "site": site,
            "chargers": page,
            "page": page,
            "power_kw": power_kw,
            "charging": charging,
        },
    )


@community_permission("sites:write")
def site_edit(request: CommunityRequest, community, site):
    site = get_object_or_404(Site, pk=site)
    form = SiteForm(request.POST or None, instance=site)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_site(site=site, actor=request.user, **form.cleaned_data)
        except services.CommunityError as e:
            form.add_error("name", e.message)
        else:
            messages.success(request, _("Changes saved."))
            return redirect("communities:site-detail", community=community, site=site.pk)
    return render(request, "communities/site_form.html", {"form": form, "site": site})


@community_permission("community:manage")
def settings_view(request: CommunityRequest, community):
    # A copy: the form writes cleaned values on its instance, the service decides what changed.
    form = CommunitySettingsForm(request.POST or None, instance=copy.copy(request.community))
    if request.method == "POST" and form.is_valid():
        services.update_community(
            community=request.community, actor=request.user, **form.cleaned_data
        )
        messages.success(request, _("Changes saved."))
        return redirect("communities:settings", community=request.community.slug)
    return render(
        request,
        "communities/settings.html",
        {
            "form": form,
            "price_form": PriceForm(),
            "prices": price_history(),
        },
    )
