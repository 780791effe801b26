"""Power management's pieces on other apps' pages, one line each: `{% load power %}`
`{% power_alerts %}` on the dashboard, `{% charger_power charger %}` on the charger page."""

from __future__ import annotations

from typing import Any

from django import template

from power import selectors

register = template.Library()


@register.inclusion_tag("power/_dashboard_alerts.html", takes_context=True)
def power_alerts(context: dict[str, Any]) -> dict[str, Any]:
    """Chargers that do not obey their limits or refuse profiles, for those who see sites."""
    community = context.get("community")
    perms = context.get("community_perms") or ()
    if community is None or "power:view" not in perms:
        return {"alerts": []}
    return {"alerts": list(selectors.alerts()[:10]), "community": community}


@register.inclusion_tag("power/_charger_power.html", takes_context=True)
def charger_power(context: dict[str, Any], charger: Any) -> dict[str, Any]:
    """The charger's limit, draw and compliance (when its site is managed)."""
    perms = context.get("community_perms") or ()
    if "power:view" not in perms:
        return {"power": None}
    return {
        "power": selectors.charger_power(charger),
        "charger": charger,
        "community": context.get("community"),
    }
