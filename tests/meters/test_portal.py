"""Meters in the portal: listed on the site page with their last reading and a silent badge,
added / edited / removed by managers and installers with full access, validated per kind on
the server, audited."""

from datetime import timedelta

import pytest
from django.utils import timezone

from communities.models import AuditEvent
from meters.models import Meter, MeterReading

from ..builders import (
    make_charger,
    make_community,
    make_company,
    make_grant,
    make_installer,
    make_meter,
)

pytestmark = pytest.mark.community_scope

MQTT = {
    "name": "Compteur général",
    "role": "grid",
    "kind": "mqtt",
    "enabled": "on",
    "topic": "tele/grid/SENSOR",
    "path_l1": "ENERGY.Power.0",
    "path_l2": "ENERGY.Power.1",
    "path_l3": "ENERGY.Power.2",
    "scale": "",
}


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


def add_url(site):
    return f"/c/tilleuls/sites/{site.pk}/meters/add/"


def test_a_manager_adds_an_mqtt_meter(manager_client, site):
    response = manager_client.post(add_url(site), MQTT)
    assert response.status_code == 302 and response["Location"] == f"/c/tilleuls/sites/{site.pk}/"
    meter = Meter.objects.get(site=site)
    assert (meter.kind, meter.role, meter.enabled) == ("mqtt", "grid", True)
    assert meter.config == {
        "broker": "",
        "topic": "tele/grid/SENSOR",
        "paths": {
            "power_w_l1": "ENERGY.Power.0",
            "power_w_l2": "ENERGY.Power.1",
            "power_w_l3": "ENERGY.Power.2",
        },
        "scale": 1.0,
        "invert": False,
    }
    event = AuditEvent.objects.get(action="meter.create")
    assert event.target == "Compteur général"


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"topic": ""}, "Enter the topic"),
        ({"path_l1": "", "path_l2": "", "path_l3": ""}, "at least one phase"),
        ({"path_l1": "a..b"}, "is not a JSON path"),
        ({"kind": "modbus", "host": "10.0.0.9", "model": ""}, "Unknown meter model"),
        ({"kind": "modbus", "host": "", "model": "sdm630"}, "host name"),
        ({"kind": "modbus", "host": "10.0.0.9", "model": "sdm630", "port": "99999"}, "port"),
        ({"kind": "ocpp", "charger": "CP-ELSEWHERE"}, "Select a valid choice"),
        ({"name": ""}, "This field is required"),
    ],
)
def test_each_kind_is_validated_on_the_server(manager_client, site, changes, error):
    other = make_community(slug="other")
    make_charger(other, identity="CP-ELSEWHERE")
    response = manager_client.post(add_url(site), {**MQTT, **changes})
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Meter.objects.filter(site=site).exists()


def test_a_modbus_and_an_ocpp_meter(manager_client, site, community):
    make_charger(community, site=site, identity="CP-MAIN")
    manager_client.post(
        add_url(site),
        {
            "name": "SDM",
            "role": "grid",
            "kind": "modbus",
            "enabled": "on",
            "host": "10.0.0.9",
            "model": "sdm630",
            "unit": "2",
        },
    )
    manager_client.post(
        add_url(site),
        {
            "name": "PV",
            "role": "solar",
            "kind": "ocpp",
            "enabled": "on",
            "charger": "CP-MAIN",
            "location": "Inlet",
            "invert": "on",
        },
    )
    sdm = Meter.objects.get(name="SDM")
    assert sdm.config == {
        "host": "10.0.0.9",
        "port": 502,
        "unit": 2,
        "model": "sdm630",
        "interval": 5,
        "invert": False,
    }
    assert Meter.objects.get(name="PV").config == {
        "charger": "CP-MAIN",
        "evse": 0,
        "location": "Inlet",
        "invert": True,
    }


def test_a_second_enabled_grid_meter_is_refused(manager_client, site):
    make_meter(site, name="Grid")
    response = manager_client.post(add_url(site), MQTT)
    assert "already has a grid meter (Grid)" in response.content.decode()
    response = manager_client.post(add_url(site), {**MQTT, "enabled": ""})
    assert response.status_code == 302  # a disabled spare is fine


def test_an_installer_with_full_access_adds_one_an_individual_may_not(
    client, community, site, individual
):
    company = make_company()
    make_grant(community, company, "full")
    installer = make_installer(company)
    client.force_login(installer.user if hasattr(installer, "user") else installer)
    assert client.post(add_url(site), MQTT).status_code == 302
    client.force_login(individual)
    assert client.post(add_url(site), {**MQTT, "name": "Other"}).status_code == 403
    assert Meter.objects.filter(site=site).count() == 1


def test_editing_picks_the_new_configuration_and_clears_the_error(manager_client, site):
    meter = make_meter(
        site, name="Grid", config={"topic": "a", "paths": {"power_w_total": "P"}}, last_error="boom"
    )
    page = manager_client.get(f"/c/tilleuls/meters/{meter.pk}/edit/").content.decode()
    assert 'value="a"' in page and 'value="P"' in page
    before = meter.updated_at
    response = manager_client.post(
        f"/c/tilleuls/meters/{meter.pk}/edit/", {**MQTT, "name": "Grid", "topic": "b"}
    )
    assert response.status_code == 302
    meter.refresh_from_db()
    assert meter.config["topic"] == "b" and meter.last_error == "" and meter.updated_at > before
    assert AuditEvent.objects.filter(action="meter.update", target="Grid").exists()


def test_removing_a_meter_is_confirmed(manager_client, site):
    meter = make_meter(site, name="Grid")
    url = f"/c/tilleuls/meters/{meter.pk}/delete/"
    assert manager_client.post(url, {}).status_code == 400  # not ticked: asked again
    assert Meter.objects.filter(pk=meter.pk).exists()
    assert manager_client.post(url, {"understood": "on"}).status_code == 302
    assert not Meter.objects.filter(pk=meter.pk).exists()
    assert AuditEvent.objects.filter(action="meter.delete", target="Grid").exists()


def test_the_site_page_lists_meters_with_last_reading_and_silence(manager_client, site, settings):
    settings.METER_SILENT_SECONDS = 60
    now = timezone.now()
    live = make_meter(site, name="Grid", last_reading_at=now - timedelta(seconds=5))
    MeterReading.objects.create(
        community=site.community,
        meter=live,
        at=now - timedelta(seconds=5),
        power_w_l1=1000,
        power_w_l2=2000,
        power_w_l3=-500,
        power_w_total=2500,
    )
    make_meter(site, name="PV", role="solar", last_reading_at=now - timedelta(minutes=5))
    make_meter(
        site,
        name="Never",
        role="building",
        kind="modbus",
        config={"host": "10.1.1.1", "model": "em24"},
    )
    page = manager_client.get(f"/c/tilleuls/sites/{site.pk}/").content.decode()
    assert "Grid" in page and "2500.0 W" in page and "L1 1000 · L2 2000 · L3 -500 W" in page
    assert page.count("badge-faulted") == 2  # PV went silent, Never never spoke
    assert "Carlo Gavazzi EM24 · 10.1.1.1:502 #1" in page
    assert "No reading yet" in page


def test_the_site_page_query_count_does_not_grow_with_readings(
    manager_client, site, django_assert_max_num_queries
):
    for n in range(3):
        make_meter(site, name=f"M{n}", role="building", last_reading_at=timezone.now())
    with django_assert_max_num_queries(30):
        assert manager_client.get(f"/c/tilleuls/sites/{site.pk}/").status_code == 200
