"""Charging from the portal: remote start/stop services (virtual app card, refusals, the OCPP
payloads written for 1.6 and 2.0.1) and the buttons and actions on the Outlets page and the
driver's dashboard."""

import re

import pytest

from chargers import services
from chargers.models import ChargeCard, ChargerCommand, Connector
from communities.models import AuditEvent, Membership, Role
from tests import builders
from tests.communities.portal_data import make_session

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


def online(charger, version="1.6"):
    charger.connected, charger.ocpp_version = True, version
    charger.save()
    return charger


@pytest.fixture
def outlet(charger):
    online(charger)
    return builders.make_connector(charger, 1, status="Available")


# --- services -----------------------------------------------------------------------------------


def test_start_16_creates_the_app_card_once_and_a_pending_command(community, individual, outlet):
    command = services.request_remote_start(connector=outlet, user=individual)
    card = ChargeCard.objects.get(holder=individual)
    assert re.fullmatch(r"APP[0-9A-F]{10}", card.uid) and card.name == "Sparklin app"
    assert card.active and card.authorization_status == "Accepted"
    assert command.action == "RemoteStartTransaction"
    assert command.payload == {"connectorId": 1, "idTag": card.uid}
    assert command.status == "pending" and command.from_portal and command.asked_by == individual
    assert command.connector == outlet
    assert AuditEvent.objects.filter(action="charger.command", actor=individual).exists()

    ChargerCommand.objects.filter(pk=command.pk).update(status="accepted")
    again = services.request_remote_start(connector=outlet, user=individual)
    assert again.payload["idTag"] == card.uid
    assert ChargeCard.objects.filter(holder=individual).count() == 1  # created once


def test_start_201_request_start_transaction_payload(community, individual, charger):
    online(charger, "2.0.1")
    connector = builders.make_connector(charger, 1, evse_id=2, status="Occupied")
    command = services.request_remote_start(connector=connector, user=individual)
    card = ChargeCard.objects.get(holder=individual)
    assert command.action == "RequestStartTransaction"
    assert command.payload == {
        "evseId": 2,
        "remoteStartId": command.pk,
        "idToken": {"idToken": card.uid, "type": "Central"},
    }
    assert ChargerCommand.objects.get(pk=command.pk).payload["remoteStartId"] == command.pk


def test_start_uses_the_drivers_own_active_card(community, individual, outlet):
    builders.make_card(community, holder=individual, uid="OLD", active=False)
    card = builders.make_card(community, holder=individual, uid="04A23B11")
    command = services.request_remote_start(connector=outlet, user=individual)
    assert command.payload["idTag"] == "04A23B11" == card.uid
    assert ChargeCard.objects.filter(holder=individual).count() == 2


def test_a_deactivated_app_card_is_not_replaced(community, individual, outlet):
    services.request_remote_start(connector=outlet, user=individual)
    ChargeCard.objects.filter(holder=individual).update(active=False)
    ChargerCommand.objects.update(status="rejected")
    with pytest.raises(services.ChargerError, match="deactivated"):
        services.request_remote_start(connector=outlet, user=individual)
    assert ChargeCard.objects.filter(holder=individual).count() == 1


@pytest.mark.parametrize(
    "connected,status,message",
    [
        (False, "Available", "not connected"),
        (True, "Charging", "cannot start"),
        (True, "Faulted", "cannot start"),
        (True, "Unavailable", "cannot start"),
        (True, "Reserved", "cannot start"),
    ],
)
def test_start_refused_writes_nothing(individual, charger, connected, status, message):
    online(charger)
    charger.connected = connected
    charger.save()
    connector = builders.make_connector(charger, 1, status=status)
    with pytest.raises(services.ChargerError, match=message):
        services.request_remote_start(connector=connector, user=individual)
    assert not ChargerCommand.objects.exists() and not ChargeCard.objects.exists()
    assert not AuditEvent.objects.filter(action__in=["charger.command", "card.add"]).exists()


def test_start_refused_while_a_session_runs_or_a_start_is_pending(individual, manager, outlet):
    services.request_remote_start(connector=outlet, user=individual)
    with pytest.raises(services.ChargerError, match="already on its way"):
        services.request_remote_start(connector=outlet, user=manager)
    ChargerCommand.objects.update(status="timed_out")
    make_session(outlet.charger, outlet, holder=individual, active=True)
    with pytest.raises(services.ChargerError, match="cannot start"):
        services.request_remote_start(connector=outlet, user=manager)
    assert ChargerCommand.objects.count() == 1


def test_start_refused_to_a_member_who_left(community, outlet):
    gone = builders.make_member(community, Role.INDIVIDUAL, state=Membership.State.LEFT).user
    with pytest.raises(services.ChargerError, match="no longer a member"):
        services.request_remote_start(connector=outlet, user=gone)
    assert not ChargerCommand.objects.exists()


def test_stop_16_and_201_payloads(individual, outlet, community, site):
    session = make_session(outlet.charger, outlet, holder=individual, active=True)
    command = services.request_remote_stop(session=session, user=individual)
    assert command.action == "RemoteStopTransaction"
    assert command.payload == {"transactionId": int(session.transaction_id)}
    assert command.session == session and command.connector == outlet

    station = online(builders.make_charger(community, site=site), "2.0.1")
    evse = builders.make_connector(station, 1, status="Occupied")
    session201 = make_session(
        station, evse, holder=individual, active=True, transaction_id="f00-ba4"
    )
    command = services.request_remote_stop(session=session201, user=individual)
    assert command.action == "RequestStopTransaction"
    assert command.payload == {"transactionId": "f00-ba4"}


