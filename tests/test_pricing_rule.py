"""One pricing rule (billing.prices.session_cost, half-up to the cent) wherever a cost is shown:
issue 11's case — 1,025 Wh at 0.2000 €/kWh is 0.205 €, shown 0.21 € on the dashboard total and
on the session's row alike (the total used to say 0.20 €, rounding half-even)."""

from decimal import Decimal

import pytest

from billing.prices import session_cost
from chargers import selectors
from communities.templatetags import portal
from tests import builders
from tests.communities.portal_data import make_session

pytestmark = pytest.mark.community_scope


@pytest.fixture
def half_cent_session(community, site, manager):
    charger = builders.make_charger(community, site=site, connected=True)
    connector = builders.make_connector(charger, 1, status="Charging")
    return make_session(
        charger,
        connector,
        holder=manager,
        active=True,
        meter_start_wh="1000",
        meter_last_wh="2025",
        price="0.2000",
    )


def test_the_rule_rounds_half_up_to_the_cent():
    assert session_cost(1025, Decimal("0.2000")) == Decimal("0.21")
    assert session_cost(Decimal("1024.9"), Decimal("0.2000")) == Decimal("0.20")
    assert session_cost(1000, None) is None


def test_dashboard_total_and_outlet_row_agree(manager_client, community, half_cent_session):
    assert portal.session_cost(half_cent_session) == Decimal("0.21")
    assert selectors.month_totals(community)["cost"] == Decimal("0.21")
    response = manager_client.get("/c/tilleuls/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.context["totals"]["cost"] == Decimal("0.21")
    page = response.content.decode()
    assert "€0.21<" in page and "€0.20<" not in page  # the total
    assert "~ €0.21<" in page  # the session's row (cost so far)


def test_a_completed_session_shows_its_stored_cost(community, site, manager):
    charger = builders.make_charger(community, site=site)
    done = make_session(charger, holder=manager, energy_wh="1025", price="0.2000")
    done.cost = session_cost(done.energy_wh, done.price_per_kwh)
    done.save(update_fields=["cost"])
    assert portal.session_cost(done) == Decimal("0.21")
    assert selectors.month_totals(community)["cost"] == Decimal("0.21")
