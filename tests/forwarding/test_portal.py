"""The charger page's operators: connect (validated server-side, one Billing per charger,
password stored encrypted, audited), the state and frame log page, "Test the connection"
against a loopback operator, disconnect."""

import asyncio
import threading

import pytest
from django.utils import translation

from communities.models import AuditEvent
from forwarding import secrets
from forwarding.models import ForwardedFrame, OperatorConnection
from forwarding.services import ForwardingError, connect_operator, update_operator

from .operator_csms import Operator, make_operator

pytestmark = [pytest.mark.django_db, pytest.mark.community_scope]


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"
    settings.FORWARDING_ALLOW_PRIVATE_HOSTS = True  # loopback operators
    with translation.override("en"):
        yield


def add_url(charger):
    return f"/c/tilleuls/chargers/{charger.pk}/operators/new/"


def form(**overrides):
    return {
        "name": "Volt Time",
        "url": "wss://ocpp.example.com/ocpp",
        "identity": "CP-TEST-01",
        "password": "op-secret-1",
        "role": "billing",
        "fallback": "sparklin",
        **overrides,
    }


def test_manager_connects_an_operator_password_encrypted_and_audited(client, manager, charger):
    client.force_login(manager)
    page = client.get(add_url(charger))
    assert page.status_code == 200 and page.context["form"]["identity"].value() == charger.identity
    response = client.post(add_url(charger), form(identity=charger.identity))
    operator = OperatorConnection.objects.get(charger=charger)
    assert response.status_code == 302 and response["Location"].endswith(
        f"/operators/{operator.pk}/"
    )
    assert operator.role == "billing" and operator.enabled and operator.identity == charger.identity
    assert "op-secret-1" not in operator.password_encrypted
    assert secrets.decrypt(operator.password_encrypted) == "op-secret-1"
    entry = AuditEvent.objects.get(action="operator.connect")
    assert entry.actor == manager and "Volt Time" in entry.target
    detail = client.get(response["Location"]).content.decode()
    assert "Volt Time" in detail and "Waiting for the charger" in detail
    charger_page = client.get(f"/c/tilleuls/chargers/{charger.pk}/").content.decode()
    assert 'id="operators"' in charger_page and "Volt Time" in charger_page
    log = client.get("/c/tilleuls/audit/").content.decode()
    assert "connected the operator Volt Time" in log


@pytest.mark.parametrize(
    "url,error",
    [
        ("https://ocpp.example.com/ocpp", "starting with ws:// or wss://"),
        ("ws://", "starting with ws:// or wss://"),
        ("wss://user:pw@ocpp.example.com/", "not in the URL"),
    ],
)
def test_bad_urls_are_refused_server_side(client, manager, charger, url, error):
    client.force_login(manager)
    response = client.post(add_url(charger), form(url=url))
    assert response.status_code == 200 and error in response.content.decode()
    assert not OperatorConnection.objects.exists()


def test_at_most_one_billing_operator_per_charger(client, manager, charger):
    client.force_login(manager)
    client.post(add_url(charger), form())
    response = client.post(add_url(charger), form(name="Other"))
    assert "already has a Billing operator" in response.content.decode()
    client.post(add_url(charger), form(name="Watcher", role="monitoring"))
    assert sorted(OperatorConnection.objects.values_list("role", flat=True)) == [
        "billing",
        "monitoring",
    ]


def test_service_checks_the_permission(charger, individual):
    with pytest.raises(ForwardingError):
        connect_operator(
            charger=charger,
            actor=individual,
            name="x",
            url="ws://a.example/",
            identity="x",
            password="",
            role="monitoring",
        )


def test_individual_sees_no_operators_section(client, individual, manager, charger):
    make_operator(charger, "ws://127.0.0.1:9/ocpp")
    client.force_login(individual)
    assert client.get(add_url(charger)).status_code == 403


def test_disconnect_stops_forwarding_and_is_audited(client, manager, charger):
    operator = make_operator(charger, "ws://127.0.0.1:9/ocpp", role="billing")
    client.force_login(manager)
    url = f"/c/tilleuls/chargers/{charger.pk}/operators/{operator.pk}/disconnect/"
    response = client.post(url)
    assert response.status_code == 302
    operator.refresh_from_db()
    assert not operator.enabled and operator.disconnected_at is not None
    assert AuditEvent.objects.filter(action="operator.disconnect").count() == 1
    # A new Billing operator may be connected now.
    client.post(add_url(charger), form(name="Next"))
    assert OperatorConnection.objects.filter(enabled=True, role="billing").count() == 1


def test_frame_log_is_shown_newest_first(client, manager, charger):
    operator = make_operator(charger, "ws://127.0.0.1:9/ocpp")
    from django.utils import timezone

    ForwardedFrame.objects.create(
        community=charger.community,
        operator=operator,
        direction="down",
        message_type=4,
        unique_id="abc",
        action="RemoteStopTransaction",
        payload={"errorCode": "SecurityError"},
        note="refused: not allowed to the monitoring role",
        at=timezone.now(),
    )
    client.force_login(manager)
    page = client.get(f"/c/tilleuls/chargers/{charger.pk}/operators/{operator.pk}/")
    text = page.content.decode()
    assert "refused: not allowed to the monitoring role" in text and "Operator → Sparklin" in text


