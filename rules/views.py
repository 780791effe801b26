"""The Rules page (a tab under the community's configuration), the policy of a site or an
outlet with its weekly windows, limits, and user groups (on the Users tab)."""

from typing import Any

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from chargers.models import Connector
from communities.models import AuditEvent, Site
from communities.permissions import community_permission
from sparklin.http import CommunityRequest

from . import selectors, services
from .forms import GroupForm, LimitForm, PolicyForm, WindowForm
from .models import AccessPolicy, TimeWindow, UsageLimit, UserGroup


@community_permission("rules:manage")
def rules_page(request: CommunityRequest, community):
    limits = UsageLimit.objects.select_related("user").order_by("user__last_name")
    audit = AuditEvent.objects.filter(action__regex=r"^(rule|group)\.").select_related("actor")
    return render(
        request,
        "rules/rules_page.html",
        {
            "sites": selectors.site_summaries(request.community, Site.objects.all()),
            "limits": limits,
            "limit_form": LimitForm(community=request.community),
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
def window_remove(request: CommunityRequest, community, window):
    window = get_object_or_404(TimeWindow.objects.select_related("policy"), pk=window)
    services.remove_window(window=window, actor=request.user)
    messages.success(request, _("Charging hours removed."))
    return _back_to_policy(community, window.policy)


def _back_to_policy(community, policy: AccessPolicy):
    if policy.site_id is not None:
        return redirect("rules:site-policy", community=community, site=policy.site_id)
    return redirect("rules:outlet-policy", community=community, connector=policy.connector_id)


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
