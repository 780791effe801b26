"""The controller is an entry point like the worker: it runs with no community in scope and
serves every community's sites in one cycle."""

import pytest

from chargers.models import ChargerCommand
from power.controller import Controller

from .. import builders
from .conftest import make_managed_charger, make_site_power, start_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_communities(community, site):
    other = builders.make_site(builders.make_community(slug="other-place"))
    for place, identity in ((site, "SCOPE-A"), (other, "SCOPE-B")):
        make_site_power(place)
        state = make_managed_charger(place, identity)
        start_session(state.charger, "1")
    return {site.community_id, other.community_id}


def test_one_cycle_serves_every_community_without_a_scope(two_communities):
    report = Controller().cycle()
    assert report.sites == 2 and report.errors == 0
    sent = ChargerCommand.objects.with_scopes_disabled().filter(action="SetChargingProfile")
    assert set(sent.values_list("charger__identity", flat=True)) == {"SCOPE-A", "SCOPE-B"}
    assert {c.community_id for c in sent} == two_communities
