"""Commissioning through the portal: claim by serial + PIN from the inventory (wrong PIN,
throttle, already claimed), third-party chargers awaiting their first connection, the live
commissioning page (204 when unchanged, what the gateway refused, a password shown once), and
configuration changes queued as commands for the gateway."""

import pytest
from django.contrib.auth.hashers import check_password
from django.core.management import call_command

from chargers.hashers import check_charger_password
from chargers.inventory import import_inventory_csv
from chargers.models import Charger, ChargerCommand, InventoryCharger, UnknownCharger
from communities.models import AuditEvent
from tests import builders

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope

CSV = """serial,pin,vendor,model
SPK-0001,123456,spark1,Spark 1
ZAP-0002,654321,Zaptec,Go
"""


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def inventory(db):
    import_inventory_csv(CSV)


@pytest.fixture
def company(db):
    return builders.make_company()


@pytest.fixture
def installer(company, community):
    builders.make_grant(community, company, "full")
    return builders.make_installer(company)


def claim(client, site, serial, pin):
    return client.post(
        f"/c/tilleuls/sites/{site.pk}/chargers/claim/", {"serial": serial, "pin": pin, "name": ""}
    )


def test_import_inventory_command_hashes_pins(tmp_path, db):
    path = tmp_path / "inventory.csv"
    path.write_text(CSV)
    call_command("import_inventory", str(path))
    item = InventoryCharger.objects.get(serial="ZAP-0002")
    assert item.vendor == "zaptec" and item.pin_hash != "654321"
    assert check_password("654321", item.pin_hash)
    call_command("import_inventory", str(path))  # idempotent
    assert InventoryCharger.objects.count() == 2


def test_installer_claims_by_serial_and_pin(client, installer, company, site, inventory):
    client.force_login(installer)
    response = claim(client, site, "SPK-0001", "123456")
    charger = Charger.objects.get(identity="SPK-0001")
    assert response["Location"] == f"/c/tilleuls/chargers/{charger.pk}/commissioning/"
    assert charger.vendor == "spark1" and charger.from_inventory and charger.installer == company
    assert InventoryCharger.objects.get(serial="SPK-0001").charger == charger
    assert AuditEvent.objects.filter(action="charger.claim", target="SPK-0001").exists()
    assert "SPK-0001" in client.get("/installer/").content.decode()


def test_wrong_pin_is_refused_with_a_clear_message(client, installer, site, inventory):
    client.force_login(installer)
    response = claim(client, site, "SPK-0001", "000000")
    assert "Wrong PIN for this serial number" in response.content.decode()
    assert not Charger.objects.filter(identity="SPK-0001").exists()


def test_unknown_serial_points_to_registration(client, installer, site, inventory):
    client.force_login(installer)
    response = claim(client, site, "NOPE-1", "1")
    assert "not in the Sparklin inventory" in response.content.decode()


def test_repeated_wrong_pins_are_throttled(client, installer, site, inventory):
    client.force_login(installer)
    for _ in range(5):
        assert "Wrong PIN" in claim(client, site, "SPK-0001", "999999").content.decode()
    response = claim(client, site, "SPK-0001", "123456")  # even the right one, for a while
    assert "Too many attempts" in response.content.decode()
    assert not Charger.objects.filter(identity="SPK-0001").exists()


def test_already_claimed_charger_cannot_be_claimed_again(
    client, installer, site, inventory, outsider
):
    client.force_login(installer)
    claim(client, site, "SPK-0001", "123456")
    other = builders.community_of(outsider)
    other_site = builders.make_site(other)
    client.force_login(outsider)
    response = client.post(
        f"/c/{other.slug}/sites/{other_site.pk}/chargers/claim/",
        {"serial": "SPK-0001", "pin": "123456"},
    )
    assert "already been claimed" in response.content.decode()
    assert Charger.objects.get(identity="SPK-0001").community.slug == "tilleuls"


def test_third_party_charger_awaits_first_connection(client, installer, site, company):
    client.force_login(installer)
    data = {"identity": "ZAPTEC-3RD", "vendor": "zaptec", "model": "", "name": "", "password": ""}
    response = client.post(f"/c/tilleuls/sites/{site.pk}/chargers/add/", data)
    charger = Charger.objects.get(identity="ZAPTEC-3RD")
    assert charger.installer == company and not charger.from_inventory
    page = client.get(response["Location"]).content.decode()
    assert "Awaiting first connection" in page
    assert "ws://localhost:9000/ocpp/ZAPTEC-3RD" in page
    assert 'data-refusal="none"' in page  # the gateway saw nothing at all


