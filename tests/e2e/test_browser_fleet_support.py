"""In a real browser (Playwright on Debian's Chromium): a support report with a screenshot
reaches a local SMTP server (aiosmtpd on a free port) with the page and community it came from;
a file that is not an image is refused on the page. Then screenshots of the pages of fleet
operations, uptime, OCPP log, onboarding and support, at 1366×768 and 390×844, in French and
English, into /work/shots/portalb/ (looked at by a person, not asserted).

Runs in its own pytest process (`make test-browser`, `-m browser`)."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone
from playwright.sync_api import expect

from chargers.models import ConnectionInterval
from communities.models import Role
from support.models import Ticket
from tests import builders
from tests.communities.portal_data import make_message, make_session

from .processes import Inbox, free_port
from .test_browser_portal import _logged_in_context, shoot_pages

pytestmark = pytest.mark.browser

SHOTS = Path("/work/shots/portalb")


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    port = free_port()  # aiosmtpd cannot bind port 0: an explicit free port
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    yield inbox
    controller.stop()


@pytest.fixture
def world(transactional_db, settings, live_server, tmp_path):
    settings.LANGUAGE_CODE = "en"
    settings.SITE_URL = live_server.url
    settings.MEDIA_ROOT = tmp_path
    settings.SUPPORT_EMAIL = "support@e2e.example"
    community = builders.make_community(name="Résidence du Parc", slug="parc")
    builders.make_price(community)
    manager = builders.make_user(phone="+33600000002", first_name="Marc", last_name="Manager")
    builders.make_member(community, Role.MANAGER, user=manager)
    return {"community": community, "manager": manager}


def wait_for(predicate, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_support_report_with_a_screenshot_reaches_the_support_address(
    world, live_server, browser_page, smtp, tmp_path
):
    context = _logged_in_context(browser_page, live_server, world["manager"])
    page = context.new_page()
    page.goto(f"{live_server.url}/c/parc/outlets/")
    shot = tmp_path / "what-i-see.png"
    page.screenshot(path=shot)  # the screenshot a person would attach
    page.locator("footer").get_by_role("link", name="Report a problem").click()
    expect(page.get_by_role("heading", name="Report a problem")).to_be_visible()
    expect(page.get_by_label("Phone number to call you back")).to_have_value("06 00 00 00 02")
    # A file that is not an image is refused by the server, with a message on the page.
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    page.get_by_label("What happened?").fill("The outlets page does not show my charger.")
    page.get_by_label("Screenshot (optional)").set_input_files(fake)
    page.get_by_role("button", name="Send to support").click()
    expect(page.get_by_text("This file is not an image")).to_be_visible()
    assert not Ticket.objects.exists()
    page.get_by_label("What happened?").fill("The outlets page does not show my charger.")
    page.get_by_label("Screenshot (optional)").set_input_files(shot)
    page.get_by_role("button", name="Send to support").click()
    expect(page).to_have_url(re.compile(r"/c/parc/outlets/$"))
    expect(page.get_by_text(re.compile(r"your report #\d+ was sent"))).to_be_visible()
    ticket = Ticket.objects.get()
    wait_for(lambda: smtp.messages)
    (recipients, message) = smtp.messages[0]
    assert recipients == ["support@e2e.example"]
    assert f"#{ticket.pk}" in message["Subject"] and "Résidence du Parc" in message["Subject"]
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert f"{live_server.url}/c/parc/outlets/" in body and "does not show my charger" in body
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "image/png"
    assert attachment.get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    ticket.refresh_from_db()
    assert ticket.emailed_at is not None and ticket.source_community == world["community"]
    context.close()


# --- screenshots -----------------------------------------------------------------------------
def _scene(world):
    community, now = world["community"], timezone.now()
    site = builders.make_site(community, name="Parking")
    builders.make_site(community, name="Garage B")
    charger = builders.make_charger(
        community, site=site, identity="SPK-0001", connected=True, ocpp_version="1.6",
        connected_since=now - timedelta(hours=5), last_seen=now,
    )  # fmt: skip
    c1 = builders.make_connector(charger, 1, status="Available")
    builders.make_connector(charger, 2, status="Unavailable")
    member = builders.make_member(
        community, Role.INDIVIDUAL, user=builders.make_user(first_name="Ivy", last_name="User")
    )
    card = builders.make_card(community, holder=member.user, uid="04A23B11C2")
    make_session(charger, c1, member.user, card, energy_wh="5000")
    for days, hours in ((20, 30), (8, 2), (3, 70)):
        start = now - timedelta(days=days)
        ConnectionInterval.objects.create(
            community=community, charger=charger, started_at=start,
            ended_at=start + timedelta(hours=hours), ended_by="disconnected",
        )  # fmt: skip
    ConnectionInterval.objects.create(
        community=community, charger=charger, started_at=now - timedelta(hours=5)
    )
    make_message(charger, "StartTransaction", payload={"connectorId": 1, "idTag": "04A23B11C2"})
    make_message(
        charger, "StatusNotification", direction="in",
        payload={"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    )  # fmt: skip
    spare = builders.make_charger(community, site=site, identity="SPK-0002")
    fresh = builders.make_community(name="Résidence Neuve", slug="neuve", kind="condominium")
    builders.make_member(fresh, Role.OWNER, user=world["manager"])
    builders.make_site(fresh, name="Parking")
    limited = builders.make_company(name="Volt Pro")
    builders.make_grant(community, limited, "limited")
    return charger, spare, builders.make_installer(limited)


def test_screenshots(world, live_server, browser_page):
    charger, spare, limited_installer = _scene(world)
    manager, c = world["manager"], "/c/parc"
    pages = [
        ("charger-manager", manager, f"{c}/chargers/{charger.pk}/"),
        ("charger-log-filtered", manager, f"{c}/chargers/{charger.pk}/?action=StatusNotification"),
        ("charger-limited-installer", limited_installer, f"{c}/chargers/{charger.pk}/"),
        ("charger-offline", manager, f"{c}/chargers/{spare.pk}/"),
        ("charger-reset-hard", manager, f"{c}/chargers/{charger.pk}/reset/hard/"),
        ("charger-delete", manager, f"{c}/chargers/{spare.pk}/delete/"),
        ("charger-move", manager, f"{c}/chargers/{charger.pk}/move/"),
        ("dashboard-onboarding", manager, "/c/neuve/"),
        ("support-report", manager, f"/support/?from={c}/outlets/"),
    ]
    SHOTS.mkdir(parents=True, exist_ok=True)
    shoot_pages(browser_page, live_server, pages, SHOTS)
    assert len(list(SHOTS.glob("*.png"))) >= len(pages) * 4
