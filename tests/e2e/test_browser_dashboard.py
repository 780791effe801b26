"""The dashboard in a real browser (Playwright on Debian's Chromium), with a fleet in every
state: outlets by state, this month's figures, sessions in progress (their real number, ten
listed), the latest sessions and the energy/cost charts drawn from the rollup. Screenshots of
the dashboard (manager and driver) and the sessions page at 1366×768 and 390×844, in French
and English, into /work/shots/dash/ (looked at by a person).

Runs in its own pytest process (`make test-browser`, `-m browser`)."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from communities.models import Role
from tests import builders
from tests.communities.portal_data import make_session
from tests.e2e.test_browser_portal import _logged_in_context, shoot_pages

pytestmark = pytest.mark.browser

SHOTS = Path("/work/shots/dash")


@pytest.fixture
def fleet(transactional_db, settings):
    settings.LANGUAGE_CODE = "en"
    community = builders.make_community(name="Résidence du Parc", slug="parc")
    builders.make_price(community)
    manager = builders.make_user(phone="+33600000002", first_name="Marc", last_name="Manager")
    builders.make_member(community, Role.OWNER, user=manager)
    drivers = [
        builders.make_member(
            community, Role.INDIVIDUAL, user=builders.make_user(first_name=f, last_name="Durand")
        ).user
        for f in ("Ivy", "Léa", "Hugo")
    ]
    now = timezone.now()
    sites = [builders.make_site(community, name=n) for n in ("Parking A", "Parking B")]
    statuses = ["Charging"] * 12 + ["Available"] * 4 + ["Faulted", "Preparing"]
    for i, status in enumerate(statuses):
        charger = builders.make_charger(
            community, site=sites[i % 2], identity=f"SPK-{i:04d}", connected=i != 15
        )
        connector = builders.make_connector(charger, 1, status=status)
        holder = drivers[i % 3]
        for days in (3, 20, 45, 80, 130, 200, 300):
            make_session(
                charger,
                connector,
                holder,
                energy_wh=str(4000 + 900 * ((i + days) % 9)),
                started_at=now - timedelta(days=days, hours=i),
            )
        if status == "Charging":
            make_session(
                charger,
                connector,
                holder,
                active=True,
                meter_last_wh=str(2000 + 700 * i),
                started_at=now - timedelta(minutes=20 + 7 * i),
            )
    return {"community": community, "manager": manager, "driver": drivers[0]}


@pytest.mark.community_scope("fleet")
def test_dashboard_of_a_fleet(fleet, live_server, browser_page):
    context = _logged_in_context(browser_page, live_server, fleet["manager"])
    page = context.new_page()
    page.goto(f"{live_server.url}/c/parc/")
    # Every session in progress is counted, ten are listed.
    expect(page.get_by_role("heading", name="Sessions in progress")).to_contain_text("(12)")
    assert page.locator("#dashboard-live tbody tr").count() == 10
    for chart in ("usage-day-energy", "usage-month-cost"):
        expect(page.locator(f"#{chart} canvas")).to_be_visible()
    context.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = [
        ("dashboard-manager", fleet["manager"], "/c/parc/"),
        ("dashboard-driver", fleet["driver"], "/c/parc/"),
        ("sessions", fleet["manager"], "/c/parc/sessions/"),
    ]
    shoot_pages(browser_page, live_server, pages, SHOTS)
    assert len(list(SHOTS.glob("dashboard-*.png"))) >= 8
