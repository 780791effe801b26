import pytest
from django.core import mail
from django_scopes import scope

from accounts import sms
from accounts.models import User
from chargers.models import ChargingSession
from communities import services
from communities.models import AuditEvent, Community, Membership, Role
from tests import builders
from tests.communities.portal_data import make_session

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope


@pytest.fixture(autouse=True)
def _outbox():
    sms.outbox.clear()
    yield
    sms.outbox.clear()


def add(client, capture, data, community="tilleuls"):
    with capture(execute=True):
        return client.post(f"/c/{community}/users/add/", data)


def test_add_user_creates_user_membership_and_sends_sms_and_email(
    manager_client, community, django_capture_on_commit_callbacks
):
    data = {
        "first_name": "Léa",
        "last_name": "Martin",
        "phone": "06 11 22 33 44",
        "email": "lea@example.com",
        "role": "individual",
        "community": "tilleuls",
    }
    response = add(manager_client, django_capture_on_commit_callbacks, data)
    assert response.status_code == 302 and response["Location"] == "/c/tilleuls/users/"
    user = User.objects.get(phone="+33611223344")
    m = Membership.objects.get(user=user, community=community)
    assert (m.role, m.state) == (Role.INDIVIDUAL, Membership.State.INVITED)
    assert (
        sms.outbox[-1].to == "+33611223344"
        and "http://localhost:8000/accounts/login/" in sms.outbox[-1].body
    )
    assert mail.outbox[-1].to == ["lea@example.com"]
    assert AuditEvent.objects.filter(community=community, action="member.add").exists()


def test_add_reuses_existing_user_and_other_managed_community(
    client, manager, community, django_capture_on_commit_callbacks
):
    other = builders.make_community(slug="second", name="Second")
    builders.make_member(other, Role.MANAGER, user=manager)
    existing = builders.make_user(phone="+33611223355", first_name="Known")
    client.force_login(manager)
    data = {
        "first_name": "X",
        "last_name": "Y",
        "phone": "+33611223355",
        "role": "manager",
        "community": "second",
    }
    response = add(client, django_capture_on_commit_callbacks, data)
    assert response["Location"] == "/c/second/users/"
    existing.refresh_from_db()
    assert existing.first_name == "Known"  # not overwritten
    with scope(community=other):
        assert Membership.objects.get(user=existing, community=other).role == Role.MANAGER
    assert not mail.outbox  # no e-mail address, no e-mail


def test_cannot_add_to_a_community_i_do_not_manage(
    client, manager, community, django_capture_on_commit_callbacks
):
    builders.make_community(slug="foreign")
    client.force_login(manager)
    data = {
        "first_name": "X",
        "last_name": "Y",
        "phone": "+33611223366",
        "role": "individual",
        "community": "foreign",
    }
    response = add(client, django_capture_on_commit_callbacks, data)
    assert response.status_code == 200 and "community" in response.context["form"].errors


def test_add_existing_member_is_refused(
    manager_client, individual, django_capture_on_commit_callbacks
):
    data = {
        "first_name": "X",
        "last_name": "Y",
        "phone": str(individual.phone),
        "role": "individual",
        "community": "tilleuls",
    }
    response = add(manager_client, django_capture_on_commit_callbacks, data)
    assert "already a member" in str(response.context["form"].non_field_errors())


def test_add_invalid_phone(manager_client, django_capture_on_commit_callbacks):
    data = {
        "first_name": "X",
        "last_name": "Y",
        "phone": "123",
        "role": "individual",
        "community": "tilleuls",
    }
    response = add(manager_client, django_capture_on_commit_callbacks, data)
    assert "phone" in response.context["form"].errors


def test_owner_role_cannot_be_added_from_the_form(
    manager_client, django_capture_on_commit_callbacks
):
    data = {
        "first_name": "X",
        "last_name": "Y",
        "phone": "+33611223377",
        "role": "owner",
        "community": "tilleuls",
    }
    response = add(manager_client, django_capture_on_commit_callbacks, data)
    assert "role" in response.context["form"].errors


