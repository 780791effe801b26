"""Live regions: an unchanged poll answers 204 after one change-token query that reads no list
(the community's change counter, kept by PostgreSQL triggers); every change shown by the region
changes the token, and nothing else does."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
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


LISTS = ("chargers_connector", "chargers_chargingsession", "chargers_charger", "communities_site")


def tables_listed(sqls):
    """The lists read, the token query included (it reads the change counter and counts the
    remote commands still shown, nothing else)."""
    return {table for sql in sqls for table in LISTS if re.search(rf"\b{table}\b", sql)}


@pytest.mark.parametrize("url", ["/c/tilleuls/outlets/", "/c/tilleuls/"])
def test_unchanged_poll_is_204_before_any_list_query(manager_client, fleet, url):
    _, response, sqls = poll(manager_client, url)
    assert response.status_code == 204
    assert tables_listed(sqls) == set()
    token_queries = [s for s in sqls if "chargers_livechange" in s]
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


def test_the_token_reads_the_same_rows_whatever_the_fleet(community, fleet):
    """O(1): the token's statement reads the change counter's rows (folded into one per
    community by the beat) and the commands of the last minutes, never the fleet."""
    from chargers.events import compact_live_changes
    from chargers.models import LiveChange

    for i in range(30):
        charger = builders.make_charger(community, identity=f"CP-MORE-{i}")
        builders.make_connector(charger, 1, status="Charging")
    before = selectors.live_token(community)
    assert LiveChange.objects.count() > 30  # a row per statement that changed something
    compact_live_changes()
    assert LiveChange.objects.filter(community=community).count() == 1
    assert selectors.live_token(community) == before  # folding keeps the sum
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + selectors._LIVE_TOKEN_SQL, {
            "community": community.pk, "actions": ["RemoteStartTransaction"],
            "commands_since": timezone.now(),
        })  # fmt: skip
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert not tables_listed([plan]), plan


def test_columns_not_shown_do_not_change_the_token(community, fleet):
    """A heartbeat (`last_seen`), `updated_at` alone or a configuration: no new render."""
    charger, a = fleet["charger"], fleet["a"]
    before = selectors.live_token(community)
    Charger.objects.filter(pk=charger.pk).update(
        last_seen=timezone.now(), configuration={"HeartbeatInterval": "300"}
    )
    Connector.objects.filter(pk=a.pk).update(status="Available")  # the same status
    ChargingSession.objects.filter(pk=fleet["session"].pk).update(updated_at=timezone.now())
    assert selectors.live_token(community) == before


def test_a_remote_command_that_stops_being_shown_changes_the_token(community, fleet):
    ChargerCommand.objects.create(
        community=community, charger=fleet["charger"], connector=fleet["a"],
        action="RemoteStartTransaction",
    )  # fmt: skip
    shown = selectors.live_token(community)
    later = timezone.now() + selectors.REMOTE_COMMAND_SHOWN + timedelta(seconds=5)
    with time_machine.travel(later):
        assert selectors.live_token(community) != shown