def test_stop_refusals(individual, manager, community, outlet):
    theirs = make_session(outlet.charger, outlet, holder=manager, active=True)
    with pytest.raises(services.ChargerError, match="your own"):
        services.request_remote_stop(session=theirs, user=individual)
    services.request_remote_stop(session=theirs, user=manager)  # managers stop any session
    with pytest.raises(services.ChargerError, match="already on its way"):
        services.request_remote_stop(session=theirs, user=manager)
    done = make_session(outlet.charger, outlet, holder=individual)
    with pytest.raises(services.ChargerError, match="already ended"):
        services.request_remote_stop(session=done, user=individual)
    assert ChargerCommand.objects.count() == 1


# --- views --------------------------------------------------------------------------------------


def test_start_button_only_where_a_start_can_work(client, individual, community, outlet):
    builders.make_connector(outlet.charger, 2, status="Faulted")
    offline = builders.make_charger(community, ocpp_version="1.6")
    builders.make_connector(offline, 1, status="Available")
    client.force_login(individual)
    page = client.get("/c/tilleuls/outlets/").content.decode()
    assert page.count('data-remote="start"') == 1
    assert f"/c/tilleuls/outlets/{outlet.pk}/start/" in page


def test_installers_see_no_charging_buttons(client, community, outlet):
    company = builders.make_company()
    builders.make_grant(community, company, "full")
    client.force_login(builders.make_installer(company))
    page = client.get("/c/tilleuls/outlets/").content.decode()
    assert 'data-remote="start"' not in page


def test_post_start_redirects_with_a_message_and_shows_the_status(client, individual, outlet):
    client.force_login(individual)
    response = client.post(f"/c/tilleuls/outlets/{outlet.pk}/start/", follow=True)
    assert response.redirect_chain[-1][0] == "/c/tilleuls/outlets/"
    page = response.content.decode()
    assert "Start asked" in page and 'data-remote-status="pending"' in page
    assert ChargerCommand.objects.get().asked_by == individual
    # Asked again: refused with a message, nothing written.
    response = client.post(f"/c/tilleuls/outlets/{outlet.pk}/start/", follow=True)
    assert "already on its way" in response.content.decode()
    assert ChargerCommand.objects.count() == 1


def test_status_change_refreshes_the_polled_table(client, individual, outlet):
    client.force_login(individual)
    client.post(f"/c/tilleuls/outlets/{outlet.pk}/start/")
    first = client.get("/c/tilleuls/outlets/", HTTP_HX_REQUEST="true")
    fp = re.search(r'"fp": "([0-9a-f]+)"', first.content.decode()).group(1)
    ChargerCommand.objects.update(status="accepted")
    changed = client.get("/c/tilleuls/outlets/", {"fp": fp}, HTTP_HX_REQUEST="true")
    assert changed.status_code == 200
    assert 'data-remote-status="accepted"' in changed.content.decode()


def test_driver_dashboard_start_returns_to_the_dashboard(client, individual, outlet):
    client.force_login(individual)
    page = client.get("/c/tilleuls/").content.decode()
    assert 'id="remote-charging"' in page and 'data-remote="start"' in page
    response = client.post(
        f"/c/tilleuls/outlets/{outlet.pk}/start/", {"next": "/c/tilleuls/"}, follow=False
    )
    assert response.status_code == 302 and response["Location"] == "/c/tilleuls/"
    elsewhere = client.post(
        f"/c/tilleuls/outlets/{outlet.pk}/start/", {"next": "https://evil.example/"}
    )
    assert elsewhere["Location"] == "/c/tilleuls/outlets/"


def test_stop_button_for_own_session_and_for_managers(client, individual, manager, outlet):
    Connector.objects.filter(pk=outlet.pk).update(status="Charging")
    session = make_session(outlet.charger, outlet, holder=individual, active=True)
    other = builders.make_connector(outlet.charger, 2, status="Charging")
    make_session(outlet.charger, other, holder=manager, active=True)
    client.force_login(individual)
    page = client.get("/c/tilleuls/outlets/").content.decode()
    assert page.count('data-remote="stop"') == 1
    assert f"/c/tilleuls/sessions/{session.pk}/stop/" in page
    client.force_login(manager)
    assert client.get("/c/tilleuls/outlets/").content.decode().count('data-remote="stop"') == 2


def test_individual_cannot_stop_someone_elses_session(client, individual, manager, outlet):
    session = make_session(outlet.charger, outlet, holder=manager, active=True)
    client.force_login(individual)
    response = client.post(f"/c/tilleuls/sessions/{session.pk}/stop/", follow=True)
    assert "your own" in response.content.decode()
    assert not ChargerCommand.objects.exists()


def test_post_stop_redirects_with_a_message(client, individual, outlet):
    session = make_session(outlet.charger, outlet, holder=individual, active=True)
    client.force_login(individual)
    response = client.post(f"/c/tilleuls/sessions/{session.pk}/stop/", follow=True)
    assert "Stop asked" in response.content.decode()
    assert ChargerCommand.objects.get().action == "RemoteStopTransaction"


def test_forged_ids_from_another_community_are_404(client, individual, outsider):
    other = builders.community_of(outsider)
    charger = online(builders.make_charger(other))
    connector = builders.make_connector(charger, 1, status="Available")
    session = make_session(charger, connector, holder=outsider, active=True)
    client.force_login(individual)
    assert client.post(f"/c/tilleuls/outlets/{connector.pk}/start/").status_code == 404
    assert client.post(f"/c/tilleuls/sessions/{session.pk}/stop/").status_code == 404
    assert client.get(f"/c/tilleuls/outlets/{connector.pk}/start/").status_code == 405
    assert not ChargerCommand.objects.exists()
