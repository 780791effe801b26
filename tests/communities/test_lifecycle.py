"""Ownership transfer, invitation links that are reused, expired or forged, moving out, access
requests, and a person's own data: export (JSON, CSV) and account deletion."""

import csv
import io
import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts import sms
from accounts.models import User
from chargers.models import AuthorizationStatus, ChargeCard, ChargingSession, card_decision
from communities import invitations
from communities.models import AccessRequest, AuditEvent, Membership, Role
from tests import builders
from tests.communities.portal_data import make_session

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope


@pytest.fixture
def invitation_path(community, owner):
    _, token = invitations.invite_owner(community=community, actor=owner, email="new@example.org")
    return f"/invitations/{token}/"


# --- invitation links ---------------------------------------------------------------------------


def test_transfer_ownership_completes_when_accepted(client, owner, community, invitation_path):
    successor = builders.make_user()
    client.force_login(successor)
    assert client.post(invitation_path)["Location"] == "/c/tilleuls/"
    roles = dict(Membership.objects.filter(community=community).values_list("user_id", "role"))
    assert roles[successor.pk] == Role.OWNER and roles[owner.pk] == Role.MANAGER
    assert AuditEvent.objects.filter(action="ownership.transfer").exists()


def test_transfer_is_pending_until_accepted(client, owner, community, invitation_path):
    assert Membership.objects.get(user=owner).role == Role.OWNER
    client.force_login(owner)
    assert client.get("/c/tilleuls/owner/invite/").status_code == 200


def test_reused_token_is_refused_and_changes_nothing(client, community, invitation_path):
    first, second = builders.make_user(), builders.make_user()
    client.force_login(first)
    client.post(invitation_path)
    client.force_login(second)
    response = client.post(invitation_path)
    assert response.status_code == 404 and "already used" in response.content.decode()
    assert not Membership.objects.filter(user=second).exists()


def test_expired_token_is_refused(client, community, invitation_path):
    person = builders.make_user()
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        client.force_login(person)
        response = client.post(invitation_path)
    assert response.status_code == 404 and "expired" in response.content.decode()
    assert not Membership.objects.filter(user=person).exists()


def test_forged_token_is_refused(client, community, invitation_path):
    person = builders.make_user()
    client.force_login(person)
    for path in ("/invitations/forged-token/", invitation_path[:-5] + "AAAA/"):
        response = client.post(path)
        assert response.status_code == 404 and "not valid" in response.content.decode()
    assert not Membership.objects.filter(user=person).exists()


def test_a_new_invitation_cancels_the_previous_link(client, owner, community, invitation_path):
    invitations.invite_owner(community=community, actor=owner, phone="+33600000099")
    client.force_login(builders.make_user())
    assert "cancelled" in client.post(invitation_path).content.decode()


def test_manager_cannot_transfer_ownership(client, manager, owner):
    client.force_login(manager)
    assert client.post("/c/tilleuls/owner/invite/", {"email": "x@example.org"}).status_code == 403


def test_owner_cannot_be_removed_by_a_manager(client, manager, owner):
    client.force_login(manager)
    m = owner.memberships.get()
    client.post(f"/c/tilleuls/users/{m.pk}/remove/", {"understood": "on"})
    m.refresh_from_db()
    assert m.state == Membership.State.ACTIVE


# --- moving out ---------------------------------------------------------------------------------


def test_leaving_stops_cards_and_hides_the_name(client, community, individual, manager, charger):
    card = builders.make_card(community, holder=individual, uid="04A1")
    make_session(charger, holder=individual, card=card, energy_wh="2000")
    assert card_decision(community.pk, "04A1")["status"] == AuthorizationStatus.ACCEPTED
    client.force_login(individual)
    assert client.get("/c/tilleuls/leave/").status_code == 200
    assert client.post("/c/tilleuls/leave/", {"understood": "on"})["Location"] == "/"
    assert Membership.objects.get(user=individual).state == Membership.State.LEFT
    assert card_decision(community.pk, "04A1")["status"] == AuthorizationStatus.BLOCKED
    assert client.get("/c/tilleuls/").status_code == 404  # out, but the account stays
    assert User.objects.get(pk=individual.pk).is_active

    client.force_login(manager)
    for page in ("/c/tilleuls/sessions/", "/c/tilleuls/", "/c/tilleuls/users/"):
        content = client.get(page).content.decode()
        assert individual.last_name not in content, page
    assert "Former member" in client.get("/c/tilleuls/sessions/").content.decode()
    assert ChargingSession.objects.filter(holder=individual).count() == 1  # kept for accounts


def test_sole_owner_cannot_leave(client, owner):
    client.force_login(owner)
    client.post("/c/tilleuls/leave/", {"understood": "on"})
    assert Membership.objects.get(user=owner).state == Membership.State.ACTIVE
    assert "transfer the ownership" in client.get("/c/tilleuls/leave/").content.decode()


# --- access requests ----------------------------------------------------------------------------


