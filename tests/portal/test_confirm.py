"""One confirmation pattern for every irreversible action (sparklin/confirm.py)."""

import pytest

from communities.models import AccessGrant, Invitation, Membership, Role
from sparklin.confirm import CHECK, PHRASE, Confirmation, ConfirmForm
from tests import builders


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


def _form(data, **kwargs):
    confirmation = Confirmation(title="T", button="B", cancel_url="/", **kwargs)
    return ConfirmForm(data, confirmation=confirmation)


def test_check_needs_the_box():
    assert not _form({}, method=CHECK).is_valid()
    assert _form({"understood": "on"}, method=CHECK).is_valid()


def test_phrase_ignores_case_accents_and_spaces():
    kwargs = {"method": PHRASE, "phrase": "Résidence  Les Tilleuls"}
    assert _form({"typed": "residence les tilleuls"}, **kwargs).is_valid()
    assert not _form({"typed": "Résidence"}, **kwargs).is_valid()


def test_phone_phrase_accepts_any_writing():
    kwargs = {"method": PHRASE, "phrase": "+33612345678", "phrase_kind": "phone"}
    assert _form({"typed": "06 12 34 56 78"}, **kwargs).is_valid()
    assert not _form({"typed": "06 12 34 56 79"}, **kwargs).is_valid()


def test_unknown_method_is_refused():
    with pytest.raises(ValueError):
        Confirmation(title="T", button="B", cancel_url="/", method="maybe")


@pytest.mark.community_scope
def test_removing_a_member_needs_the_confirmation(manager_client, community):
    m = builders.make_member(community, Role.INDIVIDUAL)
    url = f"/c/tilleuls/users/{m.pk}/remove/"
    page = manager_client.get(url).content.decode()
    assert "Their cards stop working" in page and 'name="understood"' in page
    assert manager_client.post(url).status_code == 400
    assert Membership.objects.get(pk=m.pk).state != Membership.State.LEFT
    manager_client.post(url, {"understood": "on"})
    assert Membership.objects.get(pk=m.pk).state == Membership.State.LEFT


@pytest.mark.community_scope
def test_revoking_installer_access_needs_the_confirmation(client, community, owner):
    grant = builders.make_grant(community, builders.make_company(), "full")
    client.force_login(owner)
    url = f"/c/tilleuls/installer-access/{grant.pk}/revoke/"
    assert client.get(url).status_code == 200
    client.post(url)
    assert AccessGrant.objects.get(pk=grant.pk).revoked_at is None
    client.post(url, {"understood": "on"})
    assert AccessGrant.objects.get(pk=grant.pk).revoked_at is not None


@pytest.mark.community_scope
def test_transferring_ownership_needs_the_name_typed(client, community, owner, settings):
    settings.SMS_BACKEND = "memory"
    client.force_login(owner)
    url = "/c/tilleuls/owner/invite/"
    response = client.post(url, {"email": "next@example.org", "typed": "wrong"})
    assert "This is not the text shown" in response.content.decode()
    assert not Invitation.objects.filter(community=community).exists()
    client.post(url, {"email": "next@example.org", "typed": "résidence les tilleuls"})
    assert Invitation.objects.filter(community=community).exists()


def test_sole_owner_is_told_before_leaving(client, community, owner):
    client.force_login(owner)
    page = client.get("/c/tilleuls/leave/").content.decode()
    assert "transfer the ownership before leaving" in page


def test_confirmation_page_renders_in_french(client, community, manager):
    m = builders.make_member(community, Role.INDIVIDUAL)
    client.force_login(manager)
    client.cookies["django_language"] = "fr"
    response = client.get(f"/c/tilleuls/users/{m.pk}/remove/")
    assert response.status_code == 200
