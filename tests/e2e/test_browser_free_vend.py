"""Free charging and the list version in a real browser: a manager sees a free session as free
(session list and page), and on the charger page who may charge on each outlet now, that the
charger was told to stop asking for cards, and the list version the charger reported. Then
screenshots of those pages at 1366×768 and 390×844 in French and English, into
/work/shots/freevend/ (looked at by a person, not asserted).

Runs in its own pytest process (`make test-browser`, `-m browser`)."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from communities.models import Role
from rules import services
from rules.models import LocalList, Mode
from tests import builders
from tests.communities.portal_data import make_session

from .test_browser_portal import _logged_in_context, shoot_pages

pytestmark = pytest.mark.browser

SHOTS = Path("/work/shots/freevend")


@pytest.fixture
def world(transactional_db, settings, live_server):
    settings.LANGUAGE_CODE = "en"
    community = builders.make_community(name="Résidence du Parc", slug="parc")
    builders.make_price(community)
    manager = builders.make_user(first_name="Marc", last_name="Manager", language="en")
    builders.make_member(community, Role.MANAGER, user=manager)
    driver = builders.make_member(
        community, Role.INDIVIDUAL, user=builders.make_user(first_name="Lucas", last_name="Bernard")
    )
    site = builders.make_site(community, name="Parking visiteurs")
    charger = builders.make_charger(
        community, site=site, identity="SPK-FREE-01", connected=True, ocpp_version="2.0.1"
    )
    first = builders.make_connector(charger, 1, status="Available")
    second = builders.make_connector(charger, 2, status="Charging")
    now = timezone.now()
    make_session(
        charger, second, driver.user, started_at=now - timedelta(hours=5), energy_wh="12500"
    )
    free = make_session(
        charger,
        first,
        None,
        started_at=now - timedelta(hours=2),
        energy_wh="8400",
        price="0",
        id_tag="FREEVEND",
        free=True,
    )
    services.set_policy(community=community, actor=manager, mode=Mode.FREE, site=site)
    services.set_policy(community=community, actor=manager, mode=Mode.NOBODY, connector=second)
    LocalList.objects.create(
        community=community,
        charger=charger,
        version=3,
        entries={},
        supported=True,
        in_sync=True,
        offline_mode="known",
        synced_at=now - timedelta(days=1),
        reported_version=3,
        version_checked_at=now - timedelta(minutes=10),
        free_vend="charger",
    )
    return {"manager": manager, "charger": charger, "free": free}


@pytest.mark.community_scope("world")
def test_a_manager_sees_free_charging_and_the_list_version(world, live_server, browser_page):
    context = _logged_in_context(browser_page, live_server, world["manager"])
    page = context.new_page()
    page.goto(f"{live_server.url}/c/parc/sessions/")
    expect(page.get_by_title("Free charging: not billed")).to_have_count(1)
    page.goto(f"{live_server.url}/c/parc/sessions/{world['free'].pk}/")
    expect(page.get_by_text("Free charging: not billed")).to_be_visible()
    page.goto(f"{live_server.url}/c/parc/chargers/{world['charger'].pk}/")
    expect(page.get_by_role("heading", name="Who may charge now")).to_be_visible()
    expect(page.get_by_text("The charger no longer asks for a card")).to_be_visible()
    expect(page.get_by_text("Matches")).to_be_visible()
    context.close()

    manager, charger = world["manager"], world["charger"]
    pages = [
        ("sessions", manager, "/c/parc/sessions/"),
        ("session-free", manager, f"/c/parc/sessions/{world['free'].pk}/"),
        ("charger", manager, f"/c/parc/chargers/{charger.pk}/"),
    ]
    SHOTS.mkdir(parents=True, exist_ok=True)
    shoot_pages(browser_page, live_server, pages, SHOTS)
    assert len(list(SHOTS.glob("*.png"))) >= len(pages) * 4
