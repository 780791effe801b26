"""Render every portal page with demo-ish data, for a manager and for an individual, in English
and in French: a template error, a missing URL name or a broken translation shows up here."""

import pytest
from django.utils import timezone

from chargers.models import ChargerCommand, UnknownCharger
from communities.models import Role
from tests import builders
from tests.communities.portal_data import make_message, make_session

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope


@pytest.fixture
def demo(community, manager, individual, site):
    charger = builders.make_charger(
        community,
        site=site,
        identity="DEMO-1",
        connected=True,
        ocpp_version="1.6",
        firmware_version="1.2.3",
        last_seen=timezone.now(),
    )
    c1 = builders.make_connector(charger, 1, status="Charging", status_at=timezone.now())
    builders.make_connector(charger, 2, status="Available")
    builders.make_connector(builders.make_charger(community, site=site), 1, status="Faulted")
    card = builders.make_card(community, holder=individual)
    make_session(
        charger, c1, individual, card, active=True, meter_start_wh="1000", meter_last_wh="4500"
    )
    make_session(
        charger,
        c1,
        individual,
        card,
        energy_wh="12345",
        started_at=timezone.now() - timezone.timedelta(days=1),
    )
    make_message(charger, "BootNotification", payload={"chargePointVendor": "X"})
    ChargerCommand.objects.create(
        community=community, charger=charger, action="Reset", asked_by=manager
    )
    UnknownCharger.objects.create(identity="STRANGER-1", attempts=3)
    return {
        "charger": charger,
        "card": card,
        "site": site,
        "member": individual.memberships.get(),
        "manager_member": manager.memberships.get(),
    }


def manager_pages(demo):
    c = "/c/tilleuls"
    return [
        f"{c}/",
        f"{c}/outlets/",
        f"{c}/users/",
        f"{c}/users/add/",
        f"{c}/users/{demo['member'].pk}/",
        f"{c}/users/{demo['member'].pk}/edit/",
        f"{c}/users/{demo['member'].pk}/remove/",
        f"{c}/sites/",
        f"{c}/sites/add/",
        f"{c}/sites/{demo['site'].pk}/",
        f"{c}/sites/{demo['site'].pk}/edit/",
        f"{c}/sites/{demo['site'].pk}/chargers/add/",
        f"{c}/chargers/{demo['charger'].pk}/",
        f"{c}/chargers/{demo['charger'].pk}/edit/",
        f"{c}/chargers/refused/",
        f"{c}/sessions/",
        f"{c}/sessions/?month=2020-01",
        f"{c}/my-sessions/",
        f"{c}/settings/",
        f"{c}/exports/",
        "/communities/new/",
        f"{c}/sites/{demo['site'].pk}/chargers/claim/",
        f"{c}/chargers/{demo['charger'].pk}/commissioning/",
        f"{c}/chargers/{demo['charger'].pk}/configuration/",
        f"{c}/access-requests/",
        f"{c}/audit/",
        f"{c}/leave/",
        "/access/request/",
        "/accounts/me/",
    ]


@pytest.mark.parametrize("language", ["en", "fr"])
def test_every_manager_page_renders(client, manager, demo, language):
    client.force_login(manager)
    client.cookies["django_language"] = language
    for url in manager_pages(demo):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"<html" in response.content


def test_manager_dashboard_shows_live_energy_and_states(manager_client, demo):
    content = manager_client.get("/c/tilleuls/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # French is the default language; the cookie/header decides.
    assert "3.500" in content or "3,500" in content  # 4500 - 1000 Wh in progress


def test_french_is_the_default(manager_client, demo):
    content = manager_client.get("/c/tilleuls/outlets/").content.decode()
    assert "Prises" in content and "En charge" in content


@pytest.mark.parametrize("url", ["/", "/outlets/", "/my-sessions/"])
def test_individual_pages_render(client, individual, demo, url):
    client.force_login(individual)
    response = client.get(f"/c/tilleuls{url}")
    assert response.status_code == 200


def test_login_pages_render(client, db):
    assert client.get("/accounts/login/").status_code == 200


def test_welcome_email_templates_render(community, individual):
    from communities.emails import send_welcome_email

    individual.email = "x@example.com"
    individual.save()
    from django.core import mail

    send_welcome_email(individual.memberships.get(), "http://testserver/accounts/login/")
    assert mail.outbox[-1].to == ["x@example.com"]
    assert "http://testserver/accounts/login/" in mail.outbox[-1].body


def test_owner_sees_the_remove_button_for_others(client, owner, demo):
    client.force_login(owner)
    assert Role.OWNER == owner.memberships.get().role
    content = client.get("/c/tilleuls/users/").content.decode()
    assert content.count("/remove/") >= 2


@pytest.mark.parametrize("language", ["en", "fr"])
def test_owner_and_installer_pages_render(client, owner, demo, language):
    """Pages only owners and installers reach (hand-over and ownership, installer access, the
    installer area, an invitation link and its error page)."""
    from communities import invitations
    from communities.models import AccessRequest

    community = demo["site"].community
    company = builders.make_company()
    builders.make_grant(community, company, "limited")
    installer = builders.make_installer(company, is_admin=True)
    AccessRequest.objects.create(community=community, user=builders.make_user(), message="Hi")
    client.cookies["django_language"] = language
    client.force_login(owner)
    client.post("/c/tilleuls/owner/invite/", {"email": "next@example.org", "typed": community.name})
    _, token = invitations.invite_owner(community=community, actor=owner, phone="+33600000042")
    for url in ("/c/tilleuls/owner/invite/", "/c/tilleuls/installer-access/",
                "/c/tilleuls/access-requests/"):  # fmt: skip
        assert client.get(url).status_code == 200, url
    client.force_login(installer)
    for url in ("/installer/", "/installer/installations/new/", "/installer/members/add/",
                "/c/tilleuls/sites/", f"/c/tilleuls/chargers/{demo['charger'].pk}/"):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 200 and b"<html" in response.content, url
    client.force_login(builders.make_user())
    assert client.get(f"/invitations/{token}/").status_code == 200
    assert client.get("/invitations/nope/").status_code == 404
