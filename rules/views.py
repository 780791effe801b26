"""The Rules page (a tab under the community's configuration), the policy of a site or an
outlet with its weekly windows, limits, and user groups (on the Users tab)."""

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import CharField
from django.db.models.functions import Cast
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from chargers import selectors as chargers_selectors
from chargers.models import Connector
from chargers.views.fleet import OUTLETS_PER_PAGE
from communities.models import AuditEvent, Site
from communities.permissions import community_permission, has_permission
from sparklin.http import CommunityRequest

from . import selectors, services
from .forms import (
    GroupForm,
    LearnConfirmForm,
    LearnStartForm,
    LimitForm,
    OfflineForm,
    PolicyForm,
    RuleOutletFilterForm,
    WindowForm,
)
from .models import AccessPolicy, LearnWindow, TimeWindow, UsageLimit, UserGroup

# The limits listed on the Rules page, a page at a time (its own page parameter, so the outlets'
# page and filters are kept while paging limits, and the reverse).
LIMITS_PER_PAGE = 50


@community_permission("rules:manage")
def rules_page(request: CommunityRequest, community):
    """Who may charge where: each site's rule, then the outlets a page at a time with the
    outlets page's filters (and own rule or not), each with its own rule or its site's."""
    form = RuleOutletFilterForm(request.GET or None)
    outlets = selectors.filter_by_rule(
        chargers_selectors.outlets(**form.filters()), form.rule_filter()
    )
    page = Paginator(outlets, OUTLETS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    # The phone number as stored (E.164 text): not parsed for each of hundreds of limits.
    limits = (
        UsageLimit.objects.select_related("user")
        .defer("user__phone")
        .annotate(phone_text=Cast("user__phone", CharField()))
        .order_by("user__last_name")
    )
    limits_page = Paginator(limits, LIMITS_PER_PAGE).get_page(request.GET.get("limits_page"))
    limits_query = request.GET.copy()
    limits_query.pop("limits_page", None)
    audit = AuditEvent.objects.filter(action__regex=r"^(rule|group)\.").select_related("actor")
    return render(
        request,
        "rules/rules_page.html",
        {
            "sites": selectors.site_summaries(request.community, Site.objects.all()),
            "outlets": selectors.outlet_summaries(request.community, page),
            "outlet_form": form,
            "page": page,
            "query": query.urlencode(),
            "limits": limits_page,
            "limits_query": limits_query.urlencode(),
            "limit_form": LimitForm(
                community=request.community, initial={"user": request.GET.get("user")}
            ),
            "events": selectors.recent_events(),
            "audit": audit.order_by("-at")[:20],
        },
    )


def _policy_page(request: CommunityRequest, community, *, site=None, connector=None):
    policy = AccessPolicy.objects.filter(site=site, connector=connector).first()
    initial: dict[str, Any] = {"mode": "members"}
    if policy is not None:
        initial = {
            "mode": policy.mode,
            "users": list(policy.users.all()),
            "groups": list(policy.groups.all()),
        }
    form = PolicyForm(request.POST or None, initial=initial, community=request.community)
    if request.method == "POST" and form.is_valid():
        try:
            services.set_policy(
                community=request.community,
                actor=request.user,
                site=site,
                connector=connector,
                **form.cleaned_data,
            )
        except services.RulesError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Rule saved."))
            return redirect(request.path)
    return render(
        request,
        "rules/policy_form.html",
        {
            "site": site,
            "connector": connector,
            "policy": policy,
            "form": form,
            "window_form": WindowForm(),
            "offline_form": OfflineForm(
                initial={"mode": getattr(getattr(site, "offline_policy", None), "mode", "known")}
            )
            if site is not None
            else None,
        },
    )


@community_permission("rules:manage")
def site_policy(request: CommunityRequest, community, site):
    return _policy_page(request, community, site=get_object_or_404(Site, pk=site))


@community_permission("rules:manage")
def outlet_policy(request: CommunityRequest, community, connector):
    connector = get_object_or_404(Connector.objects.select_related("charger"), pk=connector)
    return _policy_page(request, community, connector=connector)


@community_permission("rules:manage")
@require_POST
def policy_remove(request: CommunityRequest, community, policy):
    policy = get_object_or_404(AccessPolicy, pk=policy)
    services.remove_policy(policy=policy, actor=request.user)
    messages.success(request, _("Rule removed."))
    return redirect("rules:rules-page", community=community)


@community_permission("rules:manage")
@require_POST
def window_add(request: CommunityRequest, community, policy):
    policy = get_object_or_404(AccessPolicy.objects.select_related("site", "connector"), pk=policy)
    form = WindowForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.add_window(
                policy=policy,
                actor=request.user,
                days="".join(data["days"]),
                start=data["start"],
                end=data["end"],
            )
        except services.RulesError as e:
            messages.error(request, e.message)
        else:
            messages.success(request, _("Charging hours added."))
    else:
        for errors in form.errors.values():
            messages.error(request, " ".join(str(e) for e in errors))
    return _back_to_policy(community, policy)


@community_permission("rules:manage")
@require_POST
def window_remove(request: CommunityRequest, community, time_window):
    window: TimeWindow = get_object_or_404(
        TimeWindow.objects.select_related("policy"), pk=time_window
    )
    services.remove_window(window=window, actor=request.user)
    messages.success(request, _("Charging hours removed."))
    return _back_to_policy(community, window.policy)


def _back_to_policy(community, policy: AccessPolicy):
    if policy.site_id is not None:
        return redirect("rules:rules-site", community=community, site=policy.site_id)
    return redirect("rules:rules-outlet", community=community, connector=policy.connector_id)


@community_permission("rules:manage")
@require_POST
def limit_set(request: CommunityRequest, community):
    form = LimitForm(request.POST, community=request.community)
    if form.is_valid():
        try:
            services.set_limit(community=request.community, actor=request.user, **form.cleaned_data)
        except services.RulesError as e:
            messages.error(request, e.message)
        else:
            messages.success(request, _("Limits saved."))
    else:
        for errors in form.errors.values():
            messages.error(request, " ".join(str(e) for e in errors))
    return redirect("rules:rules-page", community=community)


@community_permission("rules:manage")
def group_list(request: CommunityRequest, community):
    form = GroupForm(request.POST or None, community=request.community)
    if request.method == "POST" and form.is_valid():
        try:
            services.save_group(
                community=request.community, actor=request.user, **form.cleaned_data
            )
        except services.RulesError as e:
            form.add_error("name", e.message)
        else:
            messages.success(request, _("Group saved."))
            return redirect("rules:group-list", community=community)
    groups = UserGroup.objects.prefetch_related("members")
    return render(request, "rules/group_list.html", {"groups": groups, "form": form})


@community_permission("rules:manage")
def group_edit(request: CommunityRequest, community, group):
    group = get_object_or_404(UserGroup, pk=group)
    initial = {"name": group.name, "members": list(group.members.all())}
    form = GroupForm(request.POST or None, initial=initial, community=request.community)
    if request.method == "POST" and form.is_valid():
        try:
            services.save_group(
                community=request.community, actor=request.user, group=group, **form.cleaned_data
            )
        except services.RulesError as e:
            form.add_error("name", e.message)
        else:
            messages.success(request, _("Group saved."))
            return redirect("rules:group-list", community=community)
    return render(request, "rules/group_form.html", {"group": group, "form": form})


@community_permission("rules:manage")
@require_POST
def group_delete(request: CommunityRequest, community, group):
    group = get_object_or_404(UserGroup, pk=group)
    services.delete_group(group=group, actor=request.user)
    messages.success(request, _("Group deleted."))
    return redirect("rules:group-list", community=community)


# --- learning a card by scanning it -------------------------------------------------------------
def _back(request: CommunityRequest, community):
    target = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("chargers:my-session-list", community=community)


@community_permission("community:view")
@require_POST
def learn_start(request: CommunityRequest, community):
    form = LearnStartForm(request.POST, community=request.community)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(str(e) for e in errors))
        return _back(request, community)
    user = form.cleaned_data["user"] or request.user
    try:
        window = services.open_learn_window(
            charger=form.cleaned_data["charger"], actor=request.user, user=user
        )
    except services.RulesError as e:
        messages.error(request, e.message)
        return _back(request, community)
    return redirect("rules:learn-detail", community=community, window=window.pk)