def test_edit_member(manager_client, individual, community):
    m = individual.memberships.get()
    response = manager_client.post(
        f"/c/tilleuls/users/{m.pk}/edit/",
        {"first_name": "New", "last_name": "Name", "email": "n@example.com", "role": "manager"},
    )
    assert response.status_code == 302
    m.refresh_from_db()
    individual.refresh_from_db()
    assert m.role == Role.MANAGER and individual.first_name == "New"
    assert AuditEvent.objects.filter(action="member.update").exists()


def test_manager_cannot_demote_or_remove_owner(manager_client, owner, manager):
    m = owner.memberships.get()
    response = manager_client.post(
        f"/c/tilleuls/users/{m.pk}/edit/",
        {"first_name": "A", "last_name": "B", "email": "", "role": "individual"},
    )
    assert "Only an owner" in str(response.context["form"].non_field_errors())
    manager_client.post(f"/c/tilleuls/users/{m.pk}/remove/", {"understood": "on"})
    m.refresh_from_db()
    assert (m.role, m.state) == (Role.OWNER, Membership.State.ACTIVE)


def test_last_owner_stays(owner, community):
    with pytest.raises(services.CommunityError):
        services.remove_member(membership=owner.memberships.get(), actor=owner)


def test_remove_member_keeps_sessions(manager_client, individual, community, charger):
    make_session(charger, holder=individual, energy_wh="1000")
    m = individual.memberships.get()
    response = manager_client.post(f"/c/tilleuls/users/{m.pk}/remove/", {"understood": "on"})
    assert response["Location"] == "/c/tilleuls/users/"
    m.refresh_from_db()
    assert m.state == Membership.State.LEFT and m.left_at is not None
    assert ChargingSession.objects.filter(holder=individual, community=community).count() == 1
    assert AuditEvent.objects.filter(action="member.remove").exists()
    # Their sessions stay in the history, as a "former member": no name, no page any more.
    assert manager_client.get(f"/c/tilleuls/users/{m.pk}/").status_code == 404
    manager_client.get("/c/tilleuls/sessions/")  # shows (and spends) the "removed" message
    content = manager_client.get("/c/tilleuls/sessions/").content.decode()
    assert "Former member" in content and individual.last_name not in content


def test_member_detail_lists_their_sessions(manager_client, individual, charger):
    make_session(charger, holder=individual, energy_wh="7777")
    content = manager_client.get(
        f"/c/tilleuls/users/{individual.memberships.get().pk}/"
    ).content.decode()
    assert "7.777" in content


def test_member_list_query_count(manager_client, community, django_assert_max_num_queries):
    for _ in range(15):
        builders.make_member(community)
    with django_assert_max_num_queries(12):
        assert manager_client.get("/c/tilleuls/users/").status_code == 200


def test_create_community_makes_owner_and_unique_slug(client, manager):
    client.force_login(manager)
    data = {
        "name": "Résidence Les Tilleuls",
        "kind": "condominium",
        "address": "",
        "time_zone": "Europe/Paris",
    }
    response = client.post("/communities/new/", data)
    created = Community.objects.exclude(slug="tilleuls").get(name="Résidence Les Tilleuls")
    assert created.slug == "residence-les-tilleuls"
    assert response["Location"] == f"/c/{created.slug}/"
    with scope(community=created):
        assert Membership.objects.get(community=created, user=manager).role == Role.OWNER
    client.post("/communities/new/", data)
    assert Community.objects.filter(slug="residence-les-tilleuls-2").exists()


def test_home_redirects_to_first_community_or_create(client, manager, db):
    client.force_login(manager)
    assert client.get("/")["Location"] == "/c/tilleuls/"
    client.force_login(builders.make_user())
    assert client.get("/")["Location"] == "/communities/new/"


def test_switcher_lists_my_communities(client, manager, community):
    other = builders.make_community(slug="second", name="Second home")
    builders.make_member(other, Role.INDIVIDUAL, user=manager)
    client.force_login(manager)
    content = client.get("/c/tilleuls/").content.decode()
    assert "/c/second/" in content and "Second home" in content