def test_access_request_accepted_by_a_manager(
    client, community, manager, django_capture_on_commit_callbacks
):
    from accounts import sms

    driver = builders.make_user(language="en")  # the SMS speaks the driver's language
    client.force_login(driver)
    response = client.post(
        "/access/request/", {"community": "tilleuls", "message": "Parking 12, Tesla"}
    )
    assert response.status_code == 302
    request = AccessRequest.objects.get(user=driver)
    assert (
        "already waiting"
        in client.post("/access/request/", {"community": "tilleuls"}).content.decode()
    )

    client.force_login(manager)
    assert "Parking 12" in client.get("/c/tilleuls/access-requests/").content.decode()
    sms.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/c/tilleuls/access-requests/{request.pk}/decide/", {"decision": "accept"})
    request.refresh_from_db()
    assert request.state == AccessRequest.State.ACCEPTED and request.decided_by == manager
    m = Membership.objects.get(user=driver, community=community)
    assert m.role == Role.INDIVIDUAL and m.state == Membership.State.ACTIVE
    assert sms.outbox and "You can now charge" in sms.outbox[-1].body


def test_access_request_refused(client, community, manager):
    driver = builders.make_user()
    client.force_login(driver)
    client.post("/access/request/", {"community": "tilleuls"})
    request = AccessRequest.objects.get(user=driver)
    client.force_login(manager)
    client.post(f"/c/tilleuls/access-requests/{request.pk}/decide/", {"decision": "refuse"})
    request.refresh_from_db()
    assert request.state == AccessRequest.State.REFUSED
    assert not Membership.objects.filter(user=driver).exists()
    response = client.post(
        f"/c/tilleuls/access-requests/{request.pk}/decide/", {"decision": "accept"}
    )
    assert response.status_code == 302 and not Membership.objects.filter(user=driver).exists()


def test_access_request_to_unknown_installation(client, db):
    client.force_login(builders.make_user())
    response = client.post("/access/request/", {"community": "nowhere"})
    assert "No installation has this short name" in response.content.decode()


# --- my data ------------------------------------------------------------------------------------


def test_data_export_json_and_csv(client, community, individual, charger):
    individual.email = "lucas@example.org"
    individual.save()
    card = builders.make_card(community, holder=individual, uid="CAFE01")
    make_session(charger, holder=individual, card=card, energy_wh="4321", id_tag="CAFE01")
    client.force_login(individual)
    response = client.get("/accounts/me/export.json")
    assert response["Content-Disposition"].startswith("attachment")
    data = json.loads(response.content)
    assert data["profile"]["email"] == "lucas@example.org"
    assert data["memberships"][0]["community"] == community.name
    assert data["cards"][0]["uid"] == "CAFE01"
    assert data["sessions"][0]["energy_wh"] == "4321.0"
    rows = list(csv.reader(io.StringIO(client.get("/accounts/me/export.csv").content.decode())))
    assert rows[0] == ["section", "item", "field", "value"]
    assert ["sessions", "1", "energy_wh", "4321.0"] in rows
    assert client.get("/accounts/me/export.xml").status_code == 404


def test_sole_owner_must_transfer_before_deleting(client, owner):
    client.force_login(owner)
    assert "transfer the ownership" in client.get("/accounts/me/").content.decode()
    client.post("/accounts/me/delete/")
    owner.refresh_from_db()
    assert owner.is_active and owner.first_name


def test_delete_account_anonymises_everything(
    client, community, individual, charger, manager, django_capture_on_commit_callbacks
):
    phone = str(individual.phone)
    individual.email = "gone@example.org"
    individual.save()
    card = builders.make_card(community, holder=individual, uid="BEEF01")
    session = make_session(charger, holder=individual, card=card, energy_wh="1500", id_tag="BEEF01")
    client.force_login(individual)
    # Nothing happens without the code sent by SMS (sparklin/confirm.py).
    assert client.post("/accounts/me/delete/", {"code": "000000"}).status_code == 400
    assert User.objects.get(pk=individual.pk).is_active
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/me/delete/", {"send_code": "1"})
    code = re.search(r"\b(\d{6})\b", sms.outbox[-1].body).group(1)
    response = client.post("/accounts/me/delete/", {"code": code})
    assert response["Location"] == "/accounts/login/"
    user = User.objects.get(pk=individual.pk)
    assert (user.first_name, user.last_name, user.email, user.is_active) == ("", "", "", False)
    assert str(user.phone) != phone and not User.objects.filter(phone=phone).exists()
    session.refresh_from_db()
    assert session.holder is None and session.card is None and session.id_tag == ""
    assert str(session.energy_wh) == "1500.0"  # kept for the community's accounts
    card.refresh_from_db()
    assert card.holder is None and not card.active
    assert Membership.objects.get(user=user).state == Membership.State.LEFT
    assert not ChargeCard.objects.filter(holder=user).exists()
    assert individual.last_name not in "".join(AuditEvent.objects.values_list("target", flat=True))
    # The number can sign up again as a new person.
    assert User.objects.create_user(phone=phone).pk != user.pk