class OperatorThread:
    """A loopback operator running on its own event loop, for a sync view to reach."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.ready = threading.Event()
        self.stop = None

    def __enter__(self):
        def main():
            async def serve():
                async with Operator(**self.kwargs) as op:
                    self.op = op
                    self.stop = asyncio.Event()
                    self.loop = asyncio.get_running_loop()
                    self.ready.set()
                    await self.stop.wait()

            asyncio.run(serve())

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert self.ready.wait(5)
        return self.op

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(5)


def test_test_connection_shows_what_the_operator_answered(client, manager, charger):
    client.force_login(manager)
    with OperatorThread(password="op-secret-1") as op:
        good = make_operator(charger, op.url, password="op-secret-1")
        wrong = make_operator(charger, op.url, password="wrong", name="Wrong")
        url = f"/c/tilleuls/chargers/{charger.pk}/operators/%s/test/"
        ok = client.post(url % good.pk).content.decode()
        refused = client.post(url % wrong.pk).content.decode()
    assert "the operator answered the Heartbeat" in ok and "currentTime" in ok
    assert "refused the connection (HTTP 401)" in refused
    unreachable = make_operator(charger, "ws://127.0.0.1:9/ocpp", name="Gone")
    text = client.post(url % unreachable.pk).content.decode()
    assert "could not be reached" in text


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:5672/", "ws://localhost/ocpp", "wss://10.0.0.8/ocpp", "ws://[::1]/"]
)
def test_private_addresses_are_refused_by_default(client, manager, charger, settings, url):
    """An operator is on the internet: a portal user must not make Sparklin's processes connect
    to their own network (the gateway and the test button would reach it)."""
    settings.FORWARDING_ALLOW_PRIVATE_HOSTS = False
    client.force_login(manager)
    response = client.post(add_url(charger), form(url=url))
    assert "private or local address" in response.content.decode()
    assert not OperatorConnection.objects.exists()


def test_the_test_button_refuses_a_name_resolving_to_a_private_address(
    client, manager, charger, settings
):
    settings.FORWARDING_ALLOW_PRIVATE_HOSTS = False
    operator = make_operator(charger, "ws://localhost.example.invalid/ocpp")
    from forwarding import probe

    assert probe.refused_address("x", ["192.168.1.4"]) and probe.refused_address("x", ["::1"])
    assert probe.refused_address("x", ["93.184.216.34"]) is None
    client.force_login(manager)
    text = client.post(
        f"/c/tilleuls/chargers/{charger.pk}/operators/{operator.pk}/test/"
    ).content.decode()
    assert "could not be reached" in text  # unresolvable: nothing was contacted


def edit_url(operator):
    return f"/c/tilleuls/chargers/{operator.charger_id}/operators/{operator.pk}/edit/"


def test_editing_keeps_the_password_when_left_blank_and_is_audited(client, manager, charger):
    operator = make_operator(
        charger, "wss://ocpp.example.com/ocpp", password="kept-1", role="billing"
    )
    before = operator.updated_at
    client.force_login(manager)
    page = client.get(edit_url(operator)).content.decode()
    assert "wss://ocpp.example.com/ocpp" in page and "kept-1" not in page
    assert "Leave blank to keep it" in page
    response = client.post(
        edit_url(operator),
        form(url="wss://other.example.com/v2", password="", role="monitoring", name="Renamed"),
    )
    assert response.status_code == 302 and response["Location"].endswith(f"/{operator.pk}/")
    operator.refresh_from_db()
    assert (operator.url, operator.name, operator.role) == (
        "wss://other.example.com/v2",
        "Renamed",
        "monitoring",
    )
    assert secrets.decrypt(operator.password_encrypted) == "kept-1"
    assert operator.updated_at > before  # the gateways pick the change up at their next look
    entry = AuditEvent.objects.get(action="operator.edit")
    assert entry.actor == manager and "Renamed" in entry.target
    assert sorted(entry.data["changed"]) == ["name", "role", "url"]
    log = client.get("/c/tilleuls/audit/").content.decode()
    assert "changed the operator Renamed" in log


def test_editing_replaces_or_removes_the_password(client, manager, charger):
    operator = make_operator(charger, "wss://ocpp.example.com/ocpp", password="old-1")
    client.force_login(manager)
    client.post(edit_url(operator), form(url=operator.url, password="new-2", role="monitoring"))
    operator.refresh_from_db()
    assert secrets.decrypt(operator.password_encrypted) == "new-2"
    both = client.post(
        edit_url(operator),
        form(url=operator.url, password="new-3", clear_password="on", role="monitoring"),
    )
    assert both.status_code == 200 and "not both" in both.content.decode()
    client.post(edit_url(operator), form(url=operator.url, password="", clear_password="on"))
    operator.refresh_from_db()
    assert operator.password_encrypted == ""
    entries = AuditEvent.objects.filter(action="operator.edit").order_by("pk")
    assert [e.data["changed"] for e in entries][-1] == ["role", "password"]
    assert all("new-2" not in str(e.data) for e in entries)


def test_saving_without_a_change_writes_nothing(client, manager, charger):
    operator = make_operator(charger, "wss://ocpp.example.com/ocpp")
    before = operator.updated_at
    client.force_login(manager)
    response = client.post(
        edit_url(operator),
        form(url=operator.url, name=operator.name, role="monitoring", password=""),
    )
    assert response.status_code == 302
    operator.refresh_from_db()
    assert operator.updated_at == before and not AuditEvent.objects.filter(action="operator.edit")


@pytest.mark.parametrize(
    "url,error",
    [
        ("https://ocpp.example.com/ocpp", "starting with ws:// or wss://"),
        ("wss://user:pw@ocpp.example.com/", "not in the url"),
        ("ws://10.0.0.5/ocpp", "private"),
        ("ws://localhost:9000/ocpp", "private"),
    ],
)
def test_editing_validates_like_connecting(client, manager, charger, settings, url, error):
    """The same checks as creation, the guard against Sparklin's own network included."""
    settings.FORWARDING_ALLOW_PRIVATE_HOSTS = False
    operator = make_operator(charger, "wss://ocpp.example.com/ocpp")
    client.force_login(manager)
    response = client.post(edit_url(operator), form(url=url, role="monitoring"))
    assert response.status_code == 200 and error in response.content.decode().lower()
    operator.refresh_from_db()
    assert operator.url == "wss://ocpp.example.com/ocpp"


