"""Billing rules: setting a new kWh price, and the billing app's domain error.

The expense notes have their own modules, by concern: `issuing` (a month's notes, in one short
transaction), `rendering` (each note's PDF), `dispatch` (e-mails to finance and drivers),
`export_jobs` (ZIP exports) and `scheduling` (the month-end run and the hourly check). They run
inside the community's scope (a request, a `CommunityTask`) and never switch scoping off."""

from datetime import date
from decimal import Decimal

from django.db import transaction
from django.utils.translation import gettext as _

from communities.models import Community
from communities.services import audit

from .models import Price


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
