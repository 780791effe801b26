"""Charge cards on a member's page: add, rename or set an expiry, deactivate, reactivate."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from communities.models import Membership
from communities.permissions import community_permission
from sparklin.http import CommunityRequest

from .. import services
from ..forms import CardEditForm, CardForm
from ..models import ChargeCard


def _back_to_holder(community: str, card: ChargeCard):
    membership = Membership.objects.filter(user=card.holder_id).first()
    if membership:
        return redirect("communities:member-detail", community=community, member=membership.pk)
    return redirect("communities:member-list", community=community)


@community_permission("cards:write")
@require_POST
def card_add(request: CommunityRequest, community, member):
    membership: Membership = get_object_or_404(Membership.objects.select_related("user"), pk=member)
    form = CardForm(request.POST)
    if form.is_valid():
        try:
            card = services.add_card(
                community=request.community,
                actor=request.user,
                holder=membership.user,
                **form.cleaned_data,
            )
        except services.ChargerError as e:
            messages.error(request, e.message)
        else:
            messages.success(request, _("Card %(uid)s added.") % {"uid": card.uid})
    else:
        for errors in form.errors.values():
            messages.error(request, " ".join(str(e) for e in errors))
    return redirect("communities:member-detail", community=community, member=membership.pk)


@community_permission("cards:write")
def card_edit(request: CommunityRequest, community, card):
    card = get_object_or_404(ChargeCard.objects.exclude(holder=None), pk=card)
    form = CardEditForm(request.POST or None, initial=CardEditForm.initial_for(card))
    if request.method == "POST" and form.is_valid():
        services.update_card(card=card, actor=request.user, **form.cleaned_data)
        messages.success(request, _("Card %(uid)s saved.") % {"uid": card.uid})
        return _back_to_holder(community, card)
    return render(request, "chargers/card_form.html", {"card": card, "form": form})


@community_permission("cards:write")
@require_POST
def card_deactivate(request: CommunityRequest, community, card):
    card = get_object_or_404(ChargeCard, pk=card)
    services.deactivate_card(card=card, actor=request.user)
    messages.success(request, _("Card %(uid)s deactivated.") % {"uid": card.uid})
    return _back_to_holder(community, card)


@community_permission("cards:write")
@require_POST
def card_reactivate(request: CommunityRequest, community, card):
    card = get_object_or_404(ChargeCard, pk=card)
    try:
        services.reactivate_card(card=card, actor=request.user)
    except services.ChargerError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("Card %(uid)s reactivated.") % {"uid": card.uid})
    return _back_to_holder(community, card)
