"""Builders for the portal tests that tests/builders.py does not have (sessions, messages)."""

import itertools
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from chargers.models import ChargingSession, OcppMessage

_tx = itertools.count(1000)


def make_session(
    charger,
    connector=None,
    holder=None,
    card=None,
    *,
    started_at=None,
    energy_wh="0",
    active=False,
    meter_start_wh="1000",
    meter_last_wh=None,
    price="0.2516",
    **overrides,
) -> ChargingSession:
    started_at = started_at or timezone.now()
    energy = Decimal(energy_wh)
    price_d = Decimal(price) if price is not None else None
    fields = dict(
        community=charger.community,
        charger=charger,
        connector=connector,
        holder=holder,
        card=card,
        transaction_id=str(next(_tx)),
        started_at=started_at,
        state=ChargingSession.State.ACTIVE if active else ChargingSession.State.COMPLETED,
        meter_start_wh=Decimal(meter_start_wh),
        price_per_kwh=price_d,
    )
    if active:
        fields["meter_last_wh"] = Decimal(meter_last_wh) if meter_last_wh is not None else None
    else:
        fields.update(
            stopped_at=started_at + timezone.timedelta(hours=2),
            meter_stop_wh=Decimal(meter_start_wh) + energy,
            energy_wh=energy,
            cost=(energy / 1000 * (price_d or 0)).quantize(Decimal("0.01")),
        )
    fields.update(overrides)
    return ChargingSession.objects.create(**fields)


def make_message(charger, action="Heartbeat", at=None, **overrides) -> OcppMessage:
    fields = dict(
        community=charger.community,
        charger=charger,
        direction="in",
        message_type=2,
        unique_id=f"u{next(_tx)}",
        action=action,
        payload={},
        at=at or timezone.now(),
    )
    fields.update(overrides)
    return OcppMessage.objects.create(**fields)


def local(community, *args) -> datetime:
    return datetime(*args, tzinfo=community.tz)
