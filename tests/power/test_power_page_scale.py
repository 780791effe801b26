"""The Power page at fleet scale: its queries and its live poll's do not grow with the site's
chargers, the chargers are listed a page at a time, each edited on its own small page, and the
one-query change token follows what the live region shows."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chargers.models import ChargingSession
from power.models import ChargerPower, PowerSample
from power.views import CHARGERS_PER_PAGE

from .. import builders
from .conftest import make_managed_charger, make_site_power, start_session

pytestmark = pytest.mark.community_scope

HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


def url(site, tail=""):
    return f"/c/tilleuls/sites/{site.pk}/power/{tail}"


def _chargers(site, n, start=0):
    out = []
    for i in range(start, start + n):
        state = make_managed_charger(site, f"PWR-{i:04d}", limit_a=16, draw_a=12)
        if i % 2 == 0:
            start_session(state.charger, f"T{i}")
        if i % 7 == 0:
            ChargerPower.objects.filter(pk=state.pk).update(non_compliant_since=timezone.now())
        out.append(state)
    return out


def _queries(client, path, **kwargs):
    with CaptureQueriesContext(connection) as q:
        response = client.get(path, **kwargs)
    assert response.status_code in (200, 204)
    return len(q), response


def test_power_page_and_its_poll_queries_do_not_grow_with_the_chargers(manager_client, site):
    make_site_power(site)
    builders.make_meter(site, name="Main board")
    PowerSample.objects.create(community=site.community, site=site, at=timezone.now())
    _chargers(site, 3)

    def measure():
        page, response = _queries(manager_client, url(site))
        fp = response.context["fingerprint"]
        unchanged, answer = _queries(manager_client, url(site), data={"fp": fp}, headers=HTMX)
        assert answer.status_code == 204
        changed, answer = _queries(manager_client, url(site), data={"fp": "old"}, headers=HTMX)
        assert answer.status_code == 200
        return page, unchanged, changed

    small = measure()
    _chargers(site, CHARGERS_PER_PAGE + 20, start=3)
    assert measure() == small
    # An unchanged poll reads the token only: the session, the community, the site, the token.
    assert small[1] <= 6


def test_chargers_are_listed_a_page_at_a_time_and_the_poll_keeps_the_page(manager_client, site):
    make_site_power(site)
    _chargers(site, CHARGERS_PER_PAGE + 3)
    first = manager_client.get(url(site)).content.decode()
    assert first.count("<tr data-charger=") == CHARGERS_PER_PAGE
    assert f"{CHARGERS_PER_PAGE + 3} chargers on this site" in first and "Page 1 of 2" in first
    second = manager_client.get(url(site), {"page": 2}).content.decode()
    assert second.count("<tr data-charger=") == 3 and 'data-charger="PWR-0052"' in second
    assert f'hx-get="{url(site)}?page=2"' in second
    # The configuration has no per-charger form any more: one link per line to its own page.
    assert "data-charger-form" not in first
    assert first.count(url(site, "chargers/")) == CHARGERS_PER_PAGE


def test_a_charger_is_configured_on_its_own_page_and_back_to_its_page(manager_client, site):
    make_site_power(site)
    state = _chargers(site, CHARGERS_PER_PAGE + 1)[-1]
    edit = url(site, f"chargers/{state.charger_id}/")
    form = manager_client.get(edit, {"page": 2}).content.decode()
    assert f'data-charger-form="{state.charger.identity}"' in form
    assert 'name="page" value="2"' in form
    prefix = f"c{state.charger_id}"
    data = {f"{prefix}-wiring": "l3", f"{prefix}-min_a": "6", f"{prefix}-max_a": "20"}
    bad = manager_client.post(edit, {**data, f"{prefix}-max_a": "4", "page": "2"})
    assert bad.status_code == 400 and 'name="page" value="2"' in bad.content.decode()
    done = manager_client.post(edit, {**data, "page": "2"})
    assert done.status_code == 302 and done["Location"] == url(site) + "?page=2"
    state.refresh_from_db()
    assert (state.wiring, state.max_a) == ("l3", 20)
    line = manager_client.get(url(site), {"page": 2}).content.decode()
    assert (
        "Single-phase on L3, 6.0–20.0 A"
        in line.split(f'data-charger-settings="{state.charger.identity}"')[1]
    )


def test_a_viewer_sees_no_edit_link(client, community, site):
    make_site_power(site)
    _chargers(site, 1)
    company = builders.make_company()
    builders.make_grant(community, company, "limited")
    client.force_login(builders.make_installer(company))
    assert url(site, "chargers/") in client.get(url(site)).content.decode()


def test_the_change_token_follows_what_the_region_shows(manager_client, site):
    make_site_power(site)
    meter = builders.make_meter(site, name="Main board")
    state = _chargers(site, 2)[1]

    def token():
        return manager_client.get(url(site)).context["fingerprint"]

    seen = [token()]

    def changes():
        now = token()
        assert now not in seen
        seen.append(now)

    assert token() == seen[0]  # stable while nothing changes
    ChargerPower.objects.filter(pk=state.pk).update(limit_a=8)
    changes()
    ChargerPower.objects.filter(pk=state.pk).update(draw_a=7.5)
    changes()
    ChargerPower.objects.filter(pk=state.pk).update(rejected_at=timezone.now())
    changes()
    ChargerPower.objects.filter(pk=state.pk).update(
        outlet_obedience={"1": {"since": timezone.now().isoformat(), "draw": 20.0}}
    )
    changes()
    start_session(state.charger, "NEW")
    changes()
    ChargingSession.objects.filter(transaction_id="NEW").update(
        state=ChargingSession.State.COMPLETED
    )
    assert token() == seen[-2]  # the page shows again what it showed before the session
    PowerSample.objects.create(community=site.community, site=site, at=timezone.now())
    changes()
    state.charger.name = "Renamed"
    state.charger.save()
    changes()
    # The meter: a reading while it speaks changes nothing; falling silent does.
    meter.last_reading_at = timezone.now()
    meter.save(update_fields=["last_reading_at"])
    changes()
    meter.last_reading_at = timezone.now() + timedelta(seconds=1)
    meter.save(update_fields=["last_reading_at"])
    assert token() == seen[-1]
    meter.last_reading_at = timezone.now() - timedelta(days=1)
    meter.save(update_fields=["last_reading_at"])
    assert token() == seen[-2]  # silent again, as before its first reading
    # Another site's chargers are not this page's.
    other = builders.make_site(site.community, name="Elsewhere")
    make_managed_charger(other, "PWR-ELSEWHERE", limit_a=3)
    assert token() == seen[-2]


def test_without_a_cheap_token_the_lines_are_fingerprinted(manager_client, site, monkeypatch):
    """Off PostgreSQL (the SQLite demo) `live_token` is None: the page fingerprints its lines."""
    from power import selectors

    monkeypatch.setattr(selectors, "live_token", lambda site, now=None: None)
    make_site_power(site)
    state = _chargers(site, 2)[0]
    fp = manager_client.get(url(site)).context["fingerprint"]
    assert manager_client.get(url(site), {"fp": fp}, headers=HTMX).status_code == 204
    ChargerPower.objects.filter(pk=state.pk).update(draw_a=3.5)
    changed = manager_client.get(url(site), {"fp": fp}, headers=HTMX)
    assert changed.status_code == 200 and 'data-charger="PWR-0000"' in changed.content.decode()


def test_the_chargers_are_searched_by_serial_number_or_name(manager_client, site):
    make_site_power(site)
    states = _chargers(site, CHARGERS_PER_PAGE + 3)
    named = states[40].charger
    named.name = "Quai Nord"
    named.save()
    found = manager_client.get(url(site), {"q": " 0051 "}).content.decode()
    assert found.count("<tr data-charger=") == 1 and 'data-charger="PWR-0051"' in found
    assert f'hx-get="{url(site)}?q=+0051+"' in found  # the poll keeps the search
    by_name = manager_client.get(url(site), {"q": "quai"}).content.decode()
    assert by_name.count("<tr data-charger=") == 1 and "Quai Nord" in by_name
    none = manager_client.get(url(site), {"q": "nothing-like-it"}).content.decode()
    assert "No charger matches this search." in none
