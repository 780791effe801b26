"""The portal at fleet scale: outlets paginated and filtered, per-day rollup kept exact by the
database, one home for a period's figures, bounded queries, streamed CSV, session page."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone
from django_scopes import scope

from billing.exports import write_sessions_csv
from chargers import selectors, usage
from chargers.models import ChargingSession, Connector, OutletState, SessionDay
from chargers.views.fleet import OUTLETS_PER_PAGE
from communities.models import Role
from tests import builders
from tests.communities.portal_data import make_message, make_session

pytestmark = pytest.mark.community_scope


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


def _fleet(community, n, site=None, status="Available", connected=True):
    out = []
    for _ in range(n):
        ch = builders.make_charger(community, site=site, connected=connected)
        out.append(builders.make_connector(ch, 1, status=status))
    return out


# --- outlets ------------------------------------------------------------------------------------
def test_outlet_state_filter_agrees_with_the_shown_state(community, site):
    statuses = ["", "Available", "Preparing", "Charging", "Faulted", "Reserved", "Unavailable"]
    for status in [*statuses, "SomethingNew"]:
        _fleet(community, 1, site, status=status)
    _fleet(community, 1, site, status="Charging", connected=False)
    connectors = list(Connector.objects.select_related("charger"))
    for state in OutletState:
        expected = {c.pk for c in connectors if c.state == state}
        assert set(selectors.outlets(state=state).values_list("pk", flat=True)) == expected
    counts = {state: n for state, _label, n in selectors.state_counts()}
    assert counts == {s: sum(1 for c in connectors if c.state == s) for s in OutletState}


def test_outlets_page_is_paginated_searchable_and_filtered(manager_client, community, site):
    other = builders.make_site(community, name="Other site")
    _fleet(community, OUTLETS_PER_PAGE + 5, site)
    faulted = _fleet(community, 2, other, status="Faulted")
    first = manager_client.get("/c/tilleuls/outlets/").content.decode()
    assert first.count('<tr id="outlet-') == OUTLETS_PER_PAGE
    assert f"{OUTLETS_PER_PAGE + 7} outlets" in first and "Page 1 of 2" in first
    second = manager_client.get("/c/tilleuls/outlets/?page=2").content.decode()
    assert second.count('<tr id="outlet-') == 7
    by_state = manager_client.get("/c/tilleuls/outlets/?state=faulted").content.decode()
    assert by_state.count('<tr id="outlet-') == 2
    by_site = manager_client.get(f"/c/tilleuls/outlets/?site={other.pk}").content.decode()
    assert {f'id="outlet-{c.pk}"' in by_site for c in faulted} == {True}
    assert by_site.count('<tr id="outlet-') == 2
    identity = faulted[0].charger.identity
    found = manager_client.get(f"/c/tilleuls/outlets/?q={identity.lower()}").content.decode()
    assert found.count('<tr id="outlet-') == 1
    # The poll keeps the filters and the page.
    assert 'hx-get="/c/tilleuls/outlets/?state=faulted"' in by_state


def test_outlets_page_queries_do_not_grow_with_the_fleet(
    manager_client, community, site, django_assert_max_num_queries
):
    def count():
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as q:
            assert manager_client.get("/c/tilleuls/outlets/").status_code == 200
        return len(q)

    for c in _fleet(community, 3, site, status="Charging"):
        make_session(c.charger, c, active=True, meter_last_wh="2000")
    small = count()
    for c in _fleet(community, 80, site, status="Charging"):
        make_session(c.charger, c, active=True, meter_last_wh="2000")
    assert count() == small
    with django_assert_max_num_queries(12):
        manager_client.get("/c/tilleuls/outlets/?state=charging&page=2")


# --- the per-day rollup ------------------------------------------------------------------------
def _rollup(community):
    return {
        (d.day, d.site_id): (d.sessions, d.energy_wh, d.cost)
        for d in SessionDay.objects.filter(community=community).exclude(sessions=0)
    }


def test_rollup_follows_every_write_of_sessions(community, charger, site):
    day = timezone.localtime(timezone.now(), community.tz).date()
    active = make_session(charger, active=True, meter_last_wh="3000")
    assert _rollup(community) == {}  # in progress: read live, not rolled up
    done = make_session(charger, energy_wh="5000")
    assert _rollup(community) == {(day, site.pk): (1, Decimal("5000.0"), Decimal("1.26"))}
    ChargingSession.objects.filter(pk=active.pk).update(
        state=ChargingSession.State.COMPLETED, energy_wh=Decimal(2000), cost=Decimal("0.50")
    )
    assert _rollup(community) == {(day, site.pk): (2, Decimal("7000.0"), Decimal("1.76"))}
    ChargingSession.objects.filter(pk=done.pk).delete()
    assert _rollup(community) == {(day, site.pk): (1, Decimal("2000.0"), Decimal("0.50"))}


def test_rollup_moves_with_a_charger_and_a_time_zone(community, charger, site):
    start = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    make_session(charger, energy_wh="4000", started_at=start)
    other = builders.make_site(community)
    charger.site = other
    charger.save()
    (key,) = _rollup(community)
    assert key[1] == other.pk
    community.time_zone = "Pacific/Auckland"  # UTC+13 in December: 12:00 UTC is the next local day
    community.save()
    (moved,) = _rollup(community)
    assert moved[0] == start.astimezone(community.tz).date() != key[0]


def test_rollup_and_direct_sums_agree(community, charger, individual, monkeypatch):
    now = timezone.now()
    for days, wh in [(0, "1000"), (3, "2500"), (40, "7000"), (200, "12345")]:
        make_session(charger, holder=individual, energy_wh=wh, started_at=now - timedelta(days))
    make_session(charger, active=True, meter_last_wh="4000", started_at=now)
    ChargingSession.objects.create(  # no start time: in no period, and no error
        community=community, charger=charger, transaction_id="no-start"
    )
    today = timezone.localtime(now, community.tz).date()
    first, end = today - timedelta(days=365), today + timedelta(days=1)
    rolled = usage.usage(community, first, end)
    monkeypatch.setattr(usage, "rollup_available", lambda: False)
    direct = usage.usage(community, first, end)
    assert rolled == direct
    assert usage.total(community, first, end).sessions == 5
    assert usage.total(community, first, end).energy_wh == Decimal("25845.0")  # 3000 live


# --- dashboard ------------------------------------------------------------------------------
def _queries(client, url: str, **extra) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, **extra).status_code in (200, 204)
    return len(queries)


def test_dashboard_charts_and_bounded_queries(
    client, manager_client, community, charger, individual, django_assert_max_num_queries
):
    connector = builders.make_connector(charger, 1, status="Charging")
    make_session(charger, connector, holder=individual, energy_wh="8000")
    make_session(charger, connector, holder=individual, active=True, meter_last_wh="1200")
    # Session and person (3), change token (1), outlet counts and sessions in progress (2),
    # figures and charts (3), the page's frame, alerts and checklist (10), the lists (2), the
    # chart filter (2).
    with django_assert_max_num_queries(23):
        page = manager_client.get("/c/tilleuls/").content.decode()
    for chart in ("usage-day-energy", "usage-day-cost", "usage-month-energy", "usage-month-cost"):
        assert f'id="{chart}"' in page and f'data-chart="{chart}-data"' in page
    assert "<details" in page and "8" in page  # the numbers as a table
    client.force_login(individual)
    htmx = {"HTTP_HX_REQUEST": "true"}
    urls = [
        (manager_client, "/c/tilleuls/", {}),
        (manager_client, f"/c/tilleuls/?user={individual.pk}", {}),
        (manager_client, "/c/tilleuls/", htmx),  # a poll that changed: the live region
        (client, "/c/tilleuls/", {}),  # a driver
    ]
    small = [_queries(c, url, **extra) for c, url, extra in urls]
    other = builders.make_member(community, Role.INDIVIDUAL).user
    for i in range(30):  # a bigger fleet, more people, sessions of every kind
        ch = builders.make_charger(community, connected=i % 3 != 0)
        c = builders.make_connector(ch, 1, status="Charging" if i % 2 else "Faulted")
        make_session(ch, c, holder=individual, active=True, meter_last_wh="1500")
        make_session(ch, c, holder=other, energy_wh="3000")
        make_session(
            ch,
            c,
            holder=individual,
            energy_wh="2000",
            started_at=timezone.now() - timedelta(days=40),
        )
    # Exactly the same number of queries whatever the size of the data.
    assert [_queries(c, url, **extra) for c, url, extra in urls] == small
    page = manager_client.get("/c/tilleuls/").content.decode()
    assert "(31)" in page  # sessions in progress: all of them counted, ten listed


def _chart_values(page: str, chart: str) -> list:
    """The numbers a chart draws (its json_script)."""
    import json
    import re

    found = re.search(rf'<script id="{chart}-data" type="application/json">(.*?)</script>', page)
    assert found, chart
    return json.loads(found.group(1))["series"][0]["values"]


def test_dashboard_chart_filters_by_person_and_a_driver_sees_their_own(
    client, manager_client, community, charger, individual
):
    other = builders.make_member(community, Role.INDIVIDUAL).user
    make_session(charger, holder=individual, energy_wh="8000")
    make_session(charger, holder=other, energy_wh="3000")
    everyone = manager_client.get("/c/tilleuls/").content.decode()
    assert _chart_values(everyone, "usage-month-energy")[-1] == 11.0
    assert _chart_values(everyone, "usage-month-energy")[:-1] == [None] * 11  # no sessions
    mine = manager_client.get(f"/c/tilleuls/?user={individual.pk}").content.decode()
    assert _chart_values(mine, "usage-month-energy")[-1] == 8.0
    assert _chart_values(mine, "usage-month-cost")[-1] == 2.01  # 8 kWh × 0.2516, to the cent
    client.force_login(other)
    page = client.get("/c/tilleuls/").content.decode()
    assert _chart_values(page, "usage-month-energy")[-1] == 3.0
    assert 'name="user"' not in page  # no filter for drivers
    forged = client.get(f"/c/tilleuls/?user={individual.pk}").content.decode()
    assert _chart_values(forged, "usage-month-energy")[-1] == 3.0  # a driver's own, always


# --- sessions list, CSV --------------------------------------------------------------------
def test_sessions_list_pages_without_counting(
    manager_client, charger, django_assert_max_num_queries
):
    for _ in range(55):
        make_session(charger, energy_wh="1000")
    with django_assert_max_num_queries(12) as captured:
        page = manager_client.get("/c/tilleuls/sessions/").content.decode()
    assert not any("COUNT(*)" in q["sql"] and "chargingsession" in q["sql"] for q in captured)
    assert "Page 1" in page and "page=2" in page
    assert "page=3" not in manager_client.get("/c/tilleuls/sessions/?page=2").content.decode()


def test_sessions_csv_is_streamed_and_identical(manager_client, community, charger, individual):
    now = timezone.localtime(timezone.now(), community.tz)
    for _ in range(5):
        make_session(charger, holder=individual, energy_wh="1234")
    response = manager_client.get(f"/c/tilleuls/exports/sessions.csv?month={now:%Y-%m}")
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content).decode()
    expected = io.StringIO()
    with scope(community=community):
        assert (
            write_sessions_csv(expected, community=community, year=now.year, month=now.month) == 5
        )
    assert body == expected.getvalue()
    rows = list(csv.reader(io.StringIO(body)))
    assert len(rows) == 6 and rows[1][7] == "1.234"


def test_sessions_csv_pages_continue_after_the_last_row(community, charger, individual):
    """Read in pages (keyset on started_at, then id): sessions sharing one start time across a
    page boundary come once each, in order; the header comes first on its own; small pages give
    the same bytes as one page."""
    from billing.exports import iter_sessions_csv

    month = timezone.localtime(timezone.now(), community.tz).replace(day=2, hour=12, minute=0)
    same = month.replace(second=0, microsecond=0)
    made = [make_session(charger, holder=individual, started_at=same) for _ in range(5)]
    made += [make_session(charger, started_at=same + timedelta(minutes=k)) for k in (1, 2)]
    with scope(community=community):
        chunks = list(iter_sessions_csv(community=community, year=month.year, month=month.month,
                                        chunk_rows=2))  # fmt: skip
        whole = "".join(iter_sessions_csv(community=community, year=month.year, month=month.month))
    assert chunks[0].startswith("charger,") and chunks[0].count("\n") == 1
    assert [c.count("\n") for c in chunks[1:]] == [2, 2, 2, 1]  # pages of at most chunk_rows
    assert "".join(chunks) == whole
    ids = [row[2] for row in csv.reader(io.StringIO(whole))][1:]
    assert ids == [s.transaction_id for s in made]


# --- session page --------------------------------------------------------------------------
def _session_with_frames(charger, holder):
    start = timezone.now() - timedelta(hours=1)
    session = make_session(
        charger, holder=holder, active=True, meter_last_wh="4000", started_at=start
    )
    from chargers.models import MeterSample

    for k in range(5):
        MeterSample.objects.create(
            community=charger.community, session=session, timestamp=start + timedelta(minutes=10 * k),
            measurand="Energy.Active.Import.Register", value=Decimal(1000 + 700 * k), unit="Wh",
        )  # fmt: skip
    tid = session.transaction_id
    start_call = make_message(
        charger, "StartTransaction", at=start, payload={"connectorId": 1, "idTag": "CARD-SECRET"}
    )
    make_message(
        charger, "StartTransaction", at=start, direction="out", message_type=3,
        unique_id=start_call.unique_id, payload={"transactionId": int(tid)},
    )  # fmt: skip
    make_message(charger, "MeterValues", at=start + timedelta(minutes=5),
                 payload={"transactionId": int(tid), "meterValue": []})  # fmt: skip
    make_message(charger, "MeterValues", at=start + timedelta(minutes=6),
                 payload={"transactionId": 999999, "meterValue": []})  # fmt: skip
    make_message(charger, "Heartbeat", at=start + timedelta(minutes=7))
    return session


def test_session_page_shows_curve_meters_and_its_frames(manager_client, charger, individual):
    session = _session_with_frames(charger, individual)
    page = manager_client.get(f"/c/tilleuls/sessions/{session.pk}/").content.decode()
    assert 'id="session-power"' in page and 'id="session-energy"' in page
    assert "2.8" in page  # energy since the start at the last reading, kWh
    assert "CARD-SECRET" in page  # a manager reads the frames as they are
    assert page.count('<pre class="payload">') == 3  # start, its answer, its meter values
    assert "999999" not in page and "Heartbeat" not in page


def test_power_is_derived_from_the_register_when_not_sent(charger, individual, community):
    session = _session_with_frames(charger, individual)
    curve = selectors.session_curve(session)
    assert [e for _a, _p, e in curve] == [0.0, 0.7, 1.4, 2.1, 2.8]
    assert curve[0][1] is None and curve[1][1] == pytest.approx(4.2)  # 0.7 kWh in 10 min


def test_session_page_is_for_managers_and_the_holder(client, community, charger, individual):
    session = make_session(charger, holder=individual, energy_wh="1000")
    other = builders.make_member(community, Role.INDIVIDUAL).user
    client.force_login(other)
    assert client.get(f"/c/tilleuls/sessions/{session.pk}/").status_code == 404
    client.force_login(individual)
    page = client.get(f"/c/tilleuls/sessions/{session.pk}/")
    assert page.status_code == 200
    assert "OCPP frames" not in page.content.decode()  # drivers do not read the charger's log


def test_session_frames_are_redacted_without_sessions_view_all(community, charger, individual):
    from chargers.redaction import REDACTED, redact_payload

    session = _session_with_frames(charger, individual)
    frames, more = selectors.session_frames(session)
    assert not more and len(frames) == 3
    start = next(m for m in frames if m.message_type == 2 and m.action == "StartTransaction")
    assert redact_payload(start.payload, action=start.action)["idTag"] == REDACTED


def test_rollup_sum_matches_the_sessions(community, charger):
    for wh in ("1000", "2000", "3500"):
        make_session(charger, energy_wh=wh)
    total = SessionDay.objects.aggregate(e=Sum("energy_wh"))["e"]
    assert total == Decimal("6500.0")


def test_live_power_per_outlet_and_per_site(manager_client, community, site):
    from chargers.models import MeterSample

    other = builders.make_site(community, name="Other site")
    now = timezone.now()
    for target, watts in [(site, "7400"), (site, "3700"), (other, "11")]:
        (connector,) = _fleet(community, 1, target, status="Charging")
        session = make_session(connector.charger, connector, active=True, meter_last_wh="2000")
        for minutes, value, unit in [(2, "1000", "W"), (1, watts, "W" if watts != "11" else "kW")]:
            MeterSample.objects.create(
                community=community, session=session, timestamp=now - timedelta(minutes=minutes),
                measurand="Power.Active.Import", value=Decimal(value), unit=unit,
            )  # fmt: skip
    assert selectors.site_power([site, other]) == {site.pk: (11.1, 2), other.pk: (11.0, 1)}
    outlets = manager_client.get(f"/c/tilleuls/outlets/?site={site.pk}").content.decode()
    # The outlets page's "Power (kW)" column.
    assert "data-power>7.4</td>" in outlets and "data-power>3.7</td>" in outlets
    sites = manager_client.get("/c/tilleuls/sites/").content.decode()
    assert f'data-site-power="{other.pk}">11 kW' in sites and 'id="site-power"' in sites
    detail = manager_client.get(f"/c/tilleuls/sites/{site.pk}/").content.decode()
    assert "11.1 kW" in detail and "2 outlets charging" in detail


def test_dashboard_poll_answers_204_without_the_token_too(
    manager_client, community, charger, monkeypatch
):
    """Off PostgreSQL (the SQLite demo) the dashboard fingerprints what it shows: stable while
    nothing changes."""
    builders.make_connector(charger, 1, status="Available")
    monkeypatch.setattr(selectors, "live_token", lambda *a, **k: None)
    htmx = {"HTTP_HX_REQUEST": "true"}
    first = manager_client.get("/c/tilleuls/", **htmx).content.decode()
    import re

    fp = re.search(r'"fp": "([0-9a-f]+)"', first).group(1)
    assert manager_client.get("/c/tilleuls/", {"fp": fp}, **htmx).status_code == 204


def test_cost_so_far_is_rounded_in_sql_like_session_cost(community, charger, monkeypatch):
    """The sessions in progress are priced by PostgreSQL (`usage.session_cost_sql`) with the
    rounding of `billing.prices.session_cost`: half-cents up, per session, then added."""
    from billing.prices import session_cost

    cases = [
        ("1000", "1005", "0.1"),
        ("1000", "1015", "0.3333"),
        ("0", "12345.6", "0.2516"),
        ("500", "520", "0.25"),
        ("0", "0", "0.2"),
        ("100", "50", "0.3"),
        ("0", "7", None),
    ]
    expected = Decimal(0)
    for start, last, price in cases:
        c = builders.make_connector(builders.make_charger(community), 1, status="Charging")
        make_session(
            c.charger, c, active=True, meter_start_wh=start, meter_last_wh=last, price=price
        )
        energy = max(Decimal(last) - Decimal(start), Decimal(0))
        expected += session_cost(energy, price) or Decimal(0)
    in_sql = usage.live_sessions(community)
    monkeypatch.setattr(usage, "rollup_available", lambda: False)
    in_python = usage.live_sessions(community)
    assert in_sql == in_python
    ((_day, n, _energy, cost),) = in_sql
    assert n == len(cases) and cost == expected


def test_site_page_reads_only_the_outlets_with_a_rule_of_their_own(manager_client, community, site):
    """A site of 1,000 chargers: its page summarises who may charge on the site and on the
    outlets that have their own rule, without reading the others (queries and rows bounded)."""
    from rules.models import AccessPolicy, Mode

    own = _fleet(community, 2, site)
    AccessPolicy.objects.create(community=community, connector=own[0], mode=Mode.NOBODY)
    url = f"/c/tilleuls/sites/{site.pk}/"
    small = _queries(manager_client, url)
    page = manager_client.get(url).content.decode()
    assert f"{own[0]} :" in page and f"{own[1]} :" not in page
    _fleet(community, 60, site)
    assert _queries(manager_client, url) == small
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        manager_client.get(url)
    outlet_reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('SELECT "chargers_connector"."id"') and "IN (" not in q["sql"]
    ]
    assert not outlet_reads, outlet_reads  # outlets only read by id: the page's 50, the rule's


def test_charger_page_summarises_its_own_outlets_not_its_sites(
    manager_client, community, site, charger
):
    """ "Who may charge now" on a charger page reads that charger's outlets, not the 1,000
    outlets of its site."""
    from rules.models import AccessPolicy, Mode

    mine = builders.make_connector(charger, 1)
    AccessPolicy.objects.create(community=community, connector=mine, mode=Mode.NOBODY)
    url = f"/c/tilleuls/chargers/{charger.pk}/"
    small = _queries(manager_client, url)
    neighbours = _fleet(community, 40, site)
    assert _queries(manager_client, url) == small
    import re

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        page = manager_client.get(url).content.decode()
    assert "Out of service" in page and str(neighbours[0]) not in page
    site_outlets = [
        q["sql"]
        for q in queries.captured_queries
        if 'FROM "chargers_connector"' in q["sql"] and re.search(r'"site_id" = \d', q["sql"])
    ]
    assert not site_outlets, site_outlets


def test_refused_identities_page_does_not_send_the_fleet_back_to_the_database(
    manager_client, community, site
):
    """The refusals of the community's own chargers are found by a subquery, not by a list
    of its 10,000 serial numbers read and sent back in the query."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chargers.models import UnknownCharger

    fleet = _fleet(community, 5, site)
    UnknownCharger.objects.create(identity=fleet[2].charger.identity)
    with CaptureQueriesContext(connection) as queries:
        page = manager_client.get("/c/tilleuls/chargers/refused/").content.decode()
    assert fleet[2].charger.identity in page
    sqls = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in sqls if fleet[0].charger.identity in s], sqls
