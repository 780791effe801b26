from datetime import date
from decimal import Decimal

import pytest

from billing import prices
from billing.models import Price
from communities.models import AuditEvent
from tests.communities.portal_data import local, make_session

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope


def test_add_price_from_settings_page(manager_client, community):
    response = manager_client.post(
        "/c/tilleuls/settings/prices/add/", {"valid_from": "2030-01-01", "price_per_kwh": "0.3100"}
    )
    assert response["Location"] == "/c/tilleuls/settings/"
    assert Price.objects.get(
        community=community, valid_from=date(2030, 1, 1)
    ).price_per_kwh == Decimal("0.31")
    assert AuditEvent.objects.filter(action="price.add").exists()
    page = manager_client.get("/c/tilleuls/settings/").content.decode()
    assert "0.3100" in page or "0,3100" in page


def test_new_price_leaves_recorded_sessions_alone(manager_client, community, charger):
    session = make_session(charger, energy_wh="10000", started_at=local(community, 2031, 5, 2))
    manager_client.post(
        "/c/tilleuls/settings/prices/add/", {"valid_from": "2031-05-01", "price_per_kwh": "0.5"}
    )
    session.refresh_from_db()
    assert session.price_per_kwh == Decimal("0.2516") and session.cost == Decimal("2.52")
    assert prices.price_at(community, local(community, 2031, 5, 2)) == Decimal("0.5")


def test_same_date_twice_refused(community, manager):
    with pytest.raises(prices.PriceError):
        prices.set_price(
            community=community,
            actor=manager,
            valid_from=date(2020, 1, 1),
            price_per_kwh=Decimal("1"),
        )


def test_invalid_price_shows_an_error(manager_client, community):
    response = manager_client.post(
        "/c/tilleuls/settings/prices/add/", {"valid_from": "x", "price_per_kwh": "-1"}, follow=True
    )
    assert Price.objects.filter(community=community).count() == 1
    assert "error" in response.content.decode()
