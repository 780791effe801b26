"""The manager's key journey in a real browser (Playwright on Debian's Chromium): SMS-code
login → add a site → add a user → register a charger → watch its outlet change state live when
a simulated charger connects to the real gateway process (events through Redis and a worker).

Runs in its own pytest process (`make test-browser`): Playwright's sync API and asyncio.run()
do not share a process well."""

import asyncio
import re
import threading

import pytest
from playwright.sync_api import expect

from accounts import sms
from communities.models import Membership, Role, Site
from simulator.fleet import connect_charger
from tests import builders

# The test body reads the community inside its scope (the live server runs views in its own
# thread, which starts with no scope: the middleware enters it there).
pytestmark = [pytest.mark.browser, pytest.mark.community_scope("manager_account")]

MANAGER_PHONE = "+33611223344"


class SimulatedChargerThread(threading.Thread):
    """A 1.6J charger in its own event loop: connects, boots, reports Available, then Charging
    when told to, and hangs up when told to. Every wait is bounded."""

    def __init__(self, url, identity):
        super().__init__(daemon=True)
        self.url, self.identity = url, identity
        self.start_charging = threading.Event()
        self.hang_up = threading.Event()
        self.error = None

    def run(self):
        try:
            asyncio.run(asyncio.wait_for(self._scenario(), 90))
        except Exception as exc:  # reported by the test
            self.error = exc

    async def _wait(self, event):
        await asyncio.wait_for(asyncio.to_thread(event.wait, 60), 61)

    async def _scenario(self):
        async with connect_charger(self.url, self.identity, "1.6") as charger:
            await charger.boot()
            await charger.status(1, "Available")
            await self._wait(self.start_charging)
            await charger.status(1, "Charging")
            await self._wait(self.hang_up)


@pytest.fixture
def manager_account(e2e_env, settings):
    settings.SMS_BACKEND = "memory"
    sms.outbox.clear()
    community = builders.make_community(name="Résidence du Parc", slug="parc")
    builders.make_price(community)
    user = builders.make_user(
        phone=MANAGER_PHONE, first_name="Alice", last_name="Durand", language="en"
    )
    builders.make_member(community, Role.MANAGER, user=user)
    return community


def test_manager_journey_login_site_user_charger_live_outlet(
    manager_account, live_server, worker, gateway_process, browser_page
):
    page = browser_page
    page.goto(f"{live_server.url}/")

    # Log in with the phone number and the code received by SMS.
    page.get_by_label("Phone number").fill("06 11 22 33 44")
    page.get_by_role("button", name="Receive a code").click()
    assert len(sms.outbox) == 1 and sms.outbox[0].to == MANAGER_PHONE
    code = re.search(r"\b(\d{6})\b", sms.outbox[0].body).group(1)
    page.get_by_label("Code received by SMS").fill(code)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/c/parc/$"))

    # Add a site.
    page.get_by_role("link", name="Management").click()  # tabs are grouped
    page.get_by_role("link", name="Sites").click()
    page.get_by_role("link", name="Add a site").click()
    page.get_by_label("Name").fill("Parking visiteurs")
    page.get_by_label("Address").fill("3 allée des Tilleuls, Lyon")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Parking visiteurs")).to_be_visible()
    site = Site.objects.get(community=manager_account, name="Parking visiteurs")

    # Add a user.
    page.get_by_role("link", name="Users").click()
    page.get_by_role("link", name="Add a user").click()
    page.get_by_label("First name").fill("Bruno")
    page.get_by_label("Last name").fill("Petit")
    page.get_by_label("Phone number").fill("06 55 44 33 22")
    page.get_by_role("button", name="Add the user").click()
    expect(page.get_by_text("Bruno Petit").first).to_be_visible()
    assert Membership.objects.filter(
        community=manager_account, user__phone="+33655443322", role=Role.INDIVIDUAL
    ).exists()

    # Register a charger on the site.
    page.goto(f"{live_server.url}/c/parc/sites/{site.pk}/")
    page.get_by_role("link", name="Register a charger").click()
    page.get_by_label("Serial number").fill("BROWSER-CP-01")
    page.get_by_label("Vendor").select_option("zaptec")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_text("ws://localhost:9000/ocpp/BROWSER-CP-01").first).to_be_visible()

    # The outlet appears and changes state live when the simulated charger connects.
    page.get_by_role("link", name="Supervision").click()
    page.get_by_role("link", name="Outlets").click()
    table = page.locator("#outlet-table")
    expect(table).to_contain_text("No outlets yet")
    charger = SimulatedChargerThread(gateway_process.url, "BROWSER-CP-01")
    charger.start()
    try:
        expect(table.locator("[data-state=available]")).to_be_visible(timeout=30_000)
        charger.start_charging.set()
        expect(table.locator("[data-state=charging]")).to_be_visible(timeout=30_000)
        charger.hang_up.set()
        expect(table.locator("[data-state=not_connected]")).to_be_visible(timeout=30_000)
    finally:
        charger.start_charging.set()
        charger.hang_up.set()
        charger.join(30)
    assert charger.error is None, charger.error
