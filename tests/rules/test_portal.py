"""The Rules page, user groups, charging hours and limits from the portal; the summary on a
site; a driver's refusals; sessions stopped when a limit is reached."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from chargers.models import ChargerCommand, ChargingSession
from communities.models import AuditEvent
from rules import services
from rules.models import AccessPolicy, Mode, Reason, RuleEvent, TimeWindow, UsageLimit, UserGroup
from rules.tasks import check_limits
from tests import builders

pytestmark = pytest.mark.community_scope


def test_only_managers_see_the_rules(client, individual, manager):
    client.force_login(individual)
    assert client.get("/c/tilleuls/rules/").status_code == 403
    assert client.get("/c/tilleuls/users/groups/").status_code == 403
    client.force_login(manager)
    assert client.get("/c/tilleuls/rules/").status_code == 200


def test_manager_reserves_a_site_to_a_group_during_working_hours(
    manager_client, community, site, charger, individual
):
    builders.make_connector(charger, connector_id=1)
    response = manager_client.post(
        "/c/tilleuls/users/groups/", {"name": "Bureaux", "members": [individual.pk]}
    )
    assert response.status_code == 302
    group = UserGroup.objects.get()
    assert list(group.members.all()) == [individual]

    url = f"/c/tilleuls/rules/sites/{site.pk}/"
    refused = manager_client.post(url, {"mode": Mode.CHOSEN})
    assert refused.status_code == 200 and refused.context["form"].non_field_errors()
    assert manager_client.post(url, {"mode": Mode.CHOSEN, "groups": [group.pk]}).status_code == 302
    policy = AccessPolicy.objects.get(site=site)
    assert policy.mode == Mode.CHOSEN and list(policy.groups.all()) == [group]

    window_url = f"/c/tilleuls/rules/{policy.pk}/windows/add/"
    manager_client.post(window_url, {"start": "08:00", "end": "19:00"})  # no day: refused
    assert not TimeWindow.objects.exists()
    manager_client.post(
        window_url, {"days": ["1", "2", "3", "4", "5"], "start": "08:00", "end": "19:00"}
    )
    window = TimeWindow.objects.get()
    assert window.days == "12345"

    page = manager_client.get("/c/tilleuls/rules/").content.decode()
    assert "Bureaux" in page and "08:00–19:00" in page
    site_page = manager_client.get(f"/c/tilleuls/sites/{site.pk}/").content.decode()
    assert "Bureaux" in site_page and "08:00–19:00" in site_page

    manager_client.post(f"/c/tilleuls/rules/windows/{window.pk}/remove/")
    manager_client.post(f"/c/tilleuls/rules/{policy.pk}/remove/")
    assert not AccessPolicy.objects.exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"group.create", "rule.policy", "rule.window_add", "rule.window_remove"} <= actions
    assert "rule.policy_remove" in actions


def test_an_outlet_gets_its_own_rule(manager_client, site, charger):
    outlet = builders.make_connector(charger, connector_id=2)
    manager_client.post(f"/c/tilleuls/rules/outlets/{outlet.pk}/", {"mode": Mode.NOBODY})
    assert AccessPolicy.objects.get(connector=outlet).mode == Mode.NOBODY


def test_limits_set_and_removed(manager_client, individual):
    manager_client.post(
        "/c/tilleuls/rules/limits/",
        {"user": individual.pk, "monthly_kwh": "150", "session_minutes": "240"},
    )
    limit = UsageLimit.objects.get()
    assert (limit.monthly_kwh, limit.session_minutes) == (Decimal("150"), 240)
    manager_client.post("/c/tilleuls/rules/limits/", {"user": individual.pk})
    assert not UsageLimit.objects.exists()


def test_a_group_of_a_former_member_cannot_be_saved(community, manager):
    left = builders.make_member(community, state="left").user
    with pytest.raises(services.RulesError):
        services.save_group(community=community, actor=manager, name="X", members=[left])


def test_an_individual_cannot_change_rules_through_the_service(community, individual, site):
    with pytest.raises(services.RulesError):
        services.set_policy(community=community, actor=individual, mode=Mode.NOBODY, site=site)


def test_the_driver_sees_why_a_charge_was_refused(client, community, individual, charger):
    RuleEvent.objects.create(
        community=community,
        reason=Reason.OUTSIDE_HOURS,
        action="Authorize",
        charger=charger,
        holder=individual,
        uid="04A1",
    )
    client.force_login(individual)
    page = client.get("/c/tilleuls/my-sessions/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "en dehors des heures de recharge" in page or "outside charging hours" in page


def _active_session(community, charger, holder, minutes_ago, version="1.6", energy_wh=0):
    charger.connected, charger.ocpp_version = True, version
    charger.save()
    return ChargingSession.objects.create(
        community=community,
        charger=charger,
        connector=builders.make_connector(charger, connector_id=1),
        transaction_id="42" if version == "1.6" else "tx-42",
        holder=holder,
        id_tag="04A1",
        started_at=timezone.now() - timedelta(minutes=minutes_ago),
        meter_start_wh=Decimal("1000"),
        meter_last_wh=Decimal(1000 + energy_wh),
    )


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_session_past_its_duration_is_stopped_once(
    community, manager, individual, charger, version
):
    services.set_limit(
        community=community, actor=manager, user=individual, monthly_kwh=None, session_minutes=60
    )
    session = _active_session(community, charger, individual, minutes_ago=61, version=version)
    assert check_limits() == 1
    command = ChargerCommand.objects.get(session=session)
    if version == "1.6":
        assert (command.action, command.payload) == (
            "RemoteStopTransaction",
            {"transactionId": 42},
        )
    else:
        assert (command.action, command.payload) == (
            "RequestStopTransaction",
            {"transactionId": "tx-42"},
        )
    assert check_limits() == 0  # a stop on its way is not asked twice
    event = RuleEvent.objects.get()
    assert (event.kind, event.reason, event.session) == (
        RuleEvent.Kind.STOPPED,
        Reason.SESSION_DURATION,
        session,
    )


def test_a_session_reaching_the_monthly_limit_is_stopped(community, manager, individual, charger):
    services.set_limit(
        community=community,
        actor=manager,
        user=individual,
        monthly_kwh=Decimal("10"),
        session_minutes=None,
    )
    session = _active_session(community, charger, individual, minutes_ago=5, energy_wh=9000)
    assert check_limits() == 0  # 9 kWh of 10
    session.meter_last_wh = Decimal("11000")
    session.save()
    assert check_limits() == 1
    assert RuleEvent.objects.get().reason == Reason.MONTHLY_LIMIT


def test_the_charger_page_says_who_may_charge_on_each_outlet_now(
    client, community, manager, site, charger
):
    first = builders.make_connector(charger, 1)
    builders.make_connector(charger, 2)
    services.set_policy(community=community, actor=manager, mode=Mode.FREE, site=site)
    services.set_policy(community=community, actor=manager, mode=Mode.NOBODY, connector=first)
    client.force_login(manager)
    page = client.get(f"/c/tilleuls/chargers/{charger.pk}/", HTTP_ACCEPT_LANGUAGE="en")
    html = page.content.decode()
    assert "Who may charge now" in html
    assert "Out of service" in html  # outlet 1, its own rule
    assert "Free charging for anyone" in html and "as its site" in html  # outlet 2


def test_rules_page_lists_outlets_a_page_at_a_time_with_the_outlets_filters(
    manager_client, community, site, settings
):
    """At fleet scale the Rules page lists its outlets like the outlets page (50 a page,
    searchable, by state and site) plus "own rule or not", each with its own rule or its
    site's, in a number of queries that does not grow with the fleet."""
    from chargers.views.fleet import OUTLETS_PER_PAGE

    settings.LANGUAGE_CODE = "en"
    other = builders.make_site(community, name="Other site")
    connectors = []
    for i in range(OUTLETS_PER_PAGE + 3):
        charger = builders.make_charger(community, site=site, identity=f"RULE-{i:03d}")
        connectors.append(builders.make_connector(charger, 1))
    far = builders.make_connector(builders.make_charger(community, site=other, identity="FAR-1"), 1)
    AccessPolicy.objects.create(community=community, site=other, mode=Mode.NOBODY)
    own = connectors[7]
    AccessPolicy.objects.create(community=community, connector=own, mode=Mode.FREE)

    first = manager_client.get("/c/tilleuls/rules/").content.decode()
    assert first.count('<tr id="outlet-') == OUTLETS_PER_PAGE
    assert f"{OUTLETS_PER_PAGE + 4} outlets" in first and "page=2" in first
    assert f'id="site-{other.pk}"' in first and f'id="site-{site.pk}"' in first

    by_site = manager_client.get(f"/c/tilleuls/rules/?site={other.pk}").content.decode()
    assert by_site.count('<tr id="outlet-') == 1 and f'id="outlet-{far.pk}"' in by_site
    assert "Out of service" in by_site and "as its site" in by_site  # inherited from its site

    found = manager_client.get("/c/tilleuls/rules/?q=rule-007").content.decode()
    assert found.count('<tr id="outlet-') == 1 and f'id="outlet-{own.pk}"' in found
    mine = manager_client.get("/c/tilleuls/rules/?rule=own").content.decode()
    assert mine.count('<tr id="outlet-') == 1 and f'id="outlet-{own.pk}"' in mine
    following = manager_client.get("/c/tilleuls/rules/?rule=site").content.decode()
    assert f'id="outlet-{own.pk}"' not in following

    def queries(url):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            assert manager_client.get(url).status_code == 200
        return len(captured)

    # The page's frame and the rest of the page (the limits form counts the members up to its
    # bound), the outlets' page and count, the policies of the outlets shown and of their
    # sites (each with its windows, users and groups).
    before = [queries(f"/c/tilleuls/rules/?page={n}") for n in (1, 2)]
    for i in range(60):
        charger = builders.make_charger(community, site=other, identity=f"MORE-{i:03d}")
        AccessPolicy.objects.create(
            community=community, connector=builders.make_connector(charger, 1), mode=Mode.NOBODY
        )
    after = [queries(f"/c/tilleuls/rules/?page={n}") for n in (1, 2, 3)]
    assert max(after) == max(before) <= 27


