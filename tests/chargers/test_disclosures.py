"""The deliberate disclosures, decided: what one tenant (or an installer, or any account) may
learn about another. Refused-identity lookups stop at serials registered elsewhere; an installer
company whose grant ended keeps serial, model, firmware and connected-or-not of the chargers it
commissioned, not the installation's name, site or live state; a community's name does not leak
from its slug to an account that is not let in."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import sms
from chargers.models import UnknownCharger
from communities import services as community_services
from communities.models import AccessRequest, Role
from tests import builders

# Test bodies read tenant data in the community fixture's scope (tests/conftest.py).
pytestmark = [pytest.mark.django_db, pytest.mark.community_scope]


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"
    settings.SMS_BACKEND = "memory"


@pytest.fixture
def other_community(db):
    other = builders.make_community(name="Copropriété Voisine", slug="voisine")
    builders.make_charger(other, identity="OTHER-01")
    return other


def refusal(identity, reason=UnknownCharger.Reason.BAD_PASSWORD):
    return UnknownCharger.objects.create(identity=identity, reason=reason, attempts=7)


def test_lookup_of_a_serial_registered_elsewhere_shows_nothing(
    manager_client, charger, other_community
):
    refusal("OTHER-01")
    refusal("NEW-UNREGISTERED", UnknownCharger.Reason.UNKNOWN)
    refusal(charger.identity)
    url = "/c/tilleuls/chargers/refused/"

    elsewhere = manager_client.get(url, {"identity": "OTHER-01"}).content.decode()
    assert "OTHER-01" not in elsewhere.split('<div class="table-wrap">', 1)[1]
    unregistered = manager_client.get(url, {"identity": "NEW-UNREGISTERED"}).content.decode()
    assert "NEW-UNREGISTERED" in unregistered.split('<div class="table-wrap">', 1)[1]
    own = manager_client.get(url).content.decode()
    assert charger.identity in own and "OTHER-01" not in own


def test_limited_installer_cannot_read_another_tenants_refusals(
    client, community, charger, other_community
):
    company = builders.make_company(name="Élec Durand")
    installer = builders.make_installer(company)
    builders.make_grant(community, company, "limited")
    refusal("OTHER-01")
    client.force_login(installer)
    page = client.get("/c/tilleuls/chargers/refused/", {"identity": "OTHER-01"})
    assert page.status_code == 200
    assert "OTHER-01" not in page.content.decode().split('<div class="table-wrap">', 1)[1]


def test_installer_whose_grant_ended_keeps_support_facts_only(client, community, site):
    company = builders.make_company(name="Élec Durand")
    installer = builders.make_installer(company)
    builders.make_grant(
        community, company, "full", valid_until=timezone.now() - timedelta(minutes=1)
    )
    builders.make_charger(
        community,
        site=site,
        identity="DURAND-01",
        installer=company,
        model="Wallbox X",
        firmware_version="4.2.1",
        connected=True,
    )
    client.force_login(installer)
    page = client.get("/installer/").content.decode()
    assert "DURAND-01" in page and "Wallbox X" in page and "4.2.1" in page
    assert "Connected" in page
    assert community.name not in page and site.name not in page
    assert "Access ended" in page


def test_installer_with_a_grant_in_force_sees_the_installation(client, community, site):
    company = builders.make_company(name="Élec Durand")
    installer = builders.make_installer(company)
    builders.make_grant(community, company, "limited")
    builders.make_charger(community, site=site, identity="DURAND-02", installer=company)
    client.force_login(installer)
    page = client.get("/installer/").content.decode()
    assert community.name in page and site.name in page


@pytest.mark.community_scope
def test_asking_access_by_slug_does_not_reveal_the_name(
    client, community, manager, django_capture_on_commit_callbacks
):
    stranger = builders.make_user()
    client.force_login(stranger)
    client.post("/access/request/", {"community": community.slug, "message": "hello"})
    request = AccessRequest.objects.get(user=stranger)
    export = json.loads(client.get("/accounts/me/export.json").content)
    assert export["access_requests"][0]["community"] == community.slug
    assert community.name not in json.dumps(export, ensure_ascii=False)

    sms.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        community_services.decide_access_request(
            access_request=request, actor=manager, accept=False
        )
    assert community.name not in sms.outbox[-1].body
    assert community.slug in sms.outbox[-1].body


@pytest.mark.community_scope
def test_accepted_member_sees_the_name(client, community, manager):
    stranger = builders.make_user()
    request = AccessRequest.objects.create(community=community, user=stranger)
    community_services.decide_access_request(access_request=request, actor=manager, accept=True)
    client.force_login(stranger)
    export = json.loads(client.get("/accounts/me/export.json").content)
    assert export["access_requests"][0]["community"] == community.name
    assert stranger.memberships.get().role == Role.INDIVIDUAL