def _own_window(request: CommunityRequest, window: int) -> LearnWindow:
    found: LearnWindow = get_object_or_404(
        LearnWindow.objects.select_related("charger", "user"), pk=window
    )
    if found.user_id != request.user.pk and not has_permission(request, "cards:write"):
        raise Http404
    return found


@community_permission("community:view")
def learn_detail(request: CommunityRequest, community, window):
    """The learn window: a countdown while waiting (the status region polls every 2 s), then
    the presented UID with what stands in the way, and the confirmation."""
    found = _own_window(request, window)
    blocking, notes = "", list[str]()
    if found.state == LearnWindow.State.SCANNED:
        blocking, notes = services.learn_conflicts(found)
    template = "rules/learn_detail.html"
    if request.htmx:
        template += "#learn-status"
    context = {"window": found, "blocking": blocking, "notes": notes, "form": LearnConfirmForm()}
    return render(request, template, context)


@community_permission("community:view")
@require_POST
def learn_confirm(request: CommunityRequest, community, window):
    found = _own_window(request, window)
    form = LearnConfirmForm(request.POST)
    if form.is_valid():
        try:
            card = services.confirm_learn_window(
                window=found, actor=request.user, name=form.cleaned_data["name"]
            )
        except services.RulesError as e:
            messages.error(request, e.message)
        else:
            messages.success(request, _("Card %(uid)s added.") % {"uid": card.uid})
    return redirect("rules:learn-detail", community=community, window=found.pk)


@community_permission("community:view")
@require_POST
def learn_cancel(request: CommunityRequest, community, window):
    found = _own_window(request, window)
    services.cancel_learn_window(window=found, actor=request.user)
    messages.success(request, _("Learning cancelled."))
    return redirect("rules:learn-detail", community=community, window=found.pk)


@community_permission("rules:manage")
@require_POST
def offline_policy(request: CommunityRequest, community, site):
    site = get_object_or_404(Site, pk=site)
    form = OfflineForm(request.POST)
    if form.is_valid():
        services.set_offline_policy(site=site, actor=request.user, mode=form.cleaned_data["mode"])
        messages.success(request, _("Offline behaviour saved: the chargers get it shortly."))
    else:
        messages.error(request, _("Choose what the chargers do while offline."))
    return redirect("rules:rules-site", community=community, site=site.pk)
