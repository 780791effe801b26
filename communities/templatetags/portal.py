"""Small template helpers of the portal: current tab, energy and money formatting, live energy."""

from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.utils.formats import number_format
from django.utils.safestring import mark_safe

register = template.Library()


@register.simple_tag(takes_context=True)
def current(context, *url_names):
    """`aria-current="page"` on the tab whose URL name (or name prefix, ending in "*") matches."""
    match = getattr(context.get("request"), "resolver_match", None)
    name = match.url_name if match else ""
    for candidate in url_names:
        if name == candidate or (candidate.endswith("*") and name.startswith(candidate[:-1])):
            return mark_safe('aria-current="page"')
    return ""


def live_energy_wh(session) -> Decimal:
    """Energy of a session: final for completed ones, last meter reading minus start while it
    runs (the gateway updates meter_last_wh from MeterValues)."""
    if (
        session.state == "active"
        and session.meter_last_wh is not None
        and session.meter_start_wh is not None
    ):
        return max(session.meter_last_wh - session.meter_start_wh, Decimal(0))
    return session.energy_wh or Decimal(0)


@register.filter
def session_kwh(session):
    return kwh(live_energy_wh(session))


@register.filter
def session_cost(session):
    """Final cost, or the cost so far for a session in progress."""
    if session.state == "active":
        if session.price_per_kwh is None:
            return None
        return (live_energy_wh(session) / 1000 * session.price_per_kwh).quantize(
            Decimal("0.01"), ROUND_HALF_UP
        )
    return session.cost


@register.filter
def kwh(wh):
    """Wh → kWh with 3 decimals, localised."""
    if wh is None:
        return ""
    return number_format(Decimal(wh) / 1000, 3)


@register.filter
def money(value, currency="EUR"):
    if value is None or value == "":
        return "—"
    symbol = {"EUR": "€"}.get(currency, currency)
    return f"{number_format(Decimal(value), 2)} {symbol}"


@register.filter
def price(value, currency="EUR"):
    if value is None or value == "":
        return "—"
    symbol = {"EUR": "€"}.get(currency, currency)
    return f"{number_format(Decimal(value), 4)} {symbol}/kWh"
