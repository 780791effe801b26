"""The installer's main journey in a real browser (Playwright on Debian's Chromium): SMS-code
login → new installation (a location and its first site) → claim a charger by serial + PIN →
commissioning page → invite the owner (link + QR code) → the owner opens the link, logs in by SMS
and accepts → lands on the installation as its owner; the installer keeps full access.

Runs in its own pytest process (`make test-browser`, `-m browser`)."""

import re

import pytest
from django_scopes import scope
from playwright.sync_api import expect

from accounts import sms
from chargers.inventory import import_inventory_csv
from communities.models import AccessGrant, Community, Membership, Role
from tests import builders

pytestmark = pytest.mark.browser

INSTALLER_PHONE = "+33622334455"
OWNER_PHONE = "+33633445566"


@pytest.fixture
def accounts(transactional_db, settings, live_server):
    settings.SMS_BACKEND = "memory"
    settings.SITE_URL = live_server.url
    settings.LANGUAGE_CODE = "en"
    sms.outbox.clear()
    company = builders.make_company(name="Durand Électricité")
    installer = builders.make_user(
        phone=INSTALLER_PHONE, first_name="Marc", last_name="Durand", language="en"
    )
    builders.make_installer(company, user=installer, is_admin=True)
    owner = builders.make_user(
        phone=OWNER_PHONE, first_name="Chloé", last_name="Moreau", language="en"
    )
    import_inventory_csv("serial,pin,vendor,model\nSPK-BROWSER-1,482913,spark1,Spark 1\n")
    yield {"company": company, "installer": installer, "owner": owner}
    sms.outbox.clear()


def sms_login(page, base_url, phone_typed, phone):
    page.get_by_label("Phone number").fill(phone_typed)
    page.get_by_role("button", name="Receive a code").click()
    message = [m for m in sms.outbox if m.to == phone][-1]
    code = re.search(r"\b(\d{6})\b", message.body).group(1)
    page.get_by_label("Code received by SMS").fill(code)
    page.get_by_role("button", name="Log in").click()


def test_installer_commissions_and_hands_over(accounts, live_server, browser_page):
    page = browser_page
    page.goto(f"{live_server.url}/")
    sms_login(page, live_server.url, "06 22 33 44 55", INSTALLER_PHONE)
    expect(page).to_have_url(re.compile(r"/installer/$"))  # no community yet: installer area

    # A new location with its first site.
    page.get_by_role("link", name="New installation").click()
    page.get_by_label("Installation name").fill("Maison Moreau")
    page.get_by_label("Kind").select_option("home")
    page.get_by_label("Address").fill("8 chemin des Vignes, 69340 Francheville")
    page.get_by_label("First site").fill("Garage")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/c/maison-moreau/sites/\d+/chargers/claim/$"))

    # Claim the charger by the serial and PIN of its sticker; a wrong PIN first.
    page.get_by_label("Serial number").fill("SPK-BROWSER-1")
    page.get_by_label("PIN").fill("000000")
    page.get_by_role("button", name="Add the charger").click()
    expect(page.get_by_text("Wrong PIN for this serial number")).to_be_visible()
    page.get_by_label("PIN").fill("482913")
    page.get_by_role("button", name="Add the charger").click()
    expect(page).to_have_url(re.compile(r"/chargers/\d+/commissioning/$"))
    expect(page.locator("#gateway-url")).to_contain_text("/ocpp/SPK-BROWSER-1")
    expect(page.get_by_text("Awaiting first connection").first).to_be_visible()

    # Invite the owner: the link and its QR code are shown once.
    page.get_by_role("link", name="Management").click()  # tabs are grouped
    page.get_by_role("link", name="Hand-over").click()
    page.get_by_label("Phone number").fill("06 33 44 55 66")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.locator("#invitation-link svg")).to_be_visible()
    link = page.locator("#invitation-url").inner_text().strip()
    assert link.startswith(live_server.url + "/invitations/")
    assert any(m.to == OWNER_PHONE and link in m.body for m in sms.outbox)

    # The owner (on the installer's screen, after the installer logs out) opens the link.
    page.locator(".account-menu summary").click()  # Log out lives in the account menu
    page.get_by_role("button", name="Log out").click()
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/accounts/invitation/"))
    page.get_by_role("link", name="Log in first").click()  # the owner has an account
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    sms_login(page, live_server.url, "06 33 44 55 66", OWNER_PHONE)
    expect(page.get_by_role("heading", name="Become the owner of Maison Moreau")).to_be_visible()
    page.get_by_role("button", name="Accept").click()
    expect(page).to_have_url(re.compile(r"/c/maison-moreau/$"))
    expect(page.get_by_text("You are now the owner of Maison Moreau")).to_be_visible()
    page.get_by_role("link", name="Settings").click()  # the owner's settings group
    expect(page.get_by_role("link", name="Installer access")).to_be_visible()

    community = Community.objects.get(slug="maison-moreau")
    with scope(community=community):
        membership = Membership.objects.get(user=accounts["owner"])
        scopes = set(
            AccessGrant.objects.filter(community=community).values_list("scope", flat=True)
        )
    assert membership.role == Role.OWNER and community.handed_over_at is not None
    assert scopes == {"full", "limited"}

    # The link is spent: opening it again explains it and changes nothing.
    page.goto(link)
    expect(page.locator("#invitation-problem")).to_contain_text("already used")
