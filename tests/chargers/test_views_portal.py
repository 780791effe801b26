"""Portal views on outlets, chargers, sessions and cards."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.hashers import check_password
from django.utils import timezone

from chargers.models import ChargeCard, Charger, UnknownCharger
from communities.models import AuditEvent
from tests import builders
from tests.communities.portal_data import local, make_message, make_session

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


HTMX = {"HTTP_HX_REQUEST": "true"}


def fingerprint(response):
    """The value the polled partial sends back (its hx-vals)."""
    return re.search(r'"fp": "([0-9a-f.-]+)"', response.content.decode()).group(1)


def test_outlets_page_lists_states(manager_client, community, charger):
    charger.connected = True
    charger.save()
    builders.make_connector(charger, 1, status="Charging")
    builders.make_connector(charger, 2, status="Available")
    builders.make_connector(
        builders.make_charger(community), 1, status="Available"
    )  # not connected
    content = manager_client.get("/c/tilleuls/outlets/").content.decode()
    assert 'data-state="charging"' in content and 'data-state="available"' in content
    assert 'data-state="not_connected"' in content
    assert 'hx-trigger="every 5s"' in content and 'id="outlet-table"' in content


def test_outlet_partial_204_until_a_status_changes(manager_client, charger):
    charger.connected = True
    charger.save()
    connector = builders.make_connector(charger, 1, status="Available")
    first = manager_client.get("/c/tilleuls/outlets/", **HTMX)
    assert first.status_code == 200 and b"<html" not in first.content  # the partial only
    fp = fingerprint(first)
    assert manager_client.get("/c/tilleuls/outlets/", {"fp": fp}, **HTMX).status_code == 204

    connector.status = "Charging"
    connector.status_at = timezone.now()
    connector.save()
    changed = manager_client.get("/c/tilleuls/outlets/", {"fp": fp}, **HTMX)
    assert changed.status_code == 200
    assert 'data-state="charging"' in changed.content.decode()
    assert fingerprint(changed) != fp


def test_outlet_partial_changes_with_live_energy_and_disconnection(manager_client, charger):
    charger.connected = True
    charger.save()
    connector = builders.make_connector(charger, 1, status="Charging")
    session = make_session(
        charger, connector, active=True, meter_start_wh="0", meter_last_wh="1000"
    )
    fp = fingerprint(manager_client.get("/c/tilleuls/outlets/", **HTMX))
    session.meter_last_wh = Decimal("2500")
    session.save()
    response = manager_client.get("/c/tilleuls/outlets/", {"fp": fp}, **HTMX)
    assert response.status_code == 200 and "2.500" in response.content.decode()
    fp = fingerprint(response)
    Charger.objects.filter(pk=charger.pk).update(connected=False)
    response = manager_client.get("/c/tilleuls/outlets/", {"fp": fp}, **HTMX)
    assert 'data-state="not_connected"' in response.content.decode()


def test_outlet_list_query_count(manager_client, community, django_assert_max_num_queries):
    for _ in range(8):
        ch = builders.make_charger(community, connected=True)
        c = builders.make_connector(ch, 1, status="Charging")
        make_session(ch, c, active=True, meter_last_wh="2000")
    # Middleware, change token, count, page, its sessions and commands, the site filter.
    with django_assert_max_num_queries(12):
        assert manager_client.get("/c/tilleuls/outlets/").status_code == 200


def test_dashboard_polls_and_answers_204(manager_client, charger):
    builders.make_connector(charger, 1, status="Available")
    first = manager_client.get("/c/tilleuls/", **HTMX)
    assert first.status_code == 200 and b'id="dashboard-live"' in first.content
    assert manager_client.get("/c/tilleuls/", {"fp": fingerprint(first)}, **HTMX).status_code == 204


def test_dashboard_month_totals(manager_client, community, charger, individual):
    now = timezone.localtime(timezone.now(), community.tz)
    make_session(
        charger,
        holder=individual,
        energy_wh="10000",
        started_at=now.replace(day=1, hour=0, minute=30),
    )
    make_session(
        charger,
        holder=individual,
        energy_wh="99000",
        started_at=(now.replace(day=1) - timedelta(days=1)),
    )  # last month
    make_session(charger, holder=individual, active=True, meter_start_wh="0", meter_last_wh="2000")
    totals = manager_client.get("/c/tilleuls/").context["totals"]
    assert totals["energy_wh"] == Decimal("12000")
    assert totals["cost"] == Decimal("2.52") + Decimal("0.50")


def test_individual_dashboard_shows_only_their_sessions(client, individual, manager, charger):
    make_session(charger, holder=individual, energy_wh="1111")
    make_session(charger, holder=manager, energy_wh="2222")
    client.force_login(individual)
    response = client.get("/c/tilleuls/")
    assert [s.holder for s in response.context["latest_sessions"]] == [individual]
    mine = client.get("/c/tilleuls/my-sessions/")
    assert [s.holder for s in mine.context["page"].object_list] == [individual]


def test_register_charger(manager_client, site, community):
    UnknownCharger.objects.create(identity="SN-123", attempts=4)
    data = {
        "identity": "SN-123",
        "vendor": "zaptec",
        "model": "Go",
        "name": "",
        "password": "s3cretpass",
    }
    response = manager_client.post(f"/c/tilleuls/sites/{site.pk}/chargers/add/", data)
    charger = Charger.objects.get(identity="SN-123")
    assert response["Location"] == f"/c/tilleuls/chargers/{charger.pk}/commissioning/"
    assert charger.password_hash != "s3cretpass" and check_password(
        "s3cretpass", charger.password_hash
    )
    assert charger.community == community and charger.site == site
    assert not UnknownCharger.objects.filter(identity="SN-123").exists()
    assert AuditEvent.objects.filter(action="charger.register").exists()
    page = manager_client.get(response["Location"]).content.decode()
    assert "ws://localhost:9000/ocpp/SN-123" in page


def test_register_charger_identity_is_global(manager_client, site, outsider):
    other = builders.community_of(outsider)
    builders.make_charger(other, identity="TAKEN-1")
    data = {"identity": "TAKEN-1", "vendor": "other", "model": "", "name": "", "password": ""}
    response = manager_client.post(f"/c/tilleuls/sites/{site.pk}/chargers/add/", data)
    assert "already registered" in str(response.context["form"].errors["identity"])


def test_register_charger_rejects_url_unsafe_identity(manager_client, site):
    data = {"identity": "a/b c", "vendor": "other", "password": ""}
    response = manager_client.post(f"/c/tilleuls/sites/{site.pk}/chargers/add/", data)
    assert "identity" in response.context["form"].errors


def test_edit_charger_keeps_or_clears_password(manager_client, community, site):
    charger = builders.make_charger(community, site=site, password="original-pw")
    other_site = builders.make_site(community)
    base = {"site": other_site.pk, "vendor": "volttime", "model": "X", "name": "Mine"}
    manager_client.post(f"/c/tilleuls/chargers/{charger.pk}/edit/", {**base, "password": ""})
    charger.refresh_from_db()
    assert charger.site == other_site and check_password("original-pw", charger.password_hash)
    manager_client.post(
        f"/c/tilleuls/chargers/{charger.pk}/edit/", {**base, "clear_password": "on"}
    )
    charger.refresh_from_db()
    assert charger.password_hash == ""


def test_charger_detail_log_is_paginated_newest_first(manager_client, charger):
    start = timezone.now()
    for i in range(60):
        make_message(charger, f"Action{i:02d}", at=start + timedelta(seconds=i))
    response = manager_client.get(f"/c/tilleuls/chargers/{charger.pk}/")
    actions = [m.action for m in response.context["log"]]
    assert actions[0] == "Action59" and len(actions) == 50
    # Pages by keyset (chargers.ocpp_log.page): the next one starts after the last frame shown.
    older = response.context["log"].older
    page2 = manager_client.get(f"/c/tilleuls/chargers/{charger.pk}/", {"before": older})
    assert [m.action for m in page2.context["log"]][-1] == "Action00"


def test_refused_chargers_of_the_community_listed(manager_client, charger):
    UnknownCharger.objects.create(
        identity=charger.identity, reason=UnknownCharger.Reason.BAD_PASSWORD, attempts=7
    )
    content = manager_client.get("/c/tilleuls/chargers/refused/").content.decode()
    assert charger.identity in content and ">7<" in content


def test_refused_identities_of_others_only_by_exact_lookup(manager_client):
    UnknownCharger.objects.create(identity="WHO-ARE-YOU", attempts=3)
    listing = manager_client.get("/c/tilleuls/chargers/refused/").content.decode()
    assert "WHO-ARE-YOU" not in listing
    partial = manager_client.get("/c/tilleuls/chargers/refused/?identity=WHO").content.decode()
    assert "WHO-ARE-YOU" not in partial
    exact = manager_client.get("/c/tilleuls/chargers/refused/?identity=WHO-ARE-YOU")
    assert "WHO-ARE-YOU" in exact.content.decode() and ">3<" in exact.content.decode()


def test_session_list_filters(manager_client, community, charger, individual, manager):
    make_session(
        charger,
        holder=individual,
        energy_wh="1000",
        started_at=local(community, 2025, 3, 31, 23, 30),
    )
    make_session(
        charger, holder=manager, energy_wh="2000", started_at=local(community, 2025, 4, 1, 0, 30)
    )
    other_site_charger = builders.make_charger(community)
    make_session(
        other_site_charger,
        holder=individual,
        energy_wh="3000",
        started_at=local(community, 2025, 4, 2),
    )

    def holders(**params):
        return sorted(
            str(s.energy_wh)
            for s in manager_client.get("/c/tilleuls/sessions/", params).context["page"]
        )

    assert holders() == ["1000.0", "2000.0", "3000.0"]
    assert holders(month="2025-04") == ["2000.0", "3000.0"]
    assert holders(month="2025-04", user=individual.pk) == ["3000.0"]
    assert holders(site=charger.site_id) == ["1000.0", "2000.0"]
    response = manager_client.get("/c/tilleuls/sessions/", {"month": "2025-13"})
    assert response.status_code == 200 and "month" in response.context["form"].errors


def test_session_list_live_energy_and_query_count(
    manager_client, community, charger, individual, django_assert_max_num_queries
):
    card = builders.make_card(community, holder=individual)
    for _ in range(30):
        make_session(
            charger,
            builders.make_connector(charger, connector_id=_ + 1),
            individual,
            card,
            energy_wh="5000",
        )
    make_session(
        charger, holder=individual, active=True, meter_start_wh="1000", meter_last_wh="4210"
    )
    with django_assert_max_num_queries(12):
        content = manager_client.get("/c/tilleuls/sessions/").content.decode()
    assert "3.210" in content  # live energy of the session in progress


def test_add_and_deactivate_card(manager_client, community, individual):
    m = individual.memberships.get()
    response = manager_client.post(
        f"/c/tilleuls/users/{m.pk}/cards/add/", {"uid": "04:a2:3b-11", "name": "Badge"}
    )
    assert response["Location"] == f"/c/tilleuls/users/{m.pk}/"
    card = ChargeCard.objects.get(community=community)
    assert card.uid == "04A23B11" and card.holder == individual and card.active
    again = manager_client.post(
        f"/c/tilleuls/users/{m.pk}/cards/add/", {"uid": "04A23B11"}, follow=True
    )
    assert "already registered" in again.content.decode()
    manager_client.post(f"/c/tilleuls/cards/{card.pk}/deactivate/")
    card.refresh_from_db()
    assert not card.active
    assert AuditEvent.objects.filter(action__in=["card.add", "card.deactivate"]).count() == 2
