"""The Power page in a real browser (Playwright on Debian's Chromium): the live chart is drawn
from the controller's history, the chargers' limits and an alert show, the configuration form
and a charger's own settings page save; then screenshots at 1366×768 and 390×844, in French and English, into /work/shots/power/
(looked at by a person, not asserted).

Runs in its own pytest process (`make test-browser`, `-m browser`)."""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from communities.models import Role
from power.models import ChargerPower, PowerSample
from tests import builders
from tests.e2e.test_browser_portal import VIEWPORTS
from tests.power.conftest import make_managed_charger, make_site_power, start_session

pytestmark = pytest.mark.browser

SHOTS = Path("/work/shots/power")


@pytest.fixture
def world(transactional_db, settings, live_server):
    settings.LANGUAGE_CODE = "en"
    community = builders.make_community(name="Entrepôt", slug="entrepot")
    manager = builders.make_user(phone="+33611110000", first_name="Maud", language="en")
    builders.make_member(community, Role.MANAGER, user=manager)
    site = builders.make_site(community, name="Bercy")
    make_site_power(site, margin_a=Decimal("2"))
    chargers = [make_managed_charger(site, f"BERCY-{n}") for n in (1, 2, 3)]
    now = timezone.now()
    for n, state in enumerate(chargers[:2]):
        start_session(state.charger, str(n + 1))
    ChargerPower.objects.filter(pk=chargers[0].pk).update(
        limit_a=10.0, draw_a=9.6, failsafe_a=10.0, limit_at=now
    )
    ChargerPower.objects.filter(pk=chargers[1].pk).update(
        limit_a=10.0, draw_a=16.0, failsafe_a=10.0, non_compliant_since=now - timedelta(minutes=1)
    )
    # A twin charger: two sessions, its outlet 2 drawing 20 A for 16 A allowed.
    twin = make_managed_charger(site, "BERCY-TWIN")
    builders.make_connector(twin.charger, 2)
    start_session(twin.charger, "31")
    second = start_session(twin.charger, "32")
    second.connector = twin.charger.connectors.get(connector_id=2)
    second.save()
    since = (now - timedelta(minutes=2)).isoformat()
    ChargerPower.objects.filter(pk=twin.pk).update(
        limit_a=28.0,
        draw_a=32.0,
        failsafe_a=5.3,
        outlet_limits={"1": 12.0, "2": 16.0},
        outlet_obedience={"2": {"over": since, "since": since, "draw": 20.0}},
        non_compliant_since=now - timedelta(minutes=2),
    )
    for minute in range(60):
        load = 6000 + 3000 * (minute % 12 < 4)
        PowerSample.objects.create(
            community=community,
            site=site,
            at=now - timedelta(minutes=60 - minute),
            grid_w=load + 9000,
            chargers_w=9000,
            solar_w=None,
            limit_w=30 * 230 * 3,
        )
    return {"community": community, "manager": manager, "site": site}


def logged_in(page, live_server, user, language, viewport):
    client = Client()
    client.force_login(user)
    context = page.context.browser.new_context(
        locale="fr-FR" if language == "fr" else "en-GB",
        viewport={"width": viewport[0], "height": viewport[1]},
    )
    context.add_cookies(
        [
            {
                "name": "sessionid",
                "value": client.cookies["sessionid"].value,
                "url": live_server.url,
            },
            {"name": "django_language", "value": language, "url": live_server.url},
        ]
    )
    return context


@pytest.mark.community_scope("world")
def test_power_page_draws_the_chart_shows_alerts_and_saves_settings(
    world, live_server, browser_page
):
    url = f"{live_server.url}/c/entrepot/sites/{world['site'].pk}/power/"
    context = logged_in(browser_page, live_server, world["manager"], "en", (1366, 768))
    page = context.new_page()
    page.goto(url)
    expect(page.get_by_role("heading", name="Power — Bercy")).to_be_visible()
    expect(page.locator("#power-chart canvas")).to_be_visible()
    assert page.evaluate("() => !!Chart.getChart(document.querySelector('#power-chart canvas'))")
    expect(page.get_by_text("BERCY-2 does not obey its limit")).to_be_visible()
    expect(page.get_by_text("Outlet 2 of BERCY-TWIN does not obey its limit")).to_be_visible()
    page.get_by_label("Safety margin (A)").fill("3")
    page.get_by_label("Peak shaving").check()
    page.get_by_label("Peak cap (kW)").fill("15")
    window = page.locator('[data-window="0"]')
    window.get_by_label("Mon").check()
    window.get_by_label("From").fill("17:00")
    window.get_by_label("Until").fill("20:00")
    page.get_by_role("button", name="Save").first.click()
    expect(page.get_by_text("Power settings saved.")).to_be_visible()
    expect(page.get_by_text("Peak shaving at 15.0 kW")).to_be_visible()
    # A charger's wiring and currents: the Edit link of its line, its own small form.
    page.locator('[data-charger-settings="BERCY-1"]').get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Power settings — BERCY-1")).to_be_visible()
    page.get_by_label("Maximum current (A)").fill("20")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Settings of BERCY-1 saved.")).to_be_visible()
    expect(page.locator('[data-charger-settings="BERCY-1"]')).to_contain_text("–20.0 A")
    # The chargers are searched (a site may have 1,000 of them, 50 a page).
    page.get_by_label("Search").fill("twin")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tr[data-charger]")).to_have_count(1)
    expect(page.locator('tr[data-charger="BERCY-TWIN"]')).to_be_visible()
    context.close()

    SHOTS.mkdir(parents=True, exist_ok=True)
    for language in ("en", "fr"):
        for device, viewport in VIEWPORTS.items():
            context = logged_in(browser_page, live_server, world["manager"], language, viewport)
            page = context.new_page()
            response = page.goto(url)
            assert response.status == 200
            page.wait_for_timeout(300)
            page.screenshot(path=SHOTS / f"power-{device}-{language}.png", full_page=True)
            context.close()
