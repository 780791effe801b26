"""Builders for power-management tests: a managed site with chargers in session."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from chargers.models import ChargingSession, MeterSample
from power.models import ChargerPower, SitePower

from .. import builders


def make_site_power(site, **overrides) -> SitePower:
    fields = {
        "community": site.community,
        "site": site,
        "phases": 3,
        "voltage_v": 230,
        "limit_a": Decimal("32"),
        "margin_a": Decimal("0"),
        "load_balancing": True,
    }
    fields.update(overrides)
    return SitePower.objects.create(**fields)


def make_managed_charger(site, identity, version="1.6", **power) -> ChargerPower:
    charger = builders.make_charger(
        site.community,
        site=site,
        identity=identity,
        ocpp_version=version,
        connected=True,
        connected_since=timezone.now() - timedelta(hours=1),
    )
    builders.make_connector(charger, 1)
    return ChargerPower.objects.create(community=site.community, charger=charger, **power)


def start_session(charger, transaction_id, started_minutes_ago=30) -> ChargingSession:
    return ChargingSession.objects.create(
        community=charger.community,
        charger=charger,
        connector=charger.connectors.first(),
        transaction_id=transaction_id,
        started_at=timezone.now() - timedelta(minutes=started_minutes_ago),
    )


def sample_current(session, amperes, at=None, phases=3):
    at = at or timezone.now()
    for n in range(1, phases + 1):
        MeterSample.objects.create(
            community=session.community,
            session=session,
            timestamp=at,
            measurand="Current.Import",
            phase=f"L{n}",
            value=Decimal(str(amperes)),
            unit="A",
        )


@pytest.fixture
def managed(community, site):
    """A 3 × 32 A site balancing three 1.6 chargers, two of them in session."""
    power = make_site_power(site)
    chargers = [make_managed_charger(site, f"PWR-{n}") for n in (1, 2, 3)]
    sessions = [start_session(cp.charger, str(100 + n)) for n, cp in enumerate(chargers[:2])]
    return {"community": community, "power": power, "chargers": chargers, "sessions": sessions}
