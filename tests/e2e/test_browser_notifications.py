"""Notifications in a browser: a manager chooses SMS for refused charges on their account page;
screenshots of the account page (manager, driver) and of Company configuration with the
offline delay, at 1366 and 390 px, French and English, into /work/shots/notify/ (looked at by a
person, not asserted). Runs with `make test-browser` (`-m browser`)."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from communities.models import Role
from notifications.models import Kind, Preference
from tests import builders

from .test_browser_portal import _logged_in_context, shoot_pages

pytestmark = pytest.mark.browser

SHOTS = Path("/work/shots/notify")


@pytest.fixture
def world(transactional_db, settings, live_server):
    settings.SITE_URL = live_server.url
    community = builders.make_community(name="Résidence du Parc", slug="parc")
    manager = builders.make_member(community, Role.MANAGER).user
    manager.first_name, manager.last_name, manager.email = "Claire", "Moreau", "claire@example.org"
    manager.save()
    driver = builders.make_member(community, Role.INDIVIDUAL).user
    driver.first_name, driver.last_name = "Paul", "Durand"  # no e-mail address
    driver.save()
    return {"community": community, "manager": manager, "driver": driver}


def test_a_manager_chooses_sms_for_refused_charges(world, live_server, browser_page):
    context = _logged_in_context(browser_page, live_server, world["manager"])
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/me/")
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    page.get_by_label("A charge was refused by a rule — SMS").check()
    page.get_by_label("My charging session ended — E-mail").uncheck()
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_text("Your notification choices are saved.")).to_be_visible()
    expect(page.get_by_label("A charge was refused by a rule — SMS")).to_be_checked()
    refused = Preference.objects.get(user=world["manager"], kind=Kind.REFUSED)
    ended = Preference.objects.get(user=world["manager"], kind=Kind.SESSION_ENDED)
    assert (refused.email, refused.sms) == (True, True)
    assert (ended.email, ended.sms) == (False, False)
    context.close()


def test_screenshots(world, live_server, browser_page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = [
        ("account-manager", world["manager"], "/accounts/me/"),
        ("account-driver", world["driver"], "/accounts/me/"),
        ("company-configuration", world["manager"], "/c/parc/settings/"),
    ]
    shoot_pages(browser_page, live_server, pages, SHOTS)
