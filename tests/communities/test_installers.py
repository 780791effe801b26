"""Installer journeys through the portal: a company member creates an installation, hands it over
by invitation (link + QR), the owner accepts; the company keeps full access 14 days, then limited
(time-machine); the owner extends (sensitive data) and revokes; every change is audited."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from django_scopes import scope

from accounts import sms
from communities.models import AccessGrant, AuditEvent, Community, Invitation, Membership, Role
from tests import builders

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope


@pytest.fixture
def outbox():
    sms.outbox.clear()
    yield sms.outbox
    sms.outbox.clear()


@pytest.fixture
def company(db):
    return builders.make_company(name="Électricité Durand")


@pytest.fixture
def installer(company):
    return builders.make_installer(company, is_admin=True)


def create_installation(client, installer):
    client.force_login(installer)
    response = client.post(
        "/installer/installations/new/",
        {"name": "Maison Moreau", "kind": "home", "address": "3 rue Haute", "site_name": "Garage"},
    )
    community = Community.objects.get(name="Maison Moreau")
    with scope(community=community):
        site = community.sites.get()
    assert response["Location"] == f"/c/{community.slug}/sites/{site.pk}/chargers/claim/"
    return community


def invite_owner(client, community, capture=None, **data):
    if capture is not None:
        with capture(execute=True):
            response = client.post(f"/c/{community.slug}/owner/invite/", data)
    else:
        response = client.post(f"/c/{community.slug}/owner/invite/", data)
    assert response.status_code == 302, response.content
    page = client.get(f"/c/{community.slug}/owner/invite/").content.decode()
    link = re.search(r'id="invitation-url">([^<]+)<', page).group(1)
    assert "<svg" in page  # the QR code of the link, inline
    return link.replace("http://localhost:8000", "")


def test_only_installer_company_members_have_an_installer_area(client, manager):
    client.force_login(manager)
    assert client.get("/installer/").status_code == 404
    assert client.get("/installer/installations/new/").status_code == 404


def test_installer_creates_installation_with_full_access_and_no_owner(client, installer, company):
    community = create_installation(client, installer)
    with scope(community=community):  # the reads of the new installation
        grant = AccessGrant.objects.get(community=community)
        assert grant.company == company and grant.scope == "full" and grant.valid_until is None
        assert not Membership.objects.filter(community=community).exists()
        assert community.installer == company
        assert client.get(f"/c/{community.slug}/sites/").status_code == 200
        assert client.get("/installer/").content.decode().count("Maison Moreau") == 1
        assert AuditEvent.objects.filter(community=community, action="installation.create").exists()


def test_handover_invite_accept_makes_owner_and_starts_14_days(
    client, installer, outbox, django_capture_on_commit_callbacks
):
    community = create_installation(client, installer)
    with scope(community=community):  # the reads of the new installation
        path = invite_owner(
            client,
            community,
            django_capture_on_commit_callbacks,
            email="alice@example.org",
            phone="0612345678",
        )
        assert outbox and outbox[-1].to == "+33612345678" and path in outbox[-1].body
        assert mail.outbox and path in mail.outbox[-1].body
        invitation = Invitation.objects.get(community=community)
        assert path.split("/")[-2] not in invitation.token_hash  # only a hash is stored

        owner = builders.make_user(phone="+33612345678")
        client.logout()
        # Not logged in: the invitation journey (code to the invited number, account if needed).
        assert client.get(path)["Location"].startswith("/accounts/invitation/")
        client.force_login(owner)
        assert "Become the owner" in client.get(path).content.decode()
        response = client.post(path)
        assert response["Location"] == f"/c/{community.slug}/"
        membership = Membership.objects.get(community=community, user=owner)
        assert membership.role == Role.OWNER and membership.state == "active"

        community.refresh_from_db()
        assert community.handed_over_at is not None
        full = AccessGrant.objects.get(community=community, scope="full")
        assert full.valid_until == community.handed_over_at + timedelta(days=14)
        assert AccessGrant.objects.get(community=community, scope="limited").valid_until is None
        actions = set(
            AuditEvent.objects.filter(community=community).values_list("action", flat=True)
        )
        assert {"invitation.handover", "ownership.handover", "access.handover_full"} <= actions


def test_installer_full_for_14_days_then_limited(client, installer, community, owner, company):
    """Controlled time: full access until day 14 after hand-over, limited after."""
    handed = timezone.now()
    community.installer, community.handed_over_at = company, handed
    community.save()
    builders.make_grant(community, company, "full", valid_until=handed + timedelta(days=14))
    builders.make_grant(community, company, "limited")
    with time_machine.travel(handed + timedelta(days=13, hours=23)):
        client.force_login(installer)
        assert client.get("/c/tilleuls/sessions/").status_code == 200
        assert client.get("/c/tilleuls/users/").status_code == 200
    with time_machine.travel(handed + timedelta(days=14, minutes=1)):
        client.force_login(installer)
        assert client.get("/c/tilleuls/sessions/").status_code == 403
        assert client.get("/c/tilleuls/users/").status_code == 403
        assert client.get("/c/tilleuls/").status_code == 403
        assert client.get("/c/tilleuls/sites/").status_code == 200  # charger health stays


def test_owner_extends_access_to_sensitive_data_then_revokes(client, installer, owner, company):
    community = Community.objects.get(slug="tilleuls")
    builders.make_grant(community, company, "limited")
    client.force_login(installer)
    assert client.get("/c/tilleuls/sessions/").status_code == 403

    client.force_login(owner)
    until = (timezone.localdate() + timedelta(days=30)).isoformat()
    response = client.post(
        "/c/tilleuls/installer-access/", {"company": company.pk, "valid_until": until}
    )
    assert response.status_code == 302
    grant = AccessGrant.objects.get(community=community, scope="sensitive")
    assert grant.valid_until.date().isoformat() == until

    client.force_login(installer)
    assert client.get("/c/tilleuls/sessions/").status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=32)):
        client.force_login(installer)
        assert client.get("/c/tilleuls/sessions/").status_code == 403  # the period ended

    client.force_login(owner)
    client.post(f"/c/tilleuls/installer-access/{grant.pk}/revoke/", {"understood": "on"})
    grant.refresh_from_db()
    assert grant.revoked_at is not None
    client.force_login(installer)
    assert client.get("/c/tilleuls/sessions/").status_code == 403
    actions = list(AuditEvent.objects.filter(community=community).values_list("action", flat=True))
    assert "access.grant" in actions and "access.revoke" in actions


def test_sensitive_grant_until_revoked(client, installer, owner, company):
    community = Community.objects.get(slug="tilleuls")
    builders.make_grant(community, company, "limited")
    client.force_login(owner)
    client.post("/c/tilleuls/installer-access/", {"company": company.pk, "valid_until": ""})
    assert AccessGrant.objects.get(scope="sensitive").valid_until is None
    with time_machine.travel(timezone.now() + timedelta(days=400)):
        client.force_login(installer)
        assert client.get("/c/tilleuls/users/").status_code == 200


def test_manager_cannot_change_installer_access(client, manager, company, community):
    builders.make_grant(community, company, "limited")
    client.force_login(manager)
    assert client.post("/c/tilleuls/installer-access/", {"company": company.pk}).status_code == 403


def test_revoking_every_grant_puts_the_installer_outside(client, installer, owner, company):
    community = Community.objects.get(slug="tilleuls")
    grant = builders.make_grant(community, company, "limited")
    client.force_login(owner)
    client.post(f"/c/tilleuls/installer-access/{grant.pk}/revoke/", {"understood": "on"})
    client.force_login(installer)
    assert client.get("/c/tilleuls/sites/").status_code == 404


def test_installer_outside_their_grants_gets_404(client, installer, company, outsider):
    other = builders.community_of(outsider)
    client.force_login(installer)
    assert client.get(f"/c/{other.slug}/sites/").status_code == 404
    with scope(community=other):
        builders.make_grant(
            other, company, "full", valid_until=timezone.now() - timedelta(minutes=1)
        )
    assert client.get(f"/c/{other.slug}/sites/").status_code == 404


def test_company_admin_adds_a_member_who_then_sees_the_installations(client, installer, company):
    client.force_login(installer)
    response = client.post(
        "/installer/members/add/",
        {"first_name": "Paul", "last_name": "Roy", "phone": "0611111111", "email": ""},
    )
    assert response["Location"] == "/installer/"
    colleague = company.members.get(user__last_name="Roy").user
    client.force_login(colleague)
    assert client.get("/installer/").status_code == 200
    # A non-admin member cannot add others.
    response = client.post(
        "/installer/members/add/",
        {"first_name": "X", "last_name": "Y", "phone": "0622222222", "email": ""},
    )
    assert "Only an admin" in response.content.decode()
