"""A manager in a real browser (Playwright on Debian's Chromium) creates a rule of use for a
site, then adds a driver's card by scanning it at a simulated charger connected to a real
gateway (its own thread and event loop, on a free port). Then screenshots of the rules pages at
1366×768 and 390×844, in French and English, into /work/shots/rules/ (looked at, not asserted).

Runs in its own pytest process (`make test-browser`, `-m browser`)."""

import asyncio
import json
import threading
from pathlib import Path

import pytest
from django.db import connections
from django_scopes import scope
from playwright.sync_api import expect
from websockets.asyncio.client import connect

from chargers.models import ChargeCard
from communities.models import Role
from ocpp_gateway.batcher import EventBatcher
from ocpp_gateway.decisions import Decisions
from ocpp_gateway.server import Gateway
from rules.models import AccessPolicy, LearnWindow, Mode, TimeWindow
from tests import builders

from .test_browser_portal import VIEWPORTS, _logged_in_context

pytestmark = pytest.mark.browser

SHOTS = Path("/work/shots/rules")


class GatewayThread:
    """A gateway on 127.0.0.1:<free port> in its own thread and event loop."""

    def __init__(self):
        self.url = None
        self._ready = threading.Event()
        self._stop = None
        self._loop = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        async def main():
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            gateway = Gateway(
                host="127.0.0.1",
                port=0,
                batcher=EventBatcher(flush_seconds=0.05),
                decisions=Decisions(),
            )
            async with gateway:
                self.url = gateway.url
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        finally:
            connections.close_all()

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(15), "the gateway did not start"
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


def present_card(url, identity, uid):
    """A 1.6 charger presenting a card (Authorize), from a thread of its own."""
    result = {}

    async def charger():
        async with connect(url + identity, subprotocols=["ocpp1.6"], open_timeout=5) as ws:
            await ws.send(json.dumps([2, "a1", "Authorize", {"idTag": uid}]))
            result["answer"] = json.loads(await asyncio.wait_for(ws.recv(), 10))

    thread = threading.Thread(target=lambda: asyncio.run(charger()))
    thread.start()
    thread.join(20)
    return result["answer"][2]["idTagInfo"]["status"]


@pytest.fixture
def world(transactional_db, settings, live_server):
    settings.LANGUAGE_CODE = "en"
    community = builders.make_community(name="Résidence du Parc", slug="parc")
    manager = builders.make_user(first_name="Marc", last_name="Manager", language="en")
    builders.make_member(community, Role.MANAGER, user=manager)
    driver = builders.make_member(
        community, Role.INDIVIDUAL, user=builders.make_user(first_name="Lucas", last_name="Bernard")
    )
    site = builders.make_site(community, name="Parking")
    charger = builders.make_charger(community, site=site, identity="SPK-LEARN-01")
    builders.make_connector(charger, 1, status="Available")
    return {
        "community": community,
        "manager": manager,
        "driver": driver,
        "site": site,
        "charger": charger,
    }


def test_a_manager_creates_a_rule_and_learns_a_card_by_scanning_it(
    world, live_server, browser_page
):
    community, site, driver = world["community"], world["site"], world["driver"]
    context = _logged_in_context(browser_page, live_server, world["manager"])
    page = context.new_page()
    page.set_default_timeout(15_000)

    # A rule: the site reserved to the driver on weekdays 08:00–19:00.
    page.goto(f"{live_server.url}/c/parc/rules/")
    page.get_by_role("link", name="Edit the site's rule").click()
    page.get_by_label("Chosen users or groups").check()
    page.get_by_label("Lucas Bernard").check()
    page.get_by_role("button", name="Save").first.click()
    expect(page.get_by_text("Rule saved.")).to_be_visible()
    for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"):
        page.get_by_label(day).check()
    page.locator("input[name=start]").fill("08:00")
    page.locator("input[name=end]").fill("19:00")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_text("Charging hours added.")).to_be_visible()
    expect(page.get_by_text("Monday–Friday 08:00–19:00")).to_be_visible()
    with scope(community=community):
        policy = AccessPolicy.objects.get(site=site)
        assert policy.mode == Mode.CHOSEN and list(policy.users.all()) == [driver.user]
        assert TimeWindow.objects.get(policy=policy).days == "12345"

    # Learn the driver's card at the charger.
    with GatewayThread() as gateway:
        page.goto(f"{live_server.url}/c/parc/users/{driver.pk}/")
        page.get_by_label("Charger where the card will be presented").select_option(
            label=str(world["charger"])
        )
        page.get_by_role("button", name="Start (2 minutes)").click()
        expect(page.get_by_text("Present the card to the charger's reader now.")).to_be_visible()
        expect(page.get_by_text("seconds left")).to_be_visible()
        # Unknown until confirmed: the charger is told Invalid.
        assert present_card(gateway.url, "SPK-LEARN-01", "04:a2:3b:c4") == "Invalid"
        expect(page.get_by_test_id("scanned-uid")).to_have_text("04A23BC4", timeout=20_000)
        with scope(community=community):
            assert not ChargeCard.objects.exists()  # nothing without confirmation
        page.get_by_label("Card name").fill("Badge parking")
        page.get_by_role("button", name="Add this card").click()
        expect(page.get_by_text("Card 04A23BC4 added.")).to_be_visible()
    with scope(community=community):
        card = ChargeCard.objects.get()
        assert (card.uid, card.holder, card.name) == ("04A23BC4", driver.user, "Badge parking")
        assert LearnWindow.objects.get().state == LearnWindow.State.CONFIRMED
    context.close()
    _screenshots(world, live_server, browser_page)


def _screenshots(world, live_server, browser_page):
    community = world["community"]
    with scope(community=community):
        window = LearnWindow.objects.get()
        connector = world["charger"].connectors.get()
    pages = [
        ("rules", "/c/parc/rules/"),
        ("site-rule", f"/c/parc/rules/sites/{world['site'].pk}/"),
        ("outlet-rule", f"/c/parc/rules/outlets/{connector.pk}/"),
        ("groups", "/c/parc/users/groups/"),
        ("learn", f"/c/parc/cards/learn/{window.pk}/"),
        ("member", f"/c/parc/users/{world['driver'].pk}/"),
        ("site", f"/c/parc/sites/{world['site'].pk}/"),
        ("charger", f"/c/parc/chargers/{world['charger'].pk}/"),
    ]
    SHOTS.mkdir(parents=True, exist_ok=True)
    for language in ("en", "fr"):
        for device, viewport in VIEWPORTS.items():
            context = _logged_in_context(
                browser_page, live_server, world["manager"], language, viewport
            )
            for name, path in pages:
                page = context.new_page()
                page.goto(live_server.url + path)
                page.screenshot(path=SHOTS / f"{name}-{device}-{language}.png", full_page=True)
                page.close()
            context.close()
