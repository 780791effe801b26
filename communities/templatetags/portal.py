"""Small template helpers of the portal: current tab, energy and money written in the
request's language (`sparklin.formatting`, Babel), a session's energy and cost so far
(`chargers.selectors`, `billing.prices.session_cost`)."""

from django import template
from django.utils.safestring import mark_safe

from chargers.selectors import live_cost, live_energy_wh
from sparklin import formatting

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


@register.filter
def session_kwh(session):
    return kwh(live_energy_wh(session))


@register.filter
def session_cost(session):
    """Final cost, or the cost so far for a session in progress."""
    return live_cost(session)


@register.filter
def kwh(wh):
    """Wh → kWh with 3 decimals, in the request's language."""
    return formatting.kwh(wh)


@register.filter
def money(value, currency="EUR"):
    return formatting.money(value, currency or "EUR")


@register.filter
def price(value, currency="EUR"):
    return formatting.price_per_kwh(value, currency or "EUR")
