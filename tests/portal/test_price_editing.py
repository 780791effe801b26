"""A mistyped price can be undone: comma or dot, a warning above a plausible bound, correcting
or removing a price that has not priced a session yet."""

from datetime import date
from decimal import Decimal

import pytest

from billing import prices
from billing.models import Price
from communities.models import AuditEvent
from tests.communities.portal_data import local, make_session


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


@pytest.mark.parametrize(
    "text,language,expected",
    [
        ("0,279", "fr", "0.279"),
        ("0.279", "fr", "0.279"),
        ("0,279", "en", "0.279"),  # one separator is always the decimal one
        ("0.279", "en", "0.279"),
        (" 0,2790 € ", "fr", "0.279"),
        ("1.234,5", "fr", "1234.5"),
        ("1,234.5", "en", "1234.5"),
        ("0\u202f279", "fr", "279"),
        (",25", "fr", "0.25"),
        ("2790", "fr", "2790"),
    ],
)
def test_parse_price(text, language, expected):
    assert prices.parse_price(text, language) == Decimal(expected)


@pytest.mark.parametrize("text", ["", "abc", "-0,2", "0,2,3", "1,234.5", "0,12345", "1e3"])
def test_unreadable_prices_are_refused(text):
    with pytest.raises(prices.PriceError):
        prices.parse_price(text, "fr")


@pytest.mark.community_scope
def test_comma_price_from_the_settings_page(manager_client, community):
    response = manager_client.post(
        "/c/tilleuls/settings/prices/add/", {"valid_from": "2030-01-01", "price_per_kwh": "0,279"}
    )
    assert response["Location"] == "/c/tilleuls/settings/"
    assert Price.objects.get(valid_from=date(2030, 1, 1)).price_per_kwh == Decimal("0.279")


@pytest.mark.community_scope
def test_implausible_price_needs_a_confirmation(manager_client, community):
    data = {"valid_from": "2030-01-01", "price_per_kwh": "2790"}
    response = manager_client.post("/c/tilleuls/settings/prices/add/", data)
    page = response.content.decode()
    assert response.status_code == 400 and "unusually high" in page
    assert 'name="confirm_high"' in page and 'type="checkbox"' in page
    assert not Price.objects.filter(valid_from=date(2030, 1, 1)).exists()
    response = manager_client.post(
        "/c/tilleuls/settings/prices/add/", {**data, "confirm_high": "on"}
    )
    assert response.status_code == 302
    assert Price.objects.get(valid_from=date(2030, 1, 1)).price_per_kwh == Decimal("2790")


@pytest.mark.community_scope
def test_unused_price_can_be_corrected_and_removed(manager_client, community, charger):
    price = Price.objects.create(
        community=community, valid_from=date(2031, 1, 1), price_per_kwh=Decimal("2790")
    )
    page = manager_client.get("/c/tilleuls/settings/").content.decode()
    assert f"/settings/prices/{price.pk}/edit/" in page
    response = manager_client.post(
        f"/c/tilleuls/settings/prices/{price.pk}/edit/",
        {"valid_from": "2031-01-01", "price_per_kwh": "0,279"},
    )
    assert response.status_code == 302
    price.refresh_from_db()
    assert price.price_per_kwh == Decimal("0.279")
    assert AuditEvent.objects.filter(action="price.update").exists()
    url = f"/c/tilleuls/settings/prices/{price.pk}/delete/"
    assert "cannot be undone" in manager_client.get(url).content.decode()
    manager_client.post(url, {})  # not confirmed
    assert Price.objects.filter(pk=price.pk).exists()
    assert manager_client.post(url, {"understood": "on"}).status_code == 302
    assert not Price.objects.filter(pk=price.pk).exists()
    assert AuditEvent.objects.filter(action="price.delete").exists()


@pytest.mark.community_scope
def test_used_price_is_history(manager_client, community, charger):
    used = Price.objects.get(community=community)  # 2020-01-01, from the fixture
    make_session(charger, energy_wh="1000", started_at=local(community, 2024, 3, 1))
    assert prices.price_used(used)
    with pytest.raises(prices.PriceError, match="already been used"):
        prices.delete_price(price=used, actor=None)
    with pytest.raises(prices.PriceError, match="already been used"):
        prices.update_price(
            price=used, actor=None, valid_from=used.valid_from, price_per_kwh=Decimal("1")
        )
    page = manager_client.get("/c/tilleuls/settings/").content.decode()
    assert f"/settings/prices/{used.pk}/edit/" not in page and "used" in page
    response = manager_client.post(f"/c/tilleuls/settings/prices/{used.pk}/delete/", {})
    assert response.status_code == 302 and Price.objects.filter(pk=used.pk).exists()


def test_a_correction_cannot_move_a_price_over_priced_sessions(community, charger):
    make_session(charger, energy_wh="1000", started_at=local(community, 2031, 3, 1))
    future = Price.objects.create(
        community=community, valid_from=date(2031, 6, 1), price_per_kwh=Decimal("0.3")
    )
    with pytest.raises(prices.PriceError, match="already priced between"):
        prices.update_price(
            price=future, actor=None, valid_from=date(2031, 2, 1), price_per_kwh=Decimal("0.3")
        )
