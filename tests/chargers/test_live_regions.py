"""Live regions: an unchanged poll answers 204 after one change-token query, before any list
query; every change shown by the region changes the token."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chargers import selectors
from chargers.models import Charger, ChargerCommand, ChargingSession, Connector
from tests import builders
from tests.communities.portal_data import make_session

pytestmark = pytest.mark.community_scope

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def fleet(community, site, individual):
    charger = builders.make_charger(community, site=site, identity="CP-LIVE-1", connected=True)
    a = builders.make_connector(charger, 1, status="Available")
    b = builders.make_connector(charger, 2, status="Charging")
    session = make_session(charger, b, holder=individual, active=True)
    return {"charger": charger, "a": a, "b": b, "session": session}


def poll(client, url):
    """The fingerprint the page embeds, then the queries of an unchanged poll."""
    page = client.get(url)
    fp = page.context["fingerprint"]
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, {"fp": fp}, **HTMX)
    return fp, response, [q["sql"] for q in queries.captured_queries]


def tables_listed(sqls):
    """Tables read outside the token query (whose subqueries read them all)."""
    listed = set()
    for sql in sqls:
        if "hash_record" in sql:
            continue
        for table in ("chargers_connector", "chargers_chargingsession", "chargers_chargercommand"):
            if f'FROM "{table}"' in sql:
                listed.add(table)
    return listed


@pytest.mark.parametrize("url", ["/c/tilleuls/outlets/", "/c/tilleuls/"])
def test_unchanged_poll_is_204_before_any_list_query(manager_client, fleet, url):
    _, response, sqls = poll(manager_client, url)
    assert response.status_code == 204
    assert tables_listed(sqls) == set()
    token_queries = [s for s in sqls if "hash_record" in s]
    assert len(token_queries) == 1
    # session + user (auth), membership (middleware), the token: nothing else.
    assert len(sqls) <= 4, sqls


def test_unchanged_configuration_poll_lists_no_command(manager_client, fleet):
    url = f"/c/tilleuls/chargers/{fleet['charger'].pk}/configuration/"
    _, response, sqls = poll(manager_client, url)
    assert response.status_code == 204
    assert not [s for s in sqls if 'FROM "chargers_chargercommand"' in s and "COUNT" not in s]
    assert len(sqls) <= 5, sqls


def changes(community, fleet):
    """Each write the outlet table shows, as the worker or the portal makes it."""
    charger, a, session = fleet["charger"], fleet["a"], fleet["session"]
    now = timezone.now()
    yield "status", lambda: Connector.objects.filter(pk=a.pk).update(status="Preparing")
    yield "status time", lambda: Connector.objects.filter(pk=a.pk).update(status_at=now)
    yield "connection", lambda: Charger.objects.filter(pk=charger.pk).update(connected=False)
    yield (
        "meter",
        lambda: ChargingSession.objects.filter(pk=session.pk).update(meter_last_wh=Decimal("4321")),
    )
    yield (
        "session ends",
        lambda: ChargingSession.objects.filter(pk=session.pk).update(
            state=ChargingSession.State.COMPLETED
        ),
    )
    yield "new outlet", lambda: builders.make_connector(charger, 3, status="Available")
    yield (
        "remote start",
        lambda: ChargerCommand.objects.create(
            community=community, charger=charger, connector=a, action="RemoteStartTransaction"
        ),
    )
    yield (
        "command answered",
        lambda: ChargerCommand.objects.filter(connector=a).update(
            status=ChargerCommand.Status.ACCEPTED
        ),
    )
    yield "renamed", lambda: Charger.objects.filter(pk=charger.pk).update(name="Borne B")


def test_every_shown_change_changes_the_token(community, fleet):
    seen = {selectors.live_token(community)}
    for what, change in changes(community, fleet):
        change()
        token = selectors.live_token(community)
        assert token not in seen, f"{what} did not change the token"
        seen.add(token)
    assert selectors.live_token(community) in seen  # stable while nothing changes


def test_another_communitys_changes_do_not_change_the_token(community, fleet, outsider):
    before = selectors.live_token(community)
    other = builders.community_of(outsider)
    builders.make_connector(builders.make_charger(other, identity="CP-OTHER"), 1)
    assert selectors.live_token(community) == before


def test_dashboard_token_follows_the_months_sessions(community, fleet):
    start = timezone.now().replace(day=1, hour=0, minute=0)
    before = selectors.live_token(community, sessions_since=start)
    ChargingSession.objects.filter(pk=fleet["session"].pk).update(
        updated_at=timezone.now(), energy_wh=Decimal("1")
    )
    assert selectors.live_token(community, sessions_since=start) != before


def test_changed_poll_renders_the_partial(manager_client, fleet):
    fp, _, _ = poll(manager_client, "/c/tilleuls/outlets/")
    Connector.objects.filter(pk=fleet["a"].pk).update(status="Faulted")
    response = manager_client.get("/c/tilleuls/outlets/", {"fp": fp}, **HTMX)
    assert response.status_code == 200
    assert response.context["fingerprint"] != fp
