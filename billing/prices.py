"""The kWh price and what a session costs: the one home of both rules.

Light on purpose (no PDF, e-mail or export imports) so the worker's event pipeline and the
portal's read paths can import it without pulling in the rest of billing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from .models import Price

CENT = Decimal("0.01")


def price_at(community, when: datetime) -> Decimal | None:
    """The kWh price in force at `when` (the community's local date decides), or None when the
    community has set no price yet. A session is priced once, when it starts."""
    local_date = timezone.localtime(when, community.tz).date()
    return (
        Price.objects.with_scopes_disabled()
        .filter(community=community, valid_from__lte=local_date)
        .order_by("-valid_from")
        .values_list("price_per_kwh", flat=True)
        .first()
    )


def session_cost(energy_wh, price_per_kwh) -> Decimal | None:
    """Energy (Wh) × price (per kWh), rounded half-up to the cent — the amount a driver is
    shown, billed and exported everywhere. None when no price applies."""
    if price_per_kwh is None:
        return None
    energy = Decimal(str(energy_wh or 0))
    return (energy / 1000 * Decimal(str(price_per_kwh))).quantize(CENT, rounding=ROUND_HALF_UP)