def test_commissioning_page_is_live_and_shows_refusals(client, installer, site):
    charger = builders.make_charger(site.community, site=site, identity="CP-LIVE")
    client.force_login(installer)
    url = f"/c/tilleuls/chargers/{charger.pk}/commissioning/"
    page = client.get(url)
    fp = page.context["fingerprint"]
    assert client.get(url, {"fp": fp}, HTTP_HX_REQUEST="true").status_code == 204
    UnknownCharger.objects.create(identity="CP-LIVE", reason="bad_password", attempts=2)
    partial = client.get(url, {"fp": fp}, HTTP_HX_REQUEST="true")
    assert partial.status_code == 200
    assert "wrong or missing password" in partial.content.decode()
    assert "<html" not in partial.content.decode()

    Charger.objects.filter(pk=charger.pk).update(
        connected=True, ocpp_version="2.0.1", firmware_version="5.1"
    )
    content = client.get(url, {"fp": fp}, HTTP_HX_REQUEST="true").content.decode()
    assert "OCPP 2.0.1" in content and "5.1" in content and 'data-state="connected"' in content


def test_generated_password_is_shown_once_and_stored_hashed(client, installer, charger):
    client.force_login(installer)
    client.post(f"/c/tilleuls/chargers/{charger.pk}/password/")
    page = client.get(f"/c/tilleuls/chargers/{charger.pk}/commissioning/")
    password = page.context["new_password"]
    charger.refresh_from_db()
    assert password and password not in charger.password_hash
    assert check_charger_password(password, charger.password_hash)
    again = client.get(f"/c/tilleuls/chargers/{charger.pk}/commissioning/")
    assert again.context["new_password"] is None


def test_configuration_change_becomes_a_pending_command(client, installer, charger):
    Charger.objects.filter(pk=charger.pk).update(
        ocpp_version="1.6", configuration={"HeartbeatInterval": "300"}
    )
    client.force_login(installer)
    url = f"/c/tilleuls/chargers/{charger.pk}/configuration/"
    assert "HeartbeatInterval" in client.get(url).content.decode()
    client.post(url, {"setting": "heartbeat_interval", "value": "120"})
    command = ChargerCommand.objects.get(charger=charger)
    assert command.action == "ChangeConfiguration" and command.from_portal
    assert command.payload == {"key": "HeartbeatInterval", "value": "120"}
    assert command.status == "pending" and command.asked_by == installer
    bad = client.post(url, {"setting": "heartbeat_interval", "value": "soon"})
    assert "number of seconds" in bad.content.decode()


def test_configuration_201_uses_set_variables_and_reconfigure(client, manager, charger):
    Charger.objects.filter(pk=charger.pk).update(ocpp_version="2.0.1")
    client.force_login(manager)
    url = f"/c/tilleuls/chargers/{charger.pk}/configuration/"
    client.post(url, {"setting": "measurands", "value": "Energy.Active.Import.Register, Voltage"})
    command = ChargerCommand.objects.get(charger=charger)
    assert command.action == "SetVariables"
    assert command.payload["setVariableData"][0] == {
        "attributeValue": "Energy.Active.Import.Register,Voltage",
        "component": {"name": "SampledDataCtrlr"},
        "variable": {"name": "TxUpdatedMeasurands"},
    }
    client.post(f"/c/tilleuls/chargers/{charger.pk}/reconfigure/")
    assert ChargerCommand.objects.filter(action="Reconfigure", from_portal=True).exists()


def test_limited_installer_can_configure_but_not_register(client, community, site, charger):
    company = builders.make_company()
    builders.make_grant(community, company, "limited")
    installer = builders.make_installer(company)
    client.force_login(installer)
    assert client.get(f"/c/tilleuls/chargers/{charger.pk}/configuration/").status_code == 200
    assert client.get(f"/c/tilleuls/chargers/{charger.pk}/").status_code == 200
    assert client.get(f"/c/tilleuls/sites/{site.pk}/chargers/claim/").status_code == 403
