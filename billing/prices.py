"""The kWh price and what a session costs: the one home of both rules.

Light on purpose (no PDF, e-mail or export imports) so the worker's event pipeline and the
portal's read paths can import it without pulling in the rest of billing.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from .models import Price

CENT = Decimal("0.01")


class PriceList:
    """The kWh prices of some communities, read in one query, answering `price_at`'s rule: the
    latest price valid from the community's local date at `when`. The worker reads one per
    batch; `price_at` is the single-community case."""

    def __init__(self, community_ids) -> None:
        self._prices: dict[int, list[tuple[date, Decimal]]] = {}
        self._zones: dict[int, ZoneInfo] = {}
        rows = (
            Price.objects.with_scopes_disabled()
            .filter(community_id__in=list(community_ids))
            .order_by("-valid_from")
            .values_list("community_id", "valid_from", "price_per_kwh", "community__time_zone")
        )
        for community_id, valid_from, price, time_zone in rows:
            self._prices.setdefault(community_id, []).append((valid_from, price))
            self._zones.setdefault(community_id, ZoneInfo(time_zone))

    def at(self, community_id: int, when: datetime) -> Decimal | None:
        prices = self._prices.get(community_id)
        if not prices:
            return None
        local_date = timezone.localtime(when, self._zones[community_id]).date()
        for valid_from, price in prices:
            if valid_from <= local_date:
                return price
        return None


def price_at(community, when: datetime) -> Decimal | None:
    """The kWh price in force at `when` (the community's local date decides), or None when the
    community has set no price yet. A session is priced once, when it starts."""
    return PriceList([community.pk]).at(community.pk, when)


def session_cost(energy_wh, price_per_kwh) -> Decimal | None:
    """Energy (Wh) × price (per kWh), rounded half-up to the cent — the amount a driver is
    shown, billed and exported everywhere. None when no price applies."""
    if price_per_kwh is None:
        return None
    energy = Decimal(str(energy_wh or 0))
    return (energy / 1000 * Decimal(str(price_per_kwh))).quantize(CENT, rounding=ROUND_HALF_UP)


# --- Price history: adding, correcting, removing ---------------------------------------------

# Above this a price per kWh is most likely a typo (a comma lost: 2790 instead of 0.2790);
# the manager must confirm it explicitly.
PLAUSIBLE_MAX = Decimal("2")
MAX_DECIMALS = 4


class PriceError(Exception):
    """A price change refused by a rule; `message` is shown to the manager (translated)."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def parse_price(text: str, language: str = "fr") -> Decimal:
    """The price typed by a person, in their locale: `0,279` and `0.279` both mean 0.279 €/kWh.

    A single separator is always the decimal one, whatever the locale (a price per kWh has no
    thousands: reading `0,279` as 279 in English is exactly the mistake to avoid). With both
    separators, the locale decides: `1.234,5` in French, `1,234.5` in English. Spaces (also the
    narrow no-break space French uses) are ignored, as is a trailing currency sign."""
    from django.utils.translation import gettext as _

    value = (text or "").strip()
    value = re.sub(r"[\s\u00a0\u202f]", "", value)
    value = re.sub(r"(€|eur|€/kwh|/kwh)$", "", value, flags=re.I)
    if not value:
        raise PriceError(_("Enter a price, e.g. 0,25."))
    if value.startswith("-"):
        raise PriceError(_("A price cannot be negative."))
    decimal_sep, group_sep = (".", ",") if language.startswith("en") else (",", ".")
    if "," in value and "." in value:
        if value.rfind(decimal_sep) < value.rfind(group_sep):
            raise PriceError(_("This price is not a number we can read: write it like 0,25."))
        value = value.replace(group_sep, "").replace(decimal_sep, ".")
    else:
        value = value.replace(",", ".")
    if not re.fullmatch(r"\d+(\.\d+)?|\.\d+", value):
        raise PriceError(_("This price is not a number we can read: write it like 0,25."))
    price = Decimal(value)
    exponent = price.as_tuple().exponent
    assert isinstance(exponent, int)  # the pattern above admits finite numbers only
    if -exponent > MAX_DECIMALS and price != price.quantize(Decimal("0.0001")):
        raise PriceError(_("A price has at most 4 decimals."))
    if price >= Decimal("1000000"):
        raise PriceError(_("This price is too large."))
    return price.quantize(Decimal("0.0001"))


def _local_midnight(community, day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=community.tz)


def _next_price(price: Price):
    return (
        Price.objects.with_scopes_disabled()
        .filter(community_id=price.community_id, valid_from__gt=price.valid_from)
        .order_by("valid_from")
        .first()
    )


def _priced_between(community, start: date, end: date | None) -> bool:
    from chargers.models import ChargingSession

    sessions = ChargingSession.objects.with_scopes_disabled().filter(
        community=community,
        price_per_kwh__isnull=False,
        free=False,  # free charging is priced 0 whatever the price in force
        started_at__gte=_local_midnight(community, start),
    )
    if end is not None:
        sessions = sessions.filter(started_at__lt=_local_midnight(community, end))
    return sessions.exists()


def price_used(price: Price) -> bool:
    """True when a session was priced while `price` was in force: from then on it is history
    (expense notes and exports rely on it) and can be neither corrected nor removed."""
    following = _next_price(price)
    return _priced_between(
        price.community, price.valid_from, following.valid_from if following else None
    )


def _audit(**kwargs):
    from communities.services import audit

    audit(**kwargs)


@transaction.atomic
def set_price(*, community, actor, valid_from: date, price_per_kwh: Decimal) -> Price:
    """Add a kWh price in force from `valid_from` (community local date). Sessions already
    recorded keep the price they were given when they started; only sessions starting on or
    after that date use it."""
    from django.utils.translation import gettext as _

    if price_per_kwh < 0:
        raise PriceError(_("A price cannot be negative."))
    if (
        Price.objects.with_scopes_disabled()
        .filter(community=community, valid_from=valid_from)
        .exists()
    ):
        raise PriceError(
            _("A price already starts on this date: correct it instead of adding another.")
        )
    price = Price.objects.create(
        community=community, valid_from=valid_from, price_per_kwh=price_per_kwh
    )
    _audit(
        community=community,
        actor=actor,
        action="price.add",
        target=f"{price_per_kwh} @ {valid_from}",
        price_id=price.pk,
        valid_from=valid_from.isoformat(),
        price_per_kwh=str(price_per_kwh),
    )
    return price


def _refuse_if_used(price: Price) -> None:
    from django.utils.translation import gettext as _

    if price_used(price):
        raise PriceError(
            _(
                "This price has already been used to price charging sessions: it stays in the "
                "history so that their cost and the expense notes remain right. To change the "
                "price from now on, add a new price starting today or later."
            )
        )


@transaction.atomic
def update_price(*, price: Price, actor, valid_from: date, price_per_kwh: Decimal) -> Price:
    """Correct a price that has not priced any session yet (a typo, a wrong date)."""
    from django.utils.translation import gettext as _

    price = Price.objects.with_scopes_disabled().select_for_update().get(pk=price.pk)
    _refuse_if_used(price)
    if price_per_kwh < 0:
        raise PriceError(_("A price cannot be negative."))
    others = Price.objects.with_scopes_disabled().filter(community_id=price.community_id)
    if others.filter(valid_from=valid_from).exclude(pk=price.pk).exists():
        raise PriceError(_("Another price already starts on this date."))
    if valid_from < price.valid_from:
        # Moving the start earlier would re-label sessions other prices already priced.
        if _priced_between(price.community, valid_from, price.valid_from):
            raise PriceError(
                _(
                    "Sessions were already priced between these dates: the price can only "
                    "start after them."
                )
            )
    old = (price.valid_from, price.price_per_kwh)
    price.valid_from, price.price_per_kwh = valid_from, price_per_kwh
    price.save(update_fields=["valid_from", "price_per_kwh"])
    _audit(
        community=price.community,
        actor=actor,
        action="price.update",
        target=f"{price_per_kwh} @ {valid_from}",
        price_id=price.pk,
        valid_from=valid_from.isoformat(),
        price_per_kwh=str(price_per_kwh),
        old_valid_from=old[0].isoformat(),
        old_price_per_kwh=str(old[1]),
    )
    return price


@transaction.atomic
def delete_price(*, price: Price, actor) -> None:
    """Remove a price that has not priced any session yet."""
    price = Price.objects.with_scopes_disabled().select_for_update().get(pk=price.pk)
    _refuse_if_used(price)
    _audit(
        community=price.community,
        actor=actor,
        action="price.delete",
        target=f"{price.price_per_kwh} @ {price.valid_from}",
        price_id=price.pk,
        valid_from=price.valid_from.isoformat(),
        price_per_kwh=str(price.price_per_kwh),
    )
    price.delete()


def price_history() -> list[Price]:
    """The community's prices (inside its scope), newest first, each with `used`: whether it
    has priced sessions (then it can be neither corrected nor removed). One query per price."""
    items = list(Price.objects.select_related("community").order_by("-valid_from"))
    following: Price | None = None
    for price in items:
        price.used = _priced_between(
            price.community, price.valid_from, following.valid_from if following else None
        )
        following = price
    return items
