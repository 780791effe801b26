"""Charts, phones and fleet pages in a real browser (Playwright on Debian's Chromium): the outlets
page at 390 px (rows as cards, Start/Stop visible, the header on one line), the charts drawn
with the demo data (canvas drawn by Chart.js and the table of numbers present), then
screenshots of the pages this work changed at 1366×768 and 390×844, in French and English, into
/work/shots/portala/ (looked at by a person, not asserted).

Runs in its own pytest process (`make test-browser`, `-m browser`)."""

import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django_scopes import scope
from playwright.sync_api import expect

from accounts.models import User
from chargers.models import ChargingSession
from communities.models import Community, Membership, Role
from tests import builders
from tests.communities.portal_data import make_session
from tests.e2e.test_browser_portal import VIEWPORTS

pytestmark = pytest.mark.browser

SHOTS = Path("/work/shots/portala")


def _context(page, live_server, user, language="en", viewport=(1366, 768)):
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


@pytest.fixture
def fleet(transactional_db, settings):
    settings.LANGUAGE_CODE = "en"
    community = builders.make_community(name="Résidence du Parc", slug="parc")
    builders.make_price(community)
    site = builders.make_site(community, name="Parking des Tilleuls")
    driver = builders.make_user(phone="+33611114444", first_name="Inès", language="en")
    builders.make_member(community, Role.INDIVIDUAL, user=driver)
    builders.make_card(community, holder=driver)
    outlets = []
    for n in range(4):
        charger = builders.make_charger(
            community, site=site, identity=f"PARC-WALLBOX-{n:02d}", connected=True
        )
        outlets.append(builders.make_connector(charger, 1, status="Available"))
    outlets[0].status = "Charging"
    outlets[0].save()
    make_session(outlets[0].charger, outlets[0], holder=driver, active=True, meter_last_wh="9000")
    return {"community": community, "driver": driver}


def _box(locator):
    box = locator.bounding_box()
    assert box is not None
    return box


def test_outlets_on_a_phone_are_cards_with_start_and_stop_visible(fleet, live_server, browser_page):
    context = _context(browser_page, live_server, fleet["driver"], viewport=VIEWPORTS["phone"])
    page = context.new_page()
    page.goto(f"{live_server.url}/c/parc/outlets/")
    start = page.get_by_role("button", name="Start charging").first
    stop = page.get_by_role("button", name="Stop charging")
    for button in (start, stop):
        expect(button).to_be_visible()
        box = _box(button)
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    # Rows are cards: no table header shown, each row as wide as the screen.
    assert not page.locator("#outlet-table thead").is_visible() or (
        _box(page.locator("#outlet-table thead"))["height"] <= 1
    )
    row = _box(page.locator("#outlet-table tbody tr").first)
    assert row["width"] > 300 and row["height"] > 80
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sideways
    header = _box(page.locator("header.topbar"))
    assert header["height"] < 60  # one line
    page.screenshot(path=str(_shot("outlets-driver-phone-en")), full_page=True)
    context.close()


def _shot(name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / f"{name}.png"


def _drawn(page, selector):
    """True once Chart.js drew the chart of this canvas."""
    return page.evaluate(
        "(s) => { const c = document.querySelector(s); return !!(c && window.Chart &&"
        " window.Chart.getChart(c)); }",
        selector,
    )


def test_charts_render_with_the_demo_data_and_screenshots(
    transactional_db, live_server, browser_page
):
    call_command("seed_demo", verbosity=0)
    manager = User.objects.get(phone="+33600000001")
    community = Community.objects.get(slug="demo")
    with scope(community=community):
        session = ChargingSession.objects.filter(community=community).order_by("-started_at")[0]
        member = Membership.objects.filter(community=community, role=Role.INDIVIDUAL).first()
        site = community.sites.order_by("pk").first()
    context = _context(browser_page, live_server, manager)
    page = context.new_page()
    page.goto(f"{live_server.url}/c/demo/")
    canvas = "#usage-month-energy canvas"
    page.wait_for_function(
        "(s) => { const c = document.querySelector(s); return c && window.Chart &&"
        " window.Chart.getChart(c); }",
        arg=canvas,
    )
    assert _drawn(page, "#usage-month-cost canvas")
    rows = page.locator("#usage-month-energy table tbody tr")
    expect(rows).to_have_count(12)
    page.locator("#usage-month-energy summary").click()
    expect(page.locator("#usage-month-energy table")).to_be_visible()
    page.goto(f"{live_server.url}/c/demo/sessions/{session.pk}/")
    page.wait_for_function(
        "() => { const c = document.querySelector('#session-power canvas'); return c &&"
        " window.Chart && window.Chart.getChart(c); }"
    )
    assert _drawn(page, "#session-energy canvas")
    expect(page.locator("#session-energy table tbody tr").first).to_be_attached()
    context.close()

    pages = {
        "dashboard": "/c/demo/",
        "outlets": "/c/demo/outlets/",
        "sessions": "/c/demo/sessions/",
        "session": f"/c/demo/sessions/{session.pk}/",
        "users": "/c/demo/users/",
        "user": f"/c/demo/users/{member.pk}/",
        "site": f"/c/demo/sites/{site.pk}/",
    }
    for language in ("fr", "en"):
        for device, viewport in VIEWPORTS.items():
            context = _context(browser_page, live_server, manager, language, viewport)
            page = context.new_page()
            for name, path in pages.items():
                page.goto(f"{live_server.url}{path}")
                if page.locator("canvas[data-chart]").count():
                    page.wait_for_function("() => window.Chart !== undefined")
                    page.wait_for_timeout(150)
                page.screenshot(path=str(_shot(f"{name}-{device}-{language}")), full_page=True)
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport[0], f"{name} {device} {language}: {width} px wide"
                assert _box(page.locator("header.topbar"))["height"] < 60, "header on one line"
                assert not re.search(r"Traceback|Server Error", page.content())
            context.close()
