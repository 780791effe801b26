"""The site's meters in a real browser (Playwright on Debian's Chromium): an installer with
full access adds an MQTT meter — the form shows only the chosen kind's fields — then the site
page shows it with its last reading. Screenshots of the site page and the meter form at
1366×768 and 390×844, in French and English, go to /work/shots/meters/ (looked at by a person,
not asserted).

Runs in its own pytest process (`make test-browser`, `-m browser`)."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from meters.models import Meter, MeterReading
from tests import builders

from .test_browser_portal import VIEWPORTS, _logged_in_context

pytestmark = pytest.mark.browser

SHOTS = Path("/work/shots/meters") if Path("/work").is_dir() else Path("/tmp/shots-meters")


@pytest.fixture
def world(transactional_db, settings, live_server):
    settings.LANGUAGE_CODE = "en"
    community = builders.make_community(name="Entrepôts Martin", slug="martin")
    site = builders.make_site(community, name="Entrepôt de Bercy")
    company = builders.make_company(name="Durand Électricité")
    installer = builders.make_installer(company, user=builders.make_user(language="en"))
    builders.make_grant(community, company, "full")
    builders.make_charger(community, site=site, identity="DEMO-ZAPTEC-01")
    return {"community": community, "site": site, "installer": installer}


def test_an_installer_adds_an_mqtt_meter(world, live_server, browser_page):
    context = _logged_in_context(browser_page, live_server, world["installer"])
    page = context.new_page()
    site = world["site"]
    page.goto(f"{live_server.url}/c/martin/sites/{site.pk}/")
    page.get_by_role("link", name="+ Add a meter").click()
    expect(page.get_by_label("Topic")).to_be_visible()  # MQTT is the default kind
    expect(page.get_by_label("Host or IP address")).to_be_hidden()
    page.get_by_label("Read over").select_option("modbus")
    expect(page.get_by_label("Host or IP address")).to_be_visible()
    expect(page.get_by_label("Topic")).to_be_hidden()
    page.get_by_label("Read over").select_option("mqtt")
    page.get_by_label("Name").fill("Compteur général")
    page.get_by_label("Topic").fill("tele/bercy/SENSOR")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Give the JSON path of the power")).to_be_visible()  # server check
    page.get_by_label("JSON path of the power of L1").fill("ENERGY.Power.0")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(rf"/c/martin/sites/{site.pk}/$"))
    expect(page.get_by_text("Meter added.")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("Compteur général"))
    expect(row.get_by_text("Silent")).to_be_visible()
    assert Meter.objects.with_scopes_disabled().get(site_id=site.pk).config["topic"] == (
        "tele/bercy/SENSOR"
    )
    context.close()


def test_screenshots_of_the_meter_pages(world, live_server, browser_page):
    site, community = world["site"], world["community"]
    now = timezone.now()
    grid = builders.make_meter(
        site,
        name="Compteur général",
        config={"topic": "tele/bercy/SENSOR", "paths": {"power_w_l1": "ENERGY.Power.0"}},
        last_reading_at=now - timedelta(seconds=4),
    )
    MeterReading.objects.create(
        community=community,
        meter=grid,
        at=now - timedelta(seconds=4),
        power_w_l1=6120.5,
        power_w_l2=4210.0,
        power_w_l3=-850.0,
        power_w_total=9480.5,
    )
    builders.make_meter(
        site,
        name="Onduleur toiture",
        role="solar",
        kind="modbus",
        config={"host": "192.168.1.40", "model": "sdm630"},
        last_reading_at=now - timedelta(minutes=9),
        last_error="Modbus 192.168.1.40:502: cannot connect to 192.168.1.40:502",
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    for language in ("fr", "en"):
        for name, viewport in VIEWPORTS.items():
            context = _logged_in_context(
                browser_page, live_server, world["installer"], language, viewport
            )
            page = context.new_page()
            page.goto(f"{live_server.url}/c/martin/sites/{site.pk}/")
            page.locator("#site-meters").scroll_into_view_if_needed()
            page.screenshot(path=SHOTS / f"site-{name}-{language}.png", full_page=True)
            page.goto(f"{live_server.url}/c/martin/meters/{grid.pk}/edit/")
            page.screenshot(path=SHOTS / f"meter-form-{name}-{language}.png", full_page=True)
            context.close()
