"""The front door: invitation of a person without an account, sign-up before any installation,
first login after "add a user", e-mail confirmation, account deletion confirmed by SMS."""

import re

import pytest
from django.core import mail

from accounts import sms
from accounts.models import LoginCode, User
from accounts.signup import email_token
from communities import invitations, services
from communities.models import Membership, Role
from tests import builders


@pytest.fixture(autouse=True)
def _memory(settings):
    settings.SMS_BACKEND = "memory"
    settings.LANGUAGE_CODE = "en"
    sms.outbox.clear()
    yield
    sms.outbox.clear()


@pytest.fixture
def post(client, django_capture_on_commit_callbacks):
    def _post(url, data=None):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data or {})

    return _post


def last_code():
    return re.search(r"\b(\d{6})\b", sms.outbox[-1].body).group(1)


def _handover(community, phone="+33612345678", email=""):
    installer_company = builders.make_company()
    installer = builders.make_installer(installer_company)
    builders.make_grant(community, installer_company, "full")
    _inv, token = invitations.invite_owner(
        community=community, actor=installer, phone=phone, email=email
    )
    return token


@pytest.mark.community_scope
def test_invitation_creates_the_account_of_a_new_person_and_makes_them_owner(
    client, post, community
):
    token = _handover(community)
    sms.outbox.clear()
    start = f"/accounts/invitation/{token}/"
    assert client.get(f"/invitations/{token}/")["Location"] == start
    page = client.get(start).content.decode()
    assert "ending in" in page and "56 78" in page and "+33612345678" not in page
    response = post(start)
    assert response["Location"] == f"{start}code/"
    assert sms.outbox[-1].to == "+33612345678"
    assert post(f"{start}code/", {"code": "000000"}).status_code == 200  # wrong code: stays
    response = post(f"{start}code/", {"code": last_code()})
    assert response["Location"] == f"{start}profile/"
    response = post(
        f"{start}profile/",
        {"first_name": "Nina", "last_name": "Roux", "email": "nina@example.org", "country": "FR"},
    )
    assert response["Location"] == "/c/tilleuls/"
    user = User.objects.get(phone="+33612345678")
    assert (user.first_name, user.country) == ("Nina", "FR") and user.phone_confirmed_at
    membership = Membership.objects.get(community=community, user=user)
    assert (membership.role, membership.state) == (Role.OWNER, Membership.State.ACTIVE)
    assert client.get("/c/tilleuls/").status_code == 200  # logged in
    assert mail.outbox[-1].to == ["nina@example.org"]  # e-mail confirmation link
    assert "/accounts/email/confirm/" in mail.outbox[-1].body


def test_invitation_code_is_single_use_and_profile_needs_the_code(client, post, community):
    token = _handover(community)
    start = f"/accounts/invitation/{token}/"
    assert client.get(f"{start}profile/")["Location"] == start  # no proof yet
    post(start)
    code = last_code()
    post(f"{start}code/", {"code": code})
    response = post(f"{start}code/", {"code": code})
    assert "already used" in response.content.decode()


def test_email_invitation_asks_for_the_number(client, post, community):
    token = _handover(community, phone="", email="new@example.org")
    start = f"/accounts/invitation/{token}/"
    assert 'name="phone"' in client.get(start).content.decode()
    post(start, {"phone": "06 98 76 54 32"})
    assert sms.outbox[-1].to == "+33698765432"
    post(f"{start}code/", {"code": last_code()})
    page = client.get(f"{start}profile/").content.decode()
    assert "new@example.org" in page


def test_existing_account_is_logged_in_and_accepts(client, post, community):
    existing = builders.make_user(phone="+33612345678", first_name="Old")
    existing.phone_confirmed_at = existing.date_joined
    existing.save()
    token = _handover(community)
    start = f"/accounts/invitation/{token}/"
    post(start)
    response = post(f"{start}code/", {"code": last_code()})
    assert response["Location"] == f"/invitations/{token}/"
    assert post(f"/invitations/{token}/")["Location"] == "/c/tilleuls/"
    assert User.objects.get(pk=existing.pk).first_name == "Old"


