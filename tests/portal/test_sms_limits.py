"""SMS pumping: limits per community and per destination number, allowed countries."""

import pytest

from accounts import sms, sms_limits
from communities import invitations, services
from communities.models import Membership, Role
from tests import builders


@pytest.fixture(autouse=True)
def _memory_sms(settings):
    settings.SMS_BACKEND = "memory"
    settings.LANGUAGE_CODE = "en"
    sms.outbox.clear()
    yield
    sms.outbox.clear()


def _add(community, manager, phone, **extra):
    return services.add_member(
        community=community,
        actor=manager,
        phone=phone,
        first_name="A",
        last_name="B",
        role=Role.INDIVIDUAL,
        **extra,
    )


@pytest.mark.community_scope
def test_25_additions_in_a_burst_stop_at_the_community_limit(
    community, manager, django_capture_on_commit_callbacks, settings
):
    settings.SMS_PER_COMMUNITY_PER_HOUR = 20
    refused = []
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(25):
            try:
                _add(community, manager, f"+336200000{n:02d}")
            except services.CommunityError as e:
                refused.append(e.message)
    assert len(sms.outbox) == 20
    assert len(refused) == 5 and "limit of 20 SMS per hour" in refused[0]
    # Refused means refused: no member was added without their SMS.
    assert Membership.objects.filter(community=community, role=Role.INDIVIDUAL).count() == 20


def test_daily_community_limit(community, manager, settings):
    settings.SMS_PER_COMMUNITY_PER_HOUR = 100
    settings.SMS_PER_COMMUNITY_PER_DAY = 3
    for n in range(3):
        _add(community, manager, f"+336300000{n:02d}")
    with pytest.raises(services.CommunityError, match="3 SMS per day"):
        _add(community, manager, "+33630000099")


def test_adding_and_removing_one_number_ten_times(
    community, manager, django_capture_on_commit_callbacks, settings
):
    settings.SMS_PER_NUMBER_PER_HOUR = 5
    refused = 0
    with django_capture_on_commit_callbacks(execute=True):
        for _n in range(10):
            try:
                membership = _add(community, manager, "+33640000001")
            except services.CommunityError as e:
                assert "received 5 SMS from Sparklin in the last hour" in e.message
                refused += 1
                continue
            services.remove_member(membership=membership, actor=manager)
    assert len([m for m in sms.outbox if m.to == "+33640000001"]) == 5
    assert refused == 5


def test_number_limit_is_shared_with_other_communities(community, manager, settings):
    settings.SMS_PER_NUMBER_PER_HOUR = 2
    other = builders.make_community(slug="other")
    other_manager = builders.make_member(other, Role.MANAGER).user
    _add(community, manager, "+33650000001")
    _add(other, other_manager, "+33650000002")
    _add(other, other_manager, "+33650000001")
    third = builders.make_community(slug="third")
    third_manager = builders.make_member(third, Role.MANAGER).user
    with pytest.raises(services.CommunityError):
        _add(third, third_manager, "+33650000001")


@pytest.mark.parametrize("phone", ["+12025550143", "+88216000000", "+2348031234567"])
def test_numbers_outside_the_allowed_countries_are_refused(community, manager, phone):
    with pytest.raises(services.CommunityError, match="does not send SMS to numbers of this"):
        _add(community, manager, phone)
    assert not sms.outbox


def test_country_setting(settings):
    settings.SMS_ALLOWED_COUNTRIES = ["CH"]
    assert sms_limits.country_allowed("+41791234567")
    assert not sms_limits.country_allowed("+33612345678")
    settings.SMS_ALLOWED_COUNTRIES = ["*"]
    assert sms_limits.country_allowed("+12025550143")


def test_default_allows_eu_and_overseas_france(settings):
    for phone in ("+33612345678", "+491701234567", "+262692123456", "+4791234567"):
        assert sms_limits.country_allowed(phone), phone
    assert not sms_limits.country_allowed("+447700900123")  # UK left the EU


def test_owner_invitation_to_a_foreign_number_is_refused(community, owner):
    with pytest.raises(services.CommunityError):
        invitations.invite_owner(community=community, actor=owner, phone="+12025550143")


def test_the_manager_sees_the_refusal(
    manager_client, community, settings, django_capture_on_commit_callbacks
):
    settings.SMS_PER_COMMUNITY_PER_HOUR = 1
    data = {"first_name": "L", "last_name": "M", "role": "individual", "community": "tilleuls"}
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post("/c/tilleuls/users/add/", {**data, "phone": "+33611223344"})
        response = manager_client.post("/c/tilleuls/users/add/", {**data, "phone": "+33611223345"})
    assert response.status_code == 200
    assert "limit of 1 SMS per hour" in response.content.decode()


def test_login_codes_count_towards_the_number_limit(client, db, settings):
    settings.SMS_PER_NUMBER_PER_HOUR = 2
    from accounts import services as account_services

    builders.make_user(phone="+33660000001")
    for n in range(2):
        account_services.request_login_code(phone="+33660000001", ip=f"10.0.0.{n}")
        from accounts.models import LoginCode

        LoginCode.objects.update(created_at="2000-01-01T00:00Z")  # past the resend interval
    with pytest.raises(account_services.LoginError, match="last hour"):
        account_services.request_login_code(phone="+33660000001", ip="10.0.0.9")


def test_answering_an_access_request_respects_the_limits(community, manager, settings):
    from communities.models import AccessRequest

    settings.SMS_PER_COMMUNITY_PER_HOUR = 1
    _add(community, manager, "+33670000001")  # spends the community's hour
    driver = builders.make_user(phone="+33670000002")
    request = AccessRequest.objects.create(community=community, user=driver)
    with pytest.raises(services.CommunityError, match="limit of 1 SMS per hour"):
        services.decide_access_request(access_request=request, actor=manager, accept=True)
    request.refresh_from_db()
    assert request.state == AccessRequest.State.PENDING  # nothing changed
