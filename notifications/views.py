"""The two pages' forms of notifications: a person's choices (shown on My account) and an
installation's offline delay (shown on Company configuration). Both are POST targets; the
forms are rendered by `notifications_tags`."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from communities.permissions import community_permission
from communities.services import CommunityError
from sparklin.http import CommunityRequest

from . import preferences, services
from .forms import OfflineMinutesForm, PreferencesForm


@login_required
@require_POST
def preferences_save(request):
    user = request.user
    kinds = preferences.kinds_for(user)
    current = preferences.choices_of([user.pk])[user.pk]
    form = PreferencesForm(request.POST, user=user, kinds=kinds, current=current)
    if form.is_valid():
        preferences.save_choices(user=user, choices=form.choices())
        messages.success(request, _("Your notification choices are saved."))
    return redirect(f"{_account_url()}#notifications")


def _account_url() -> str:
    from django.urls import reverse

    return reverse("accounts:account")


@community_permission("community:manage")
@require_POST
def community_settings(request: CommunityRequest, community):
    form = OfflineMinutesForm(request.POST)
    if form.is_valid():
        try:
            services.set_offline_minutes(
                community=request.community,
                actor=request.user,
                minutes=form.cleaned_data["offline_minutes"],
            )
        except CommunityError as e:
            messages.error(request, e.message)
        else:
            messages.success(request, _("Changes saved."))
    else:
        for error in form.errors.get("offline_minutes", []):
            messages.error(request, _("Charger offline delay: %(error)s") % {"error": error})
    return redirect("communities:settings", community=request.community.slug)
