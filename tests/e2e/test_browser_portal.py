"""The portal's front door and safe actions in a real browser (Playwright on Debian's Chromium):
an invitation opened by a person without an account → code on the invited number → their
details → owner of the installation; account deletion confirmed by an SMS code; a price typed
with a comma. Then screenshots of every page this work changed, at 1366×768 and 390×844, in
French and English, into /tmp/shots-portal/ (looked at by a person, not asserted).

Runs in its own pytest process (`make test-browser`, `-m browser`)."""

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from accounts import sms
from accounts.models import User
from billing.models import Price
from communities import invitations
from communities.models import Membership, Role
from tests import builders
from tests.communities.portal_data import make_message, make_session

pytestmark = pytest.mark.browser

SHOTS = Path("/tmp/shots-portal")
VIEWPORTS = {"desktop": (1366, 768), "phone": (390, 844)}


@pytest.fixture
def world(transactional_db, settings, live_server):
    settings.SMS_BACKEND = "memory"
    settings.SITE_URL = live_server.url
    settings.LANGUAGE_CODE = "en"
    sms.outbox.clear()
    community = builders.make_community(name="Résidence du Parc", slug="parc")
    builders.make_price(community)
    company = builders.make_company(name="Durand Électricité")
    installer = builders.make_installer(company, is_admin=True)
    builders.make_grant(community, company, "full")
    yield {"community": community, "installer": installer, "company": company}
    sms.outbox.clear()


def last_code(phone):
    message = [m for m in sms.outbox if m.to == phone][-1]
    return re.search(r"\b(\d{6})\b", message.body).group(1)


@pytest.mark.community_scope("world")
def test_invitation_to_a_new_person_creates_the_account_and_the_owner(
    world, live_server, browser_page
):
    page = browser_page
    _inv, token = invitations.invite_owner(
        community=world["community"], actor=world["installer"], phone="+33677889900"
    )
    page.goto(f"{live_server.url}/invitations/{token}/")
    expect(
        page.get_by_role("heading", name="Become the owner of Résidence du Parc")
    ).to_be_visible()
    expect(page.get_by_text("ending in")).to_contain_text("99 00")
    page.get_by_role("button", name="Receive a code by SMS").click()
    page.get_by_label("Code received by SMS").fill(last_code("+33677889900"))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Your details")).to_be_visible()
    page.get_by_label("First name").fill("Inès")
    page.get_by_label("Last name").fill("Garnier")
    page.get_by_label("E-mail").fill("ines@example.org")
    page.get_by_label("Country").select_option("FR")
    page.get_by_role("button", name="Create my account and accept").click()
    expect(page).to_have_url(re.compile(r"/c/parc/$"))
    expect(page.get_by_text("You are now the owner of Résidence du Parc")).to_be_visible()
    user = User.objects.get(phone="+33677889900")
    assert user.get_full_name() == "Inès Garnier" and user.phone_confirmed_at is not None
    membership = Membership.objects.get(user=user, community=world["community"])
    assert (membership.role, membership.state) == (Role.OWNER, Membership.State.ACTIVE)


def _logged_in_context(page, live_server, user, language="en", viewport=(1366, 768)):
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


def shoot_pages(browser_page, live_server, pages, shots):
    """Screenshots of `pages` ((name, user or None, path)) at every viewport, in English and
    French, into `shots` as `<name>-<device>-<language>.png`; one browser context per person."""
    for language in ("en", "fr"):
        for device, viewport in VIEWPORTS.items():
            contexts = {}
            for name, user, path in pages:
                key = user.pk if user else None
                if key not in contexts:
                    if user is None:
                        contexts[key] = browser_page.context.browser.new_context(
                            viewport={"width": viewport[0], "height": viewport[1]}
                        )
                        contexts[key].add_cookies(
                            [{"name": "django_language", "value": language,
                              "url": live_server.url}]
                        )  # fmt: skip
                    else:
                        contexts[key] = _logged_in_context(
                            browser_page, live_server, user, language, viewport
                        )
                page = contexts[key].new_page()
                response = page.goto(f"{live_server.url}{path}")
                assert response.status < 500, (name, response.status)
                page.screenshot(path=shots / f"{name}-{device}-{language}.png", full_page=True)
                page.close()
            for context in contexts.values():
                context.close()


def test_account_deletion_is_confirmed_by_an_sms_code(world, live_server, browser_page):
    person = builders.make_user(phone="+33611112222", first_name="Paul", language="en")
    builders.make_member(world["community"], Role.INDIVIDUAL, user=person)
    context = _logged_in_context(browser_page, live_server, person)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/me/")
    page.get_by_role("link", name="Delete my account").click()
    expect(page.get_by_text("This cannot be undone.")).to_be_visible()
    page.get_by_role("button", name="Delete my account for good").click()  # no code yet
    expect(page.get_by_text("Enter the 6-digit code received by SMS.")).to_be_visible()
    assert User.objects.get(pk=person.pk).is_active
    page.get_by_role("button", name="Send me a code by SMS").click()
    expect(page.get_by_text("A code was sent by SMS")).to_be_visible()
    page.get_by_label("Code received by SMS").fill(last_code("+33611112222"))
    page.get_by_role("button", name="Delete my account for good").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_text("Your account and your personal data were deleted.")).to_be_visible()
    assert not User.objects.get(pk=person.pk).is_active
    context.close()