def test_editing_keeps_one_billing_operator_per_charger(client, manager, charger):
    make_operator(charger, "wss://a.example.com/ocpp", role="billing", name="Billing one")
    other = make_operator(charger, "wss://b.example.com/ocpp", role="monitoring")
    client.force_login(manager)
    response = client.post(edit_url(other), form(url=other.url, role="billing"))
    assert "already has a Billing operator" in response.content.decode()
    other.refresh_from_db()
    assert other.role == "monitoring"
    with pytest.raises(ForwardingError):  # the service checks it too
        update_operator(
            operator=other,
            actor=manager,
            name=other.name,
            url=other.url,
            identity=other.identity,
            password="",
            role="billing",
            fallback="sparklin",
        )


def test_a_disconnected_operator_cannot_be_edited(client, manager, charger, individual):
    operator = make_operator(charger, "wss://ocpp.example.com/ocpp")
    client.force_login(manager)
    client.post(f"/c/tilleuls/chargers/{charger.pk}/operators/{operator.pk}/disconnect/")
    response = client.post(edit_url(operator), form(url="wss://new.example.com/"))
    assert response.status_code == 302
    operator.refresh_from_db()
    assert operator.url == "wss://ocpp.example.com/ocpp" and not operator.enabled
    with pytest.raises(ForwardingError):
        update_operator(
            operator=operator,
            actor=individual,
            name="x",
            url=operator.url,
            identity="x",
            password="",
            role="monitoring",
            fallback="sparklin",
        )


def test_charger_page_and_operator_page_show_each_operators_state(client, manager, charger):
    """As the gateway reports it: connected or unreachable, last message, buffered count, last
    error (and the gateway relaying it); the operator page's poll answers 204 while unchanged."""
    from django.utils import timezone

    now = timezone.now()
    up = make_operator(charger, "wss://up.example.com/ocpp", name="Up Op")
    down = make_operator(charger, "wss://down.example.com/ocpp", name="Down Op", role="billing")
    OperatorConnection.objects.filter(pk=up.pk).update(
        connected=True, state_at=now, last_message_at=now, buffered=0, gateway="gw-7"
    )
    OperatorConnection.objects.filter(pk=down.pk).update(
        connected=False, state_at=now, buffered=417, last_error="ConnectionRefusedError: no"
    )
    client.force_login(manager)
    page = client.get(f"/c/tilleuls/chargers/{charger.pk}/").content.decode()
    rows = {name: page.split(name, 1)[1].split("</tr>", 1)[0] for name in ("Up Op", "Down Op")}
    assert "Connected" in rows["Up Op"] and "<td>0</td>" in rows["Up Op"]
    assert "Unreachable" in rows["Down Op"] and "<td>417</td>" in rows["Down Op"]
    assert "ConnectionRefusedError: no" in rows["Down Op"]
    url = f"/c/tilleuls/chargers/{charger.pk}/operators/{up.pk}/"
    detail = client.get(url)
    text = detail.content.decode()
    assert 'data-state="connected"' in text and "gw-7" in text
    poll = {"fp": detail.context["fingerprint"]}
    assert client.get(url, poll, HTTP_HX_REQUEST="true").status_code == 204
    OperatorConnection.objects.filter(pk=up.pk).update(connected=False, last_error="gone")
    changed = client.get(url, poll, HTTP_HX_REQUEST="true")
    assert changed.status_code == 200 and 'data-state="not-connected"' in changed.content.decode()
