"""An outlet's number, printed the same way by the portal, the sessions CSV and the expense
notes (`chargers.models.outlet_number`)."""

import pytest

from chargers.models import Connector, outlet_number
from tests import builders

pytestmark = pytest.mark.community_scope


@pytest.mark.parametrize(
    "evse, connector, number",
    [(1, 1, "1"), (2, 2, "2"), (2, 1, "2.1"), (1, 2, "1.2")],
)
def test_an_outlet_is_its_connector_or_evse_dot_connector(evse, connector, number):
    assert outlet_number(evse, connector) == number


def test_the_portal_names_an_outlet_by_its_charger_and_number(community, charger):
    charger.name = "Garage"
    charger.save()
    builders.make_connector(charger, 1, evse_id=2)
    builders.make_connector(charger, 3)
    names = sorted(str(c) for c in Connector.objects.filter(charger=charger))
    assert names == ["Garage #2.1", "Garage #3"]