def test_limits_list_names_people_or_their_phone_number(manager_client, community):
    named = builders.make_member(community).user
    nameless = builders.make_member(
        community, user=builders.make_user(phone="+33698765432", first_name="", last_name="")
    ).user
    for person in (named, nameless):
        UsageLimit.objects.create(community=community, user=person, monthly_kwh=Decimal("100"))
    page = manager_client.get("/c/tilleuls/rules/").content.decode()
    assert f"<tr><td>{named.get_full_name()}</td>" in page
    assert "<tr><td>+33698765432</td>" in page  # the limits table, not only the select


def test_limits_are_listed_a_page_at_a_time_keeping_the_outlets_page(
    manager_client, community, settings
):
    """Limits grow with the members: 50 a page under their own page parameter, so paging them
    keeps the outlets' page and filters (and the reverse), in the same number of queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from rules.views import LIMITS_PER_PAGE

    settings.LANGUAGE_CODE = "en"

    def limits_shown(url):
        with CaptureQueriesContext(connection) as captured:
            page = manager_client.get(url).content.decode()
        table = page.split('id="limits"', 1)[1].split("</table>", 1)[0]
        return table.count("<tr><td>"), page, len(captured)

    for _i in range(3):
        person = builders.make_member(community).user
        UsageLimit.objects.create(community=community, user=person, monthly_kwh=Decimal("50"))
    few, _page, few_queries = limits_shown("/c/tilleuls/rules/")
    for _i in range(LIMITS_PER_PAGE + 7):
        person = builders.make_member(community).user
        UsageLimit.objects.create(community=community, user=person, monthly_kwh=Decimal("50"))
    shown, page, queries = limits_shown("/c/tilleuls/rules/?q=x&page=1")
    assert (few, shown) == (3, LIMITS_PER_PAGE)
    assert "?q=x&amp;page=1&amp;limits_page=2#limits" in page
    rest, _page, _queries = limits_shown("/c/tilleuls/rules/?limits_page=2")
    assert rest == 10
    assert queries <= few_queries + 2  # the limits' count and page; not one per person


def test_above_the_bound_a_limit_is_set_from_the_persons_page(
    manager_client, community, individual, monkeypatch, settings
):
    """A fleet's 2,000 members are not a select on the Rules page: the person comes from
    their page's "Limits of use" link, as for the other person filters."""
    from rules import forms

    settings.LANGUAGE_CODE = "en"
    assert '<select name="user"' in manager_client.get("/c/tilleuls/rules/").content.decode()
    monkeypatch.setattr(forms, "USER_CHOICES_MAX", 1)
    builders.make_member(community)
    page = manager_client.get("/c/tilleuls/rules/").content.decode()
    assert '<select name="user"' not in page and "Choose the person from their page" in page
    member = individual.memberships.get(community=community)
    person_page = manager_client.get(f"/c/tilleuls/users/{member.pk}/").content.decode()
    link = f"/c/tilleuls/rules/?user={individual.pk}#limits"
    assert link in person_page
    chosen = manager_client.get(link.split("#")[0]).content.decode()
    assert f'<input type="hidden" name="user" value="{individual.pk}"' in chosen
    assert f"<strong>{individual.get_full_name()}</strong>" in chosen
    manager_client.post("/c/tilleuls/rules/limits/", {"user": individual.pk, "monthly_kwh": "90"})
    assert UsageLimit.objects.get(user=individual).monthly_kwh == Decimal("90")
