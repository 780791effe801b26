"""Connecting an operator from the charger page, in a real browser (Playwright on Debian's
Chromium): a gateway, a simulated charger and a loopback operator run on a background event
loop; the manager fills "Connect an operator", the operator's page then shows it connected
(polled), "Test the connection" shows the operator's answer. Screenshots of the pages at
1366×768 and 390×844, French and English, into /work/shots/operator/ (looked at, not asserted).

Runs in its own pytest process (`make test-browser`, `-m browser`)."""

import asyncio
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect

from communities.models import Role
from forwarding.models import OperatorConnection
from ocpp_gateway.batcher import EventBatcher
from ocpp_gateway.decisions import Decisions
from ocpp_gateway.server import Gateway
from simulator.fleet import connect_charger
from tests import builders
from tests.forwarding.operator_csms import Operator

from .test_browser_portal import _logged_in_context, shoot_pages

pytestmark = pytest.mark.browser

SHOTS = Path("/work/shots/operator")


class Background:
    """Gateway + charger + operator on one event loop in a thread."""

    def __init__(self, identity):
        self.identity = identity
        self.ready = threading.Event()
        self.error = None

    def __enter__(self):
        def main():
            async def serve():
                try:
                    async with (
                        Operator() as op,
                        Gateway(
                            host="127.0.0.1",
                            port=0,
                            batcher=EventBatcher(flush_seconds=0.05),
                            decisions=Decisions(),
                        ) as gw,
                    ):
                        self.op, self.gw = op, gw
                        self.stop = asyncio.Event()
                        self.loop = asyncio.get_running_loop()
                        async with connect_charger(gw.url, self.identity, "1.6") as cp:
                            await cp.boot()
                            await cp.status(1, "Available")
                            self.ready.set()
                            while not self.stop.is_set():
                                await asyncio.sleep(0.2)
                                await cp.heartbeat()
                except Exception as e:  # shown by the test
                    self.error = e
                    self.ready.set()

            asyncio.run(serve())

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert self.ready.wait(20) and self.error is None, self.error
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(20)


@pytest.fixture
def world(transactional_db, settings, live_server):
    settings.LANGUAGE_CODE = "en"
    settings.FORWARDING_REFRESH_SECONDS = 0.2
    settings.FORWARDING_ALLOW_PRIVATE_HOSTS = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    community = builders.make_community(name="Résidence du Parc", slug="parc")
    manager = builders.make_member(community, Role.MANAGER).user
    charger = builders.make_charger(community, identity="VT-0042", name="Parking B")
    return {"community": community, "manager": manager, "charger": charger}


@pytest.mark.community_scope("world")
def test_connect_an_operator_from_the_charger_page_and_see_it_connected(
    world, live_server, browser_page
):
    charger = world["charger"]
    with Background(charger.identity) as bg:
        context = _logged_in_context(browser_page, live_server, world["manager"])
        page = context.new_page()
        page.goto(f"{live_server.url}/c/parc/chargers/{charger.pk}/")
        page.get_by_role("link", name="Connect an operator").click()
        expect(page.locator("#id_identity")).to_have_value("VT-0042")
        page.locator("#id_name").fill("Volt Time")
        page.locator("#id_url").fill("http://wrong.example/ocpp")
        page.get_by_label("Monitoring").check()
        page.get_by_role("button", name="Connect", exact=True).click()
        expect(page.get_by_text("starting with ws:// or wss://")).to_be_visible()
        page.locator("#id_url").fill(bg.op.url)
        page.get_by_role("button", name="Connect", exact=True).click()
        expect(page.get_by_role("heading", name="Volt Time")).to_be_visible()
        expect(page.locator("[data-state=connected]")).to_be_visible(timeout=20_000)
        page.get_by_role("button", name="Test the connection").click()
        expect(page.locator("#probe")).to_contain_text("the operator answered the Heartbeat")
        operator = OperatorConnection.objects.get(charger=charger)
        assert operator.connected and operator.role == "monitoring"
        assert bg.op.calls("Heartbeat")  # the charger's heartbeats are relayed
        page.goto(f"{live_server.url}/c/parc/chargers/{charger.pk}/")
        expect(page.locator("#operators")).to_contain_text("Connected")
        # Change its settings: the password left blank stays, the relay picks the change up.
        page.get_by_role("link", name="Volt Time").click()
        page.get_by_role("link", name="Change the settings").click()
        expect(page.locator("#id_url")).to_have_value(bg.op.url)
        page.locator("#id_name").fill("Volt Time EU")
        page.locator("#id_url").fill("ftp://wrong.example/")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("starting with ws:// or wss://")).to_be_visible()
        page.locator("#id_url").fill(bg.op.url + "/")
        handshakes = len(bg.op.auth_seen)
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", name="Volt Time EU")).to_be_visible()
        for _ in range(100):  # the gateway reconnected with the new settings
            if len(bg.op.auth_seen) > handshakes:
                break
            page.wait_for_timeout(200)
        assert len(bg.op.auth_seen) > handshakes
        expect(page.locator("[data-state=connected]")).to_be_visible(timeout=20_000)
        context.close()
        shoot(world, live_server, browser_page, operator)


def shoot(world, live_server, browser_page, operator):
    SHOTS.mkdir(parents=True, exist_ok=True)
    charger, manager = world["charger"], world["manager"]
    base = f"/c/parc/chargers/{charger.pk}/operators"
    pages = [
        ("charger-operators", manager, f"/c/parc/chargers/{charger.pk}/#operators"),
        ("operator-add", manager, f"{base}/new/"),
        ("operator-detail", manager, f"{base}/{operator.pk}/"),
        ("operator-edit", manager, f"{base}/{operator.pk}/edit/"),
    ]
    shoot_pages(browser_page, live_server, pages, SHOTS)
