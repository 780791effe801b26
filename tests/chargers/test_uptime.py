"""Connection intervals and uptime: the worker records each connection as an interval named by
its start, in whatever order its two ends arrive; ends the gateway never reported are estimated
(the next connection, the offline sweep); the charger page shows the 30-day uptime and the
latest connections."""

from datetime import UTC, datetime, timedelta

import pytest

from chargers import events as ev
from chargers.events.maintenance import sweep_offline
from chargers.models import Charger, ConnectionInterval
from chargers.uptime import charger_uptime
from tests import builders

pytestmark = pytest.mark.community_scope

T0 = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


def t(minutes=0.0):
    return T0 + timedelta(minutes=minutes)


def connected(charger, minutes):
    return {
        "identity": charger.identity,
        "kind": "connected",
        "payload": {"ocpp_version": "1.6", "remote_address": "", "gateway": "gw"},
        "received_at": t(minutes).isoformat(),
    }


def disconnected(charger, minutes, opened=None):
    payload = {"code": 1000}
    if opened is not None:
        payload["connected_at"] = t(opened).isoformat()
    return {
        "identity": charger.identity,
        "kind": "disconnected",
        "payload": payload,
        "received_at": t(minutes).isoformat(),
    }


def intervals(charger):
    return list(
        ConnectionInterval.objects.filter(charger=charger)
        .order_by("started_at")
        .values_list("started_at", "ended_at", "ended_by")
    )


def test_a_connection_is_one_interval(charger):
    ev.process_events([connected(charger, 0)])
    assert intervals(charger) == [(t(0), None, "")]
    ev.process_events([disconnected(charger, 90, opened=0)])
    assert intervals(charger) == [(t(0), t(90), "disconnected")]


def test_ends_applied_in_any_order_and_twice(charger):
    ev.process_events([disconnected(charger, 90, opened=0)])
    ev.process_events([connected(charger, 0), connected(charger, 0)])
    ev.process_events([disconnected(charger, 90, opened=0)])
    assert intervals(charger) == [(t(0), t(90), "disconnected")]


def test_a_newer_connection_closes_an_unfinished_one_until_the_real_end_arrives(charger):
    # The gateway died without saying so; the charger reconnected elsewhere at minute 60.
    ev.process_events([connected(charger, 0), connected(charger, 60)])
    assert intervals(charger) == [(t(0), t(60), "replaced"), (t(60), None, "")]
    # Its real end was recorded after all (a batch from the old gateway, late).
    ev.process_events([disconnected(charger, 45, opened=0)])
    assert intervals(charger)[0] == (t(0), t(45), "disconnected")
    # A start applied after the newer one is closed at once too.
    ev.process_events([connected(charger, 30)])
    assert intervals(charger)[1] == (t(30), t(60), "replaced")


def test_an_end_from_an_older_gateway_closes_the_open_interval(charger):
    ev.process_events([connected(charger, 0)])
    ev.process_events([disconnected(charger, 20)])  # no connected_at
    assert intervals(charger) == [(t(0), t(20), "disconnected")]


def test_the_offline_sweep_ends_the_interval_at_the_last_message(charger):
    ev.process_events([connected(charger, 0)])
    Charger.objects.filter(pk=charger.pk).update(last_seen=t(25), heartbeat_interval=60)
    assert sweep_offline(now=t(120)) == 1
    assert intervals(charger) == [(t(0), t(25), "silent")]
    # A charger still connected keeps its interval open.
    other = builders.make_charger(charger.community)
    ev.process_events([connected(other, 100)])
    Charger.objects.filter(pk=other.pk).update(last_seen=t(119), heartbeat_interval=60)
    sweep_offline(now=t(120))
    assert intervals(other) == [(t(100), None, "")]


def test_uptime_over_the_period(charger):
    now = t(60 * 24 * 40)  # 40 days after T0
    day = 60 * 24
    # Connected from day 0 to day 25, then again from day 26 until now.
    ConnectionInterval.objects.create(
        community=charger.community, charger=charger, started_at=t(0), ended_at=t(25 * day)
    )
    ConnectionInterval.objects.create(
        community=charger.community, charger=charger, started_at=t(26 * day)
    )
    Charger.objects.filter(pk=charger.pk).update(connected=True)
    charger.refresh_from_db()
    result = charger_uptime(charger, now=now)
    assert result.since == now - timedelta(days=30)
    assert result.percent == round(100 * 29 / 30, 1)  # one day down in the last 30
    assert result.disconnections == 1
    # The bar: day 10 (the period's start) → 25, then 26 → 40.
    assert [(s.left, s.width) for s in result.segments] == [(0.0, 50.0), (53.333, 46.667)]
    assert [i.started_at for i in result.latest] == [t(26 * day), t(0)]


def test_a_young_charger_is_measured_since_its_first_connection(charger):
    ConnectionInterval.objects.create(
        community=charger.community, charger=charger, started_at=t(0), ended_at=t(30)
    )
    result = charger_uptime(charger, now=t(60))
    assert result.since == t(0) and result.percent == 50.0 and result.disconnections == 1


def test_an_open_interval_of_a_disconnected_charger_ends_at_its_last_message(charger):
    ConnectionInterval.objects.create(community=charger.community, charger=charger, started_at=t(0))
    Charger.objects.filter(pk=charger.pk).update(connected=False, last_seen=t(15))
    charger.refresh_from_db()
    assert charger_uptime(charger, now=t(60)).percent == 25.0


def test_no_history_yet(charger):
    assert charger_uptime(charger).percent is None


def test_charger_page_shows_the_uptime(charger, manager_client, settings):
    settings.LANGUAGE_CODE = "en"
    page = manager_client.get(f"/c/tilleuls/chargers/{charger.pk}/").content.decode()
    assert "No connection recorded yet" in page
    ConnectionInterval.objects.create(
        community=charger.community,
        charger=charger,
        started_at=datetime.now(UTC) - timedelta(hours=2),
        ended_at=datetime.now(UTC) - timedelta(hours=1),
        ended_by="disconnected",
    )
    page = manager_client.get(f"/c/tilleuls/chargers/{charger.pk}/").content.decode()
    assert 'id="uptime"' in page and "50.0 %" in page and "1 interruption" in page
    assert "Disconnected" in page
