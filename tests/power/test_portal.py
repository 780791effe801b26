"""The Power page: who sees and changes what, validation in the forms and the services, the
audit trail, the live region, alerts on the dashboard and the charger page, and the migration of
the old grid limit."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django_scopes import scope

from communities.models import AuditEvent
from power.models import ChargerPower, Circuit, SitePower
from power.services import PowerError, save_circuit

from .. import builders
from .conftest import make_managed_charger, make_site_power

pytestmark = pytest.mark.community_scope


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


def url(site, tail=""):
    return f"/c/tilleuls/sites/{site.pk}/power/{tail}"


def settings_post(**overrides):
    data = {
        "site-phases": "3",
        "site-voltage_v": "230",
        "site-limit_a": "32",
        "site-margin_a": "2",
        "site-load_balancing": "on",
        "site-sharing": "equal",
        "windows-TOTAL_FORMS": "3",
        "windows-INITIAL_FORMS": "0",
        "windows-MIN_NUM_FORMS": "3",
        "windows-MAX_NUM_FORMS": "3",
    }
    data.update(overrides)
    return data


def test_manager_configures_the_grid_connection_and_modes(manager_client, site):
    response = manager_client.post(
        url(site, "settings/"),
        settings_post(
            **{
                "site-peak_shaving": "on",
                "site-peak_limit_kw": "15",
                "windows-0-days": ["0", "1", "2", "3", "4"],
                "windows-0-start": "17:00",
                "windows-0-end": "20:00",
            }
        ),
    )
    assert response.status_code == 302
    power = SitePower.objects.get(site=site)
    assert power.limit_a == 32 and power.margin_a == 2 and power.managed
    assert power.limit_kw == Decimal("22.1")
    window = power.windows.get()
    assert window.days == [0, 1, 2, 3, 4] and f"{window.start:%H:%M}" == "17:00"
    event = AuditEvent.objects.get(action="power.site")
    assert event.data["modes"] == ["load_balancing", "peak_shaving"]
    page = manager_client.get(url(site)).content.decode()
    assert "22.1 kW" in page and "Peak shaving at 15.0 kW" in page


@pytest.mark.parametrize(
    "overrides,error",
    [
        ({"site-margin_a": "32"}, "smaller than the limit"),
        ({"site-solar_minimum": "on"}, "option of solar balancing"),
        ({"site-peak_shaving": "on"}, "needs a cap"),
        ({"windows-0-days": ["1"], "windows-0-start": "17:00"}, "days, a start and an end"),
        ({"site-limit_a": "-3"}, "greater than or equal to 1"),
    ],
)
def test_invalid_settings_are_refused_with_a_reason(manager_client, site, overrides, error):
    response = manager_client.post(url(site, "settings/"), settings_post(**overrides))
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not SitePower.objects.filter(site=site).exists()


def test_peak_shaving_without_a_window_is_refused_by_the_service(manager_client, site):
    response = manager_client.post(
        url(site, "settings/"),
        settings_post(**{"site-peak_shaving": "on", "site-peak_limit_kw": "10"}),
    )
    assert response.status_code == 400
    assert "at least one time window" in response.content.decode()


def test_circuits_nest_and_cannot_loop(manager_client, manager, site):
    manager_client.post(url(site, "circuits/add/"), {"name": "Garage", "limit_a": "40"})
    garage = Circuit.objects.get(name="Garage")
    manager_client.post(
        url(site, "circuits/add/"), {"name": "Row B", "limit_a": "20", "parent": garage.pk}
    )
    row = Circuit.objects.get(name="Row B")
    assert row.parent == garage
    with pytest.raises(PowerError):
        save_circuit(
            site=site, actor=manager, name="Garage", limit_a=40, parent=row, circuit=garage
        )
    response = manager_client.post(url(site, f"circuits/{garage.pk}/delete/"))
    assert Circuit.objects.filter(pk=garage.pk).exists()  # it feeds Row B
    assert response.status_code == 302
    manager_client.post(url(site, f"circuits/{row.pk}/delete/"))
    assert not Circuit.objects.filter(pk=row.pk).exists()


def test_charger_wiring_and_currents(manager_client, site, charger):
    circuit = Circuit.objects.create(community=site.community, site=site, name="F1", limit_a=16)
    prefix = f"c{charger.pk}"
    bad = manager_client.post(
        url(site, f"chargers/{charger.pk}/"),
        {f"{prefix}-wiring": "l2", f"{prefix}-min_a": "10", f"{prefix}-max_a": "8"},
    )
    assert bad.status_code == 400 and "at least the minimum" in bad.content.decode()
    too_low = manager_client.post(
        url(site, f"chargers/{charger.pk}/"),
        {f"{prefix}-wiring": "l2", f"{prefix}-min_a": "4", f"{prefix}-max_a": "16"},
    )
    assert too_low.status_code == 400
    manager_client.post(
        url(site, f"chargers/{charger.pk}/"),
        {
            f"{prefix}-wiring": "l2",
            f"{prefix}-min_a": "6",
            f"{prefix}-max_a": "16",
            f"{prefix}-circuit": circuit.pk,
        },
    )
    power = ChargerPower.objects.get(charger=charger)
    assert (power.wiring, power.max_a, power.circuit) == ("l2", 16, circuit)
    assert AuditEvent.objects.filter(action="power.charger", target=charger.identity).exists()


def test_a_limited_installer_configures_power(client, community, site):
    company = builders.make_company()
    builders.make_grant(community, company, "limited")
    client.force_login(builders.make_installer(company))
    assert client.get(url(site)).status_code == 200
    response = client.post(url(site, "settings/"), settings_post())
    assert response.status_code == 302 and SitePower.objects.filter(site=site).exists()


def test_a_driver_sees_no_power_page(client, individual, site):
    client.force_login(individual)
    assert client.get(url(site)).status_code == 403


def test_live_region_answers_204_until_something_changes(manager_client, site):
    make_site_power(site)
    first = manager_client.get(url(site))
    fp = first.context["fingerprint"]
    headers = {"HX-Request": "true"}
    assert manager_client.get(url(site), {"fp": fp}, headers=headers).status_code == 204
    make_managed_charger(site, "PWR-LIVE")
    changed = manager_client.get(url(site), {"fp": fp}, headers=headers)
    assert changed.status_code == 200 and "PWR-LIVE" in changed.content.decode()


def test_non_compliance_shows_on_the_power_page_the_dashboard_and_the_charger(manager_client, site):
    make_site_power(site)
    state = make_managed_charger(site, "PWR-BAD")
    ChargerPower.objects.filter(pk=state.pk).update(
        limit_a=10, draw_a=16, non_compliant_since=timezone.now() - timedelta(minutes=2)
    )
    page = manager_client.get(url(site)).content.decode()
    assert "does not obey its limit" in page and "16.0 A for 10.0 A allowed" in page
    dashboard = manager_client.get("/c/tilleuls/").content.decode()
    assert "PWR-BAD does not obey its power limit" in dashboard
    detail = manager_client.get(f"/c/tilleuls/chargers/{state.charger_id}/").content.decode()
    assert 'id="charger-power"' in detail and "Non-compliant" in detail


def test_a_non_compliant_outlet_is_named_on_the_power_page(manager_client, site):
    """A charger with two sessions, one outlet disobeying: the alert names that outlet, with
    its own draw and limit (not the charger's totals)."""
    make_site_power(site)
    state = make_managed_charger(site, "PWR-TWIN")
    since = timezone.now() - timedelta(minutes=2)
    ChargerPower.objects.filter(pk=state.pk).update(
        limit_a=28,
        draw_a=36,
        outlet_limits={"1": 12.0, "2": 16.0},
        outlet_obedience={
            "2": {"over": since.isoformat(), "since": since.isoformat(), "draw": 20.0}
        },
        non_compliant_since=since,
    )
    page = manager_client.get(url(site)).content.decode()
    assert "Outlet 2 of PWR-TWIN does not obey its limit" in page
    assert "20.0 A for 16.0 A allowed" in page and "36.0" not in page.split('role="alert"')[1]


def test_the_power_page_shows_a_silent_grid_meter_and_the_failsafe(manager_client, site):
    make_site_power(site)
    meter = builders.make_meter(site, name="Main board")
    page = manager_client.get(url(site)).content.decode()
    assert "Meter silent" in page  # never spoke
    meter.last_reading_at = timezone.now()
    meter.save(update_fields=["last_reading_at"])
    page = manager_client.get(url(site)).content.decode()
    assert "Meter silent" not in page and "No grid meter on this site" not in page
    meter.delete()
    page = manager_client.get(url(site)).content.decode()
    assert "No grid meter on this site" in page


def test_the_dashboard_has_no_power_alert_for_drivers(client, individual, site):
    make_site_power(site)
    state = make_managed_charger(site, "PWR-BAD2")
    ChargerPower.objects.filter(pk=state.pk).update(non_compliant_since=timezone.now())
    client.force_login(individual)
    assert "does not obey its power limit" not in client.get("/c/tilleuls/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_old_grid_limit_becomes_the_grid_connection(community):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    before = [("communities", "0002_installers"), ("power", "0001_initial")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Site = old.get_model("communities", "Site")
    site = Site.objects.create(community_id=community.pk, name="Old", grid_limit_kw=Decimal("22"))
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    with scope(community=community):
        power = SitePower.objects.get(site_id=site.pk)
    assert (power.phases, power.voltage_v, power.limit_a) == (3, 230, Decimal("31.8"))
    assert not power.managed  # nothing was controlled before: no mode switched on


@pytest.mark.django_db(transaction=True)
def test_a_charger_flagged_as_a_whole_keeps_its_verdict_on_its_outlets(community, site):
    """Migration 0004: the non-compliance of a charger judged as a whole before the upgrade is
    carried onto each outlet it had a limit for, so it gets no fresh grace period."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    charger = builders.make_charger(community, site=site, identity="PWR-OLD-FLAG")
    executor = MigrationExecutor(connection)
    before = [("power", "0003_chargerpower_outlet_limits")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("power", "ChargerPower")
    since = timezone.now() - timedelta(minutes=3)
    old.objects.create(
        community_id=community.pk,
        charger_id=charger.pk,
        limit_a=32.0,
        draw_a=40.0,
        outlet_limits={"1": 16.0, "2": 16.0},
        over_since=since - timedelta(minutes=1),
        non_compliant_since=since,
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    with scope(community=community):
        state = ChargerPower.objects.get(charger=charger)
    assert set(state.outlet_obedience) == {"1", "2"}
    assert state.outlet_obedience["2"]["since"] == since.isoformat()
    assert [d.outlet for d in state.disobeying_outlets()] == ["1", "2"]


def test_the_outlets_page_shows_each_session_power(manager_client, site):
    from chargers.models import MeterSample

    from .conftest import start_session

    state = make_managed_charger(site, "PWR-KW")
    session = start_session(state.charger, "55")
    MeterSample.objects.create(
        community=site.community,
        session=session,
        timestamp=timezone.now(),
        measurand="Power.Active.Import",
        value=Decimal("7360"),
        unit="W",
    )
    page = manager_client.get("/c/tilleuls/outlets/").content.decode()
    assert "Power (kW)" in page and "7.4" in page


def test_switching_management_off_clears_the_chargers_profiles(manager_client, site):
    from chargers.models import ChargerCommand
    from ocpp_gateway import validation

    make_site_power(site)
    old = make_managed_charger(site, "PWR-CLR-16", version="1.6")
    new = make_managed_charger(site, "PWR-CLR-201", version="2.0.1")
    # A station with one stack level got its TxProfiles at level 0: cleared there.
    new.charger.configuration = {"SmartChargingCtrlr/ProfileStackLevel": "0"}
    new.charger.save(update_fields=["configuration"])
    ChargerPower.objects.filter(pk=old.pk).update(
        failsafe_a=10.6,
        limit_a=16,
        max_profile_a=32,
        outlet_obedience={"1": {"over": timezone.now().isoformat()}},
    )
    response = manager_client.post(
        url(site, "settings/"), settings_post(**{"site-load_balancing": ""})
    )
    assert response.status_code == 302
    rows = ChargerCommand.objects.filter(action="ClearChargingProfile")
    # The failsafe, the charger's maximum (by their ids) and the dynamic TxProfiles.
    assert rows.count() == 6 and all(r.from_portal and r.status == "pending" for r in rows)
    for row in rows:
        validation.validate(row.charger.ocpp_version, "ClearChargingProfile", row.payload)
    assert {r.charger_id for r in rows} == {old.charger_id, new.charger_id}
    cleared = [r.payload.get("id", r.payload.get("chargingProfileId")) for r in rows]
    assert sorted(i for i in cleared if i) == [1, 1, 2, 2]
    by_purpose = {
        r.charger_id: r.payload.get("chargingProfileCriteria", r.payload)["stackLevel"]
        for r in rows
        if "stackLevel" in r.payload.get("chargingProfileCriteria", r.payload)
    }
    assert by_purpose == {old.charger_id: 1, new.charger_id: 0}
    old.refresh_from_db()
    assert old.failsafe_a is None and old.limit_a is None and old.max_profile_a is None
    assert old.outlet_obedience == {}
    assert AuditEvent.objects.get(action="power.site").data["cleared"] == 2
    # Saving an unmanaged site again asks nothing more.
    manager_client.post(url(site, "settings/"), settings_post(**{"site-load_balancing": ""}))
    assert ChargerCommand.objects.filter(action="ClearChargingProfile").count() == 6