@pytest.mark.community_scope("world")
def test_a_price_typed_with_a_comma(world, live_server, browser_page):
    manager = builders.make_user(phone="+33611113333", first_name="Maud", language="fr")
    builders.make_member(world["community"], Role.MANAGER, user=manager)
    context = _logged_in_context(browser_page, live_server, manager, language="fr")
    page = context.new_page()
    page.goto(f"{live_server.url}/c/parc/settings/")
    page.get_by_label("Valable à partir du").fill("2031-01-01") if page.get_by_label(
        "Valable à partir du"
    ).count() else page.locator("#id_valid_from").fill("2031-01-01")
    page.locator("#id_price_per_kwh").fill("0,279")
    page.locator("form[action$='/prices/add/'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/c/parc/settings/$"))
    price = Price.objects.get(community=world["community"], valid_from="2031-01-01")
    assert price.price_per_kwh == Decimal("0.279")
    # A lost comma asks for a confirmation, then can be corrected.
    page.locator("#id_valid_from").fill("2032-01-01")
    page.locator("#id_price_per_kwh").fill("2790")
    page.locator("form[action$='/prices/add/'] button[type=submit]").click()
    expect(page.locator("#id_confirm_high")).to_be_visible()
    assert not Price.objects.filter(valid_from="2032-01-01").exists()
    context.close()


# --- screenshots -----------------------------------------------------------------------------


def _pages(world, owner, manager, member, limited_installer, token):
    c = "/c/parc"
    charger = world["charger"]
    grant = world["grant"]
    future_price = world["future_price"]
    return [
        ("login", None, "/accounts/login/"),
        ("signup", None, "/accounts/signup/"),
        ("invitation-start", None, f"/accounts/invitation/{token}/"),
        ("account", owner, "/accounts/me/"),
        ("account-delete", manager, "/accounts/me/delete/"),
        ("profile", owner, "/accounts/me/profile/"),
        ("settings-prices", manager, f"{c}/settings/"),
        ("price-edit", manager, f"{c}/settings/prices/{future_price.pk}/edit/"),
        ("price-delete", manager, f"{c}/settings/prices/{future_price.pk}/delete/"),
        ("members", manager, f"{c}/users/"),
        ("member-remove", manager, f"{c}/users/{member.pk}/remove/"),
        ("installer-access", owner, f"{c}/installer-access/"),
        ("installer-revoke", owner, f"{c}/installer-access/{grant.pk}/revoke/"),
        ("owner-transfer", owner, f"{c}/owner/invite/"),
        ("leave", manager, f"{c}/leave/"),
        ("charger-limited-installer", limited_installer, f"{c}/chargers/{charger.pk}/"),
        ("exports", manager, f"{c}/exports/"),
    ]


def test_screenshots(world, live_server, browser_page):
    community = world["community"]
    owner = builders.make_user(phone="+33600000001", first_name="Olivia", last_name="Owner")
    builders.make_member(community, Role.OWNER, user=owner)
    manager = builders.make_user(phone="+33600000002", first_name="Marc", last_name="Manager")
    builders.make_member(community, Role.MANAGER, user=manager)
    member = builders.make_member(
        community, Role.INDIVIDUAL, user=builders.make_user(first_name="Ivy", last_name="User")
    )
    site = builders.make_site(community, name="Parking")
    charger = builders.make_charger(community, site=site, identity="SPK-0001", connected=True)
    connector = builders.make_connector(charger, 1, status="Available")
    card = builders.make_card(community, holder=member.user, uid="04A23B11C2")
    make_session(charger, connector, member.user, card, energy_wh="5000")
    make_message(charger, "StartTransaction", payload={"connectorId": 1, "idTag": "04A23B11C2"})
    make_message(
        charger,
        "TransactionEvent",
        payload={"eventType": "Started", "idToken": {"idToken": "04A23B11C2", "type": "ISO14443"}},
    )
    world["charger"] = charger
    world["future_price"] = Price.objects.create(
        community=community,
        valid_from=timezone.localdate() + timedelta(days=30),
        price_per_kwh=Decimal("0.31"),
    )
    limited_company = builders.make_company(name="Volt Pro")
    world["grant"] = builders.make_grant(
        community, limited_company, "limited", valid_from=timezone.now() - timedelta(days=1)
    )
    limited_installer = builders.make_installer(limited_company)
    _inv, token = invitations.invite_owner(
        community=community, actor=owner, email="next@example.org"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = _pages(world, owner, manager, member, limited_installer, token)
    shoot_pages(browser_page, live_server, pages, SHOTS)
    page_names = {name for name, _u, _p in pages}
    assert len(list(SHOTS.glob("*.png"))) >= len(page_names) * 4
