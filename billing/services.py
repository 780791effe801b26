"""Billing rules: which kWh price applies, and (later) expense notes."""

from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from communities.models import Community

from .models import Price


def price_at(community: Community, when: datetime) -> Decimal | None:
    """The kWh price in force at `when` (the community's local date decides), or None when the
    community has set no price yet. A session is priced once, when it starts."""
    local_date = timezone.localtime(when, community.tz).date()
    price = (
        Price.objects.with_scopes_disabled()
        .filter(community=community, valid_from__lte=local_date)
        .order_by("-valid_from")
        .values_list("price_per_kwh", flat=True)
        .first()
    )
    return price
