"""Billing rules: which kWh price applies, setting a new one, and (later) expense notes."""

from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from communities.models import Community
from communities.services import audit

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


class BillingError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


@transaction.atomic
def set_price(*, community: Community, actor, valid_from: date, price_per_kwh: Decimal) -> Price:
    """Add a kWh price in force from `valid_from` (community local date). Sessions already
    recorded keep the price they were given when they started; only sessions starting on or
    after that date use it."""
    if price_per_kwh < 0:
        raise BillingError(_("A price cannot be negative."))
    if (
        Price.objects.with_scopes_disabled()
        .filter(community=community, valid_from=valid_from)
        .exists()
    ):
        raise BillingError(_("A price already starts on this date."))
    price = Price.objects.create(
        community=community, valid_from=valid_from, price_per_kwh=price_per_kwh
    )
    audit(
        community=community,
        actor=actor,
        action="price.add",
        target=f"{price_per_kwh} @ {valid_from}",
        price_id=price.pk,
        valid_from=valid_from.isoformat(),
        price_per_kwh=str(price_per_kwh),
    )
    return price
