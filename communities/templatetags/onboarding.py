"""The new community's checklist on the dashboard (`templates/communities/_onboarding.html`):
add a site → add a charger → set the price → add users, each step ticked from the community's
real data and linking to the page where it is done. Shown to those who can set the community
up (managers, full-access installers) until every step is done; a home needs no other users.

A template tag rather than view context, so the dashboard (another team's page) only needs one
`{% include %}` line; four indexed EXISTS queries, on the full page only (the dashboard's live
poll renders its own partial, not this)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import template
from django.urls import reverse
from django.utils.translation import gettext as _

from billing.models import Price
from chargers.models import Charger
from communities.models import Community, Membership, Site

register = template.Library()


@dataclass
class Step:
    title: str
    hint: str
    done: bool
    url: str  # empty when this person cannot do it
    button: str
    current: bool = False  # the first step left: its button is the primary one


@register.simple_tag(takes_context=True)
def onboarding_steps(context: dict[str, Any]) -> list[Step]:
    """The steps, or [] when the checklist is not shown (all done, or not for this person)."""
    community: Community | None = context.get("community")
    perms = context.get("community_perms") or ()
    if community is None or "sites:write" not in perms:
        return []
    slug = community.slug
    first_site = Site.objects.order_by("pk").first()
    has_charger = Charger.objects.exists()
    # Two are enough to know (not a count of a fleet's thousands of members).
    others = Membership.objects.current().filter(community=community).values("pk")[:2].count() > 1
    steps = [
        Step(
            _("Add a site"),
            _("The place where the chargers are: a car park, a garage, a house."),
            first_site is not None,
            reverse("communities:site-add", kwargs={"community": slug}),
            _("Add a site"),
        ),
        Step(
            _("Add a charger"),
            _("By its serial number (and PIN for a Sparklin charger), on its site."),
            has_charger,
            reverse("communities:site-detail", kwargs={"community": slug, "site": first_site.pk})
            if first_site is not None and "chargers:write" in perms
            else "",
            _("Add a charger"),
        ),
        Step(
            _("Set the price per kWh"),
            _("Sessions are priced at the price in force when they start."),
            Price.objects.filter(community=community).exists(),
            reverse("communities:settings", kwargs={"community": slug})
            if "community:manage" in perms
            else "",
            _("Set the price"),
        ),
    ]
    if community.kind != Community.Kind.HOME:
        steps.append(
            Step(
                _("Add users"),
                _("Residents or employees: each gets a code by SMS to log in."),
                others,
                reverse("communities:member-add", kwargs={"community": slug})
                if "members:write" in perms
                else "",
                _("Add a user"),
            )
        )
    left = [s for s in steps if not s.done]
    if not left:
        return []
    left[0].current = True
    return steps
