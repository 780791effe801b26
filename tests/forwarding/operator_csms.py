"""A third-party operator's central system on loopback, written with the `ocpp` library (1.6
and 2.0.1): what Sparklin relays to in the forwarding tests. It records every frame it receives
(raw, in order), answers like a small CSMS (its own transaction ids, its own card list), and
can send calls to the charger through Sparklin."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from http import HTTPStatus

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from websockets.asyncio.server import serve


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Recording:
    def _setup(self, operator):
        self.operator = operator

    async def route_message(self, raw_msg):
        self.operator.frames.append((self.id, json.loads(raw_msg)))
        frame = json.loads(raw_msg)
        if frame[0] == 2 and frame[2] in self.operator.silent:
            return  # never answers this action
        held = self.operator.held.get(frame[2]) if frame[0] == 2 else None
        if held is not None:
            # Answered once the test releases it; meanwhile later frames are still read (and
            # recorded), so a test sees whether anything was sent before this answer.
            task = asyncio.create_task(self._answer_when(held, raw_msg))
            self.operator._tasks.add(task)
            task.add_done_callback(self.operator._tasks.discard)
            return
        await super().route_message(raw_msg)

    async def _answer_when(self, held, raw_msg):
        await held.wait()
        await super().route_message(raw_msg)

    def status_for(self, token):
        return "Invalid" if token in self.operator.refused_cards else "Accepted"


class Operator16(_Recording, ChargePoint16):
    @on(Action16.boot_notification)
    def on_boot(self, **kwargs):
        return result16.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @on(Action16.heartbeat)
    def on_heartbeat(self, **kwargs):
        return result16.Heartbeat(current_time=_now())

    @on(Action16.status_notification)
    def on_status(self, **kwargs):
        return result16.StatusNotification()

    @on(Action16.authorize)
    def on_authorize(self, id_tag, **kwargs):
        return result16.Authorize(id_tag_info={"status": self.status_for(id_tag)})

    @on(Action16.start_transaction)
    def on_start(self, id_tag, **kwargs):
        return result16.StartTransaction(
            transaction_id=next(self.operator.transaction_ids),
            id_tag_info={"status": self.status_for(id_tag)},
        )

    @on(Action16.meter_values)
    def on_meter_values(self, **kwargs):
        return result16.MeterValues()

    @on(Action16.stop_transaction)
    def on_stop(self, **kwargs):
        return result16.StopTransaction()

    @on(Action16.data_transfer)
    def on_data_transfer(self, **kwargs):
        return result16.DataTransfer(status="UnknownVendorId")


class Operator201(_Recording, ChargePoint201):
    @on(Action201.boot_notification)
    def on_boot(self, **kwargs):
        return result201.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @on(Action201.heartbeat)
    def on_heartbeat(self, **kwargs):
        return result201.Heartbeat(current_time=_now())

    @on(Action201.status_notification)
    def on_status(self, **kwargs):
        return result201.StatusNotification()

    @on(Action201.authorize)
    def on_authorize(self, id_token, **kwargs):
        return result201.Authorize(id_token_info={"status": self.status_for(id_token["id_token"])})

    @on(Action201.transaction_event)
    def on_transaction_event(self, id_token=None, **kwargs):
        if id_token:
            return result201.TransactionEvent(
                id_token_info={"status": self.status_for(id_token["id_token"])}
            )
        return result201.TransactionEvent()

    @on(Action201.meter_values)
    def on_meter_values(self, **kwargs):
        return result201.MeterValues()

    @on(Action201.notify_report)
    def on_notify_report(self, **kwargs):
        return result201.NotifyReport()


class Operator:
    """`async with Operator(port=…) as op:` serves ws://127.0.0.1:<port>/<identity>."""

    def __init__(self, port=0, *, password=None, first_transaction_id=9001, refused_cards=()):
        self.port = port
        self.password = password
        self.transaction_ids = itertools.count(first_transaction_id)
        self.refused_cards = set(refused_cards)
        self.silent: set[str] = set()
        self.held: dict[str, asyncio.Event] = {}  # actions answered once their event is set
        self.frames: list[tuple[str, list]] = []
        self.connections: dict[str, object] = {}
        self.connected = asyncio.Event()
        self.auth_seen: list[str | None] = []
        self._server = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def calls(self, action=None):
        """The CALLs received (frames), in order."""
        return [f for _, f in self.frames if f[0] == 2 and (action is None or f[2] == action)]

    async def _process_request(self, connection, request):
        header = request.headers.get("Authorization")
        self.auth_seen.append(header)
        if self.password is not None:
            identity = request.path.rsplit("/", 1)[-1]
            expected = "Basic " + base64.b64encode(f"{identity}:{self.password}".encode()).decode()
            if header != expected:
                return connection.respond(HTTPStatus.UNAUTHORIZED, "Who are you?\n")
        return None

    async def _handler(self, ws):
        identity = ws.request.path.rsplit("/", 1)[-1]
        cls = Operator201 if ws.subprotocol == "ocpp2.0.1" else Operator16
        cp = cls(identity, ws, response_timeout=10)
        cp._setup(self)
        self.connections[identity] = cp
        self.connected.set()
        with contextlib.suppress(Exception):
            await cp.start()

    async def __aenter__(self):
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            self.port,
            subprotocols=["ocpp1.6", "ocpp2.0.1"],
            process_request=self._process_request,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self._server.close(close_connections=True)
        await self._server.wait_closed()


def make_operator(charger, url, role="monitoring", password="", **overrides):
    """An enabled operator connection of `charger` (built like the portal's service does)."""
    from forwarding import secrets
    from forwarding.models import OperatorConnection

    fields = {
        "community": charger.community,
        "charger": charger,
        "name": f"Operator {role}",
        "url": url,
        "identity": charger.identity,
        "password_encrypted": secrets.encrypt(password),
        "role": role,
        **overrides,
    }
    return OperatorConnection.objects.create(**fields)
