"""Rules of use in pages of other apps: the summary on a site, a driver's refusals, weekdays."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.translation import gettext as _

from rules import selectors
from rules.forms import WEEKDAYS
from rules.models import RuleEvent

register = template.Library()


@register.simple_tag(takes_context=True)
def site_access(context: dict[str, Any], site: Any) -> list[dict[str, Any]]:
    """Who may charge on `site` now, and on its outlets that have a rule of their own (not
    the others: a site of 1,000 chargers is not read and summarised outlet by outlet)."""
    community = context["community"]
    (row,) = selectors.site_summaries(community, [site])
    own = selectors.outlets_with_own_rule(charger__site=site).order_by(
        "charger__identity", "evse_id", "connector_id"
    )
    return [{**row, "outlets": selectors.outlet_summaries(community, own)}]


@register.simple_tag(takes_context=True)
def charger_access(context: dict[str, Any], charger: Any) -> list[tuple[Any, Any]]:
    """Who may charge on each outlet of `charger` now: (connector, summary) pairs, from the
    same summaries as the Rules page (its outlets only, not its site's)."""
    connectors = charger.connectors.select_related("charger").order_by("evse_id", "connector_id")
    return selectors.outlet_summaries(context["community"], connectors)


@register.simple_tag
def my_rule_events(user: Any) -> list[RuleEvent]:
    """The person's last refused or stopped charges (in the current community's scope)."""
    return list(RuleEvent.objects.filter(holder=user).select_related("charger")[:10])


@register.filter
def weekdays(days: str) -> str:
    """ "12345" → "Monday–Friday"; other sets listed."""
    names = dict(WEEKDAYS)
    if days == "1234567":
        return _("Every day")
    if len(days) > 2 and days == "".join(str(d) for d in range(int(days[0]), int(days[-1]) + 1)):
        return f"{names[days[0]]}–{names[days[-1]]}"
    return ", ".join(str(names[d]) for d in days if d in names)


@register.simple_tag
def learn_chargers() -> dict[str, Any]:
    """The learn-by-scanning form's chargers (in the current scope): `chargers` listed when
    there are at most `LEARN_CHARGERS_MAX`, otherwise none and `typed` (the serial number is
    typed); `any` is False without chargers."""
    from chargers.models import Charger
    from rules.forms import LEARN_CHARGERS_MAX

    chargers = list(Charger.objects.order_by("identity")[: LEARN_CHARGERS_MAX + 1])
    typed = len(chargers) > LEARN_CHARGERS_MAX
    return {"any": bool(chargers), "typed": typed, "chargers": [] if typed else chargers}


@register.simple_tag
def local_list(charger: Any) -> Any:
    """The charger's local list state (None before the first sync)."""
    from rules.models import LocalList

    return LocalList.objects.filter(charger=charger).first()
