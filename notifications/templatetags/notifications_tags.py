"""The notification forms, included in pages other apps own (My account, Company
configuration) without those views knowing about notifications."""

from typing import Any

from django import template

from notifications import preferences, services
from notifications.forms import OfflineMinutesForm, PreferencesForm

register = template.Library()


@register.inclusion_tag("notifications/_preferences.html", takes_context=True)
def notification_preferences(context: dict[str, Any]) -> dict[str, Any]:
    request = context["request"]
    user = request.user
    kinds = preferences.kinds_for(user)
    current = preferences.choices_of([user.pk])[user.pk]
    form = PreferencesForm(user=user, kinds=kinds, current=current)
    return {"form": form, "user": user, "csrf_token": context.get("csrf_token")}


@register.inclusion_tag("notifications/_community_settings.html", takes_context=True)
def notification_settings(context: dict[str, Any]) -> dict[str, Any]:
    request = context["request"]
    community = request.community
    form = OfflineMinutesForm(initial={"offline_minutes": services.offline_minutes_of(community)})
    return {"form": form, "community": community, "csrf_token": context.get("csrf_token")}
