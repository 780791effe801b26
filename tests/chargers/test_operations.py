"""Fleet operations asked from the charger page (`chargers.operations`): the OCPP call chosen per
version, audited, queued on the one command path; who may ask; what is refused and why; moving
and deleting a charger."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chargers import operations
from chargers.models import Charger, ChargerCommand, ChargingSession, InventoryCharger
from chargers.services import ChargerError
from communities.models import AuditEvent
from tests import builders

pytestmark = pytest.mark.community_scope


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


def online(charger, version="1.6"):
    Charger.objects.filter(pk=charger.pk).update(connected=True, ocpp_version=version)
    return Charger.objects.get(pk=charger.pk)


@pytest.fixture
def installer_limited(community):
    company = builders.make_company()
    builders.make_grant(community, company, "limited")
    return builders.make_installer(company)


@pytest.fixture
def installer_full(community):
    company = builders.make_company()
    builders.make_grant(community, company, "full")
    return builders.make_installer(company)


@pytest.mark.parametrize(
    "version,hard,payload",
    [
        ("1.6", False, {"type": "Soft"}),
        ("1.6", True, {"type": "Hard"}),
        ("2.0.1", False, {"type": "OnIdle"}),
        ("2.0.1", True, {"type": "Immediate"}),
    ],
)
def test_reset_queues_the_versions_call(charger, manager, version, hard, payload):
    command = operations.request_reset(charger=online(charger, version), actor=manager, hard=hard)
    assert (command.action, command.payload) == ("Reset", payload)
    assert command.status == ChargerCommand.Status.PENDING and command.from_portal
    event = AuditEvent.objects.get(action="charger.reset")
    assert event.actor == manager and event.data["command_uid"] == str(command.uid)
    assert event.target == f"CP-TEST-01 ({'hard' if hard else 'soft'})"


@pytest.mark.parametrize(
    "version,payload",
    [("1.6", {"connectorId": 2}), ("2.0.1", {"evseId": 1, "connectorId": 2})],
)
def test_unlock_names_the_outlet(charger, manager, version, payload):
    outlet = builders.make_connector(charger, connector_id=2, evse_id=1)
    command = operations.request_unlock(
        charger=online(charger, version), connector=outlet, actor=manager
    )
    assert (command.action, command.payload, command.connector) == (
        "UnlockConnector",
        payload,
        outlet,
    )
    assert AuditEvent.objects.filter(action="charger.unlock").exists()


def test_unlock_is_refused_during_a_session(charger, manager):
    outlet = builders.make_connector(charger)
    ChargingSession.objects.create(
        community=charger.community, charger=charger, connector=outlet, transaction_id="9"
    )
    with pytest.raises(ChargerError, match="stop it first"):
        operations.request_unlock(charger=online(charger), connector=outlet, actor=manager)
    assert not ChargerCommand.objects.exists()


@pytest.mark.parametrize(
    "version,available,payload",
    [
        ("1.6", False, {"connectorId": 1, "type": "Inoperative"}),
        ("1.6", True, {"connectorId": 1, "type": "Operative"}),
        (
            "2.0.1",
            False,
            {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}},
        ),
    ],
)
def test_availability(charger, manager, version, available, payload):
    outlet = builders.make_connector(charger)
    command = operations.request_availability(
        charger=online(charger, version), connector=outlet, actor=manager, available=available
    )
    assert (command.action, command.payload) == ("ChangeAvailability", payload)


@pytest.mark.parametrize(
    "version,report,with_outlet,payload",
    [
        ("1.6", "status", True, {"requestedMessage": "StatusNotification", "connectorId": 1}),
        ("1.6", "meter_values", False, {"requestedMessage": "MeterValues"}),
        (
            "2.0.1",
            "status",
            True,
            {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}},
        ),
        ("2.0.1", "meter_values", False, {"requestedMessage": "MeterValues"}),
    ],
)
def test_trigger(charger, manager, version, report, with_outlet, payload):
    outlet = builders.make_connector(charger) if with_outlet else None
    command = operations.request_report(
        charger=online(charger, version), actor=manager, report=report, connector=outlet
    )
    assert (command.action, command.payload) == ("TriggerMessage", payload)


def test_offline_charger_is_refused(charger, manager):
    with pytest.raises(ChargerError, match="not connected"):
        operations.request_reset(charger=charger, actor=manager, hard=False)
    assert not ChargerCommand.objects.exists()


def test_the_same_request_twice_is_refused_while_on_its_way(charger, manager):
    charger = online(charger)
    operations.request_reset(charger=charger, actor=manager, hard=False)
    with pytest.raises(ChargerError, match="already on its way"):
        operations.request_reset(charger=charger, actor=manager, hard=True)
    # Once answered (or long gone), a new one can be asked.
    ChargerCommand.objects.update(status=ChargerCommand.Status.ACCEPTED)
    operations.request_reset(charger=charger, actor=manager, hard=True)
    ChargerCommand.objects.update(
        status=ChargerCommand.Status.SENT, created_at=timezone.now() - timedelta(minutes=10)
    )
    operations.request_reset(charger=charger, actor=manager, hard=False)
    assert ChargerCommand.objects.count() == 3


def test_an_outlet_of_another_charger_is_refused(community, charger, manager):
    other = builders.make_connector(builders.make_charger(community))
    with pytest.raises(ChargerError, match="another charger"):
        operations.request_unlock(charger=online(charger), connector=other, actor=manager)


def test_services_check_the_actor(charger, individual, installer_limited, installer_full):
    charger = online(charger)
    for person in (individual, installer_limited):
        with pytest.raises(ChargerError, match="not allowed"):
            operations.request_reset(charger=charger, actor=person, hard=False)
        with pytest.raises(ChargerError, match="not allowed"):
            operations.delete_charger(charger=charger, actor=person)
    operations.request_reset(charger=charger, actor=installer_full, hard=False)


def test_move_to_another_site_is_audited(community, charger, manager):
    target = builders.make_site(community, name="Parking B")
    operations.move_charger(charger=charger, actor=manager, site=target)
    charger.refresh_from_db()
    assert charger.site == target
    event = AuditEvent.objects.get(action="charger.move")
    assert event.target == "CP-TEST-01 (Parking A → Parking B)"
    with pytest.raises(ChargerError, match="already on this site"):
        operations.move_charger(charger=charger, actor=manager, site=target)


def test_move_to_a_site_of_another_community_is_refused(charger, manager, outsider):
    foreign = builders.make_site(builders.community_of(outsider))
    with pytest.raises(ChargerError, match="another community"):
        operations.move_charger(charger=charger, actor=manager, site=foreign)


def test_the_edit_form_moves_through_the_same_rule(community, charger, manager_client):
    target = builders.make_site(community, name="Parking B")
    manager_client.post(
        f"/c/tilleuls/chargers/{charger.pk}/edit/",
        {"site": target.pk, "vendor": "other", "model": "", "name": "Box"},
    )
    charger.refresh_from_db()
    assert (charger.site, charger.name) == (target, "Box")
    assert AuditEvent.objects.filter(action="charger.move").count() == 1


def test_delete_a_charger_registered_by_mistake(charger, manager):
    builders.make_connector(charger)
    ChargerCommand.objects.create(community=charger.community, charger=charger, action="Reset")
    inventory = InventoryCharger.objects.create(
        serial="CP-TEST-01", pin_hash="x", vendor="other", charger=charger,
        claimed_at=timezone.now(), claimed_by=manager,
    )  # fmt: skip
    assert operations.delete_charger(charger=charger, actor=manager) == "CP-TEST-01"
    assert not Charger.objects.filter(pk=charger.pk).exists()
    inventory.refresh_from_db()
    assert inventory.claimed_at is None and inventory.charger is None  # can be claimed again
    assert AuditEvent.objects.get(action="charger.delete").target == "CP-TEST-01"


def test_a_charger_with_sessions_is_kept(charger, manager):
    ChargingSession.objects.create(community=charger.community, charger=charger, transaction_id="1")
    with pytest.raises(ChargerError, match="billing history"):
        operations.delete_charger(charger=charger, actor=manager)
    assert Charger.objects.filter(pk=charger.pk).exists()
    assert not AuditEvent.objects.filter(action="charger.delete").exists()


# --- the charger page -------------------------------------------------------------------------
def test_page_shows_operations_to_managers(charger, manager_client):
    online(charger)
    builders.make_connector(charger)
    page = manager_client.get(f"/c/tilleuls/chargers/{charger.pk}/").content.decode()
    assert 'id="operations"' in page
    assert f"/c/tilleuls/chargers/{charger.pk}/reset/hard/" in page
    assert "Unlock the cable" in page and "Make unavailable" in page
    assert f"/c/tilleuls/chargers/{charger.pk}/delete/" in page


def test_limited_installer_sees_but_cannot_act(client, charger, installer_limited):
    online(charger)
    outlet = builders.make_connector(charger)
    client.force_login(installer_limited)
    page = client.get(f"/c/tilleuls/chargers/{charger.pk}/").content.decode()
    assert "not act on it" in page and "/reset/" not in page and "/delete/" not in page
    base = f"/c/tilleuls/chargers/{charger.pk}"
    for url in (
        f"{base}/reset/",
        f"{base}/reset/hard/",
        f"{base}/report/",
        f"{base}/outlets/{outlet.pk}/unlock/",
        f"{base}/outlets/{outlet.pk}/availability/",
        f"{base}/delete/",
        f"{base}/move/",
    ):
        assert client.post(url, {"understood": "on", "available": "0"}).status_code == 403
    assert not ChargerCommand.objects.exists()


def test_soft_restart_from_the_page(charger, manager_client):
    online(charger)
    answer = manager_client.post(f"/c/tilleuls/chargers/{charger.pk}/reset/", follow=True)
    assert ChargerCommand.objects.get().payload == {"type": "Soft"}
    assert "Restart asked" in answer.content.decode()


def test_hard_restart_needs_the_confirmation(charger, manager_client):
    online(charger)
    url = f"/c/tilleuls/chargers/{charger.pk}/reset/hard/"
    page = manager_client.get(url).content.decode()
    assert "stop immediately" in page
    assert manager_client.post(url, {"confirm": "1"}).status_code == 400
    assert not ChargerCommand.objects.exists()
    answer = manager_client.post(url, {"confirm": "1", "understood": "on"})
    assert answer.status_code == 302 and answer.url.endswith("#operations")
    assert ChargerCommand.objects.get().payload == {"type": "Hard"}


def test_offline_refusal_is_shown(charger, manager_client):
    answer = manager_client.post(f"/c/tilleuls/chargers/{charger.pk}/reset/", follow=True)
    assert "not connected" in answer.content.decode()


def test_availability_and_report_forms_are_checked_on_the_server(charger, manager_client):
    online(charger, "2.0.1")
    outlet = builders.make_connector(charger)
    base = f"/c/tilleuls/chargers/{charger.pk}"
    answer = manager_client.post(f"{base}/outlets/{outlet.pk}/availability/", {}, follow=True)
    assert "Choose available or unavailable" in answer.content.decode()
    answer = manager_client.post(f"{base}/report/", {"report": "diagnostics"}, follow=True)
    assert "valid choice" in answer.content.decode()
    assert not ChargerCommand.objects.exists()
    manager_client.post(f"{base}/outlets/{outlet.pk}/availability/", {"available": "0"})
    manager_client.post(f"{base}/report/", {"report": "status", "connector": outlet.pk})
    actions = sorted(ChargerCommand.objects.values_list("action", flat=True))
    assert actions == ["ChangeAvailability", "TriggerMessage"]


def test_outlet_of_another_charger_answers_404(community, charger, manager_client):
    online(charger)
    other = builders.make_connector(builders.make_charger(community))
    url = f"/c/tilleuls/chargers/{charger.pk}/outlets/{other.pk}/unlock/"
    assert manager_client.post(url).status_code == 404


def test_delete_from_the_page(charger, site, manager_client):
    url = f"/c/tilleuls/chargers/{charger.pk}/delete/"
    assert "unknown charger" in manager_client.get(url).content.decode()
    answer = manager_client.post(url, {"confirm": "1", "understood": "on"})
    assert answer.status_code == 302 and answer.url == f"/c/tilleuls/sites/{site.pk}/"
    assert not Charger.objects.filter(pk=charger.pk).exists()


def test_delete_page_explains_why_a_charger_is_kept(charger, manager_client):
    ChargingSession.objects.create(community=charger.community, charger=charger, transaction_id="1")
    answer = manager_client.get(f"/c/tilleuls/chargers/{charger.pk}/delete/", follow=True)
    assert "billing history" in answer.content.decode()
    assert Charger.objects.filter(pk=charger.pk).exists()


def test_move_from_the_page(community, charger, manager_client):
    target = builders.make_site(community, name="Parking B")
    url = f"/c/tilleuls/chargers/{charger.pk}/move/"
    assert "Parking B" in manager_client.get(url).content.decode()
    manager_client.post(url, {"site": target.pk})
    charger.refresh_from_db()
    assert charger.site == target


def test_the_commands_table_shows_the_chargers_answer(charger, manager_client):
    ChargerCommand.objects.create(
        community=charger.community, charger=charger, action="UnlockConnector",
        status=ChargerCommand.Status.REJECTED, response={"status": "UnlockFailed"},
    )  # fmt: skip
    assert "UnlockFailed" in page_of(manager_client, charger)


def page_of(client, charger):
    return client.get(f"/c/tilleuls/chargers/{charger.pk}/").content.decode()