@pytest.mark.community_scope
def test_signup_before_any_installation_then_linked_by_add_a_user(client, post, community, manager):
    data = {
        "first_name": "Zoé",
        "last_name": "Blanc",
        "email": "zoe@example.org",
        "country": "FR",
        "phone": "06 11 11 11 11",
    }
    assert post("/accounts/signup/", data)["Location"] == "/accounts/signup/code/"
    assert sms.outbox[-1].to == "+33611111111"
    assert LoginCode.objects.get().purpose == LoginCode.Purpose.SIGNUP
    response = post("/accounts/signup/code/", {"code": last_code()})
    assert response["Location"] == "/"
    user = User.objects.get(phone="+33611111111")
    assert user.get_full_name() == "Zoé Blanc" and user.email_confirmed_at is None
    # The e-mail link confirms the address.
    link = re.search(r"http://\S+/accounts/email/confirm/\S+/", mail.outbox[-1].body).group(0)
    assert client.get(link.replace("http://localhost:8000", "")).status_code == 200
    user.refresh_from_db()
    assert user.email_confirmed_at is not None
    # Later, a manager adds this number: the same account is linked, names kept.
    services.add_member(
        community=community,
        actor=manager,
        phone="+33611111111",
        first_name="Z",
        last_name="B",
        role=Role.INDIVIDUAL,
    )
    user.refresh_from_db()
    assert user.first_name == "Zoé"
    assert Membership.objects.filter(community=community, user=user).exists()


def test_signup_code_never_logs_in(client, post, db):
    builders.make_user(phone="+33611111112")
    post(
        "/accounts/signup/",
        {"first_name": "A", "last_name": "B", "country": "FR", "phone": "+33611111112"},
    )
    code = last_code()
    client.get("/accounts/login/")
    client.session.update({})
    session = client.session
    session["login_phone"] = "+33611111112"
    session.save()
    response = post("/accounts/login/code/", {"code": code})
    assert "_auth_user_id" not in client.session and response.status_code == 200


def test_signup_refuses_foreign_numbers(post, db):
    response = post(
        "/accounts/signup/",
        {"first_name": "A", "last_name": "B", "country": "FR", "phone": "+12025550143"},
    )
    assert response.status_code == 200 and "does not send SMS" in response.content.decode()
    assert not sms.outbox


def test_outdated_email_link_is_refused(client, db):
    user = builders.make_user(email="a@example.org")
    token = email_token(user)
    user.email = "b@example.org"
    user.save()
    assert client.get(f"/accounts/email/confirm/{token}/").status_code == 400
    assert client.get("/accounts/email/confirm/forged/").status_code == 400


def test_first_login_after_add_a_user_confirms_the_profile(client, post, community, manager):
    services.add_member(
        community=community,
        actor=manager,
        phone="+33622222222",
        first_name="Léo",
        last_name="Faure",
        role=Role.INDIVIDUAL,
    )
    post("/accounts/login/", {"phone": "+33622222222"})
    response = post("/accounts/login/code/", {"code": last_code()})
    assert response["Location"].startswith("/accounts/me/profile/?next=")
    page = client.get(response["Location"]).content.decode()
    assert "Léo" in page and "Faure" in page
    response = post(
        "/accounts/me/profile/",
        {"first_name": "Léo", "last_name": "Faure", "email": "", "country": "BE", "next": "/"},
    )
    assert response["Location"] == "/"
    assert User.objects.get(phone="+33622222222").country == "BE"


def test_account_deletion_needs_the_sms_code(client, post, community, individual):
    client.force_login(individual)
    page = client.get("/accounts/me/delete/").content.decode()
    assert "Send me a code by SMS" in page and "cannot be undone" in page
    assert post("/accounts/me/delete/", {"code": "123456"}).status_code == 400
    post("/accounts/me/delete/", {"send_code": "1"})
    code = last_code()
    assert "Delete my account" in sms.outbox[-1].body
    # A confirmation code is not a login code.
    assert LoginCode.objects.filter(purpose=LoginCode.Purpose.CONFIRM).count() == 1
    response = post("/accounts/me/delete/", {"code": code})
    assert response["Location"] == "/accounts/login/"
    individual.refresh_from_db()
    assert not individual.is_active
