"""The demo's meter: a building load that moves with the time of day, on the demo site."""

from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from meters.config import SimulatedConfig
from meters.demo import DEMO_SITE_NAME, DEMO_TOPIC, building_load, ensure_demo_meter
from meters.models import Meter

from ..builders import make_community, make_site


def total(at):
    return sum(building_load(at, SimulatedConfig()))


def test_the_building_load_moves_during_the_day_and_is_reproducible():
    night = datetime(2026, 6, 16, 1, 30, tzinfo=UTC)  # a Tuesday, 03:30 in Paris
    morning = datetime(2026, 6, 16, 8, 30, tzinfo=UTC)  # 10:30 in Paris
    compressor = datetime(2026, 6, 16, 8, 5, tzinfo=UTC)  # 10:05: the compressor runs
    assert total(morning) > 2 * total(night)
    assert total(compressor) > total(morning) + 2500
    assert building_load(morning, SimulatedConfig()) == building_load(morning, SimulatedConfig())
    l1, l2, l3 = building_load(morning, SimulatedConfig())
    assert l1 > l2 > l3 > 0  # an unbalanced three-phase building


@pytest.mark.django_db
def test_the_demo_site_gets_one_grid_meter_that_can_switch_to_mqtt():
    site = make_site(make_community(), name=DEMO_SITE_NAME)
    first = ensure_demo_meter(site)
    assert ensure_demo_meter(site).pk == first.pk
    assert (first.kind, first.role) == (Meter.Kind.SIMULATED, Meter.Role.GRID)
    call_command("demo_meter", "--kind", "mqtt")
    meter = Meter.objects.with_scopes_disabled().get(pk=first.pk)
    assert meter.kind == Meter.Kind.MQTT and meter.config["topic"] == DEMO_TOPIC
    assert Meter.objects.with_scopes_disabled().filter(site=site).count() == 1
