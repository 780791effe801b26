"""How Sparklin reaches an operator (the endpoint and credentials the gateway's relay uses too,
`ocpp_gateway.upstream`), and the portal's "Test the connection": a websocket handshake with the
charger's OCPP version, then one Heartbeat, showing what the operator answered."""

from __future__ import annotations

import base64
import json
import uuid
from typing import TypedDict
from urllib.parse import quote

from django.utils.translation import gettext as _
from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException
from websockets.sync.client import connect
from websockets.typing import Subprotocol

TIMEOUT = 5.0


def upstream_url(url: str, identity: str) -> str:
    """The operator's endpoint for one charger: its URL + "/" + the identity (OCPP-J)."""
    return url.rstrip("/") + "/" + quote(identity, safe="")


def basic_auth(identity: str, password: str) -> dict[str, str]:
    """The HTTP Basic header of security profiles 1 and 2 (none without a password)."""
    if not password:
        return {}
    token = base64.b64encode(f"{identity}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


class ProbeResult(TypedDict):
    ok: bool
    summary: str
    answer: str  # the operator's answer frame, as text (empty when none)


def probe(
    *, url: str, identity: str, password: str, version: str, timeout: float = TIMEOUT
) -> ProbeResult:
    """Connect as the charger would be relayed (same URL, identity, password, OCPP version),
    send one Heartbeat and return what came back. Never raises for a network problem."""
    subprotocol = f"ocpp{version or '1.6'}"
    try:
        with connect(
            upstream_url(url, identity),
            subprotocols=[Subprotocol(subprotocol)],
            additional_headers=basic_auth(identity, password),
            open_timeout=timeout,
            close_timeout=1,
            compression=None,
        ) as ws:
            if ws.subprotocol != subprotocol:
                return {
                    "ok": False,
                    "summary": _("The operator does not accept OCPP %(version)s.")
                    % {"version": version or "1.6"},
                    "answer": "",
                }
            ws.send(json.dumps([2, str(uuid.uuid4()), "Heartbeat", {}]))
            answer = ws.recv(timeout=timeout)
    except InvalidStatus as e:
        return {
            "ok": False,
            "summary": _("The operator refused the connection (HTTP %(status)s).")
            % {"status": e.response.status_code},
            "answer": e.response.body.decode("utf-8", "replace")[:500] if e.response.body else "",
        }
    except TimeoutError:
        return {"ok": False, "summary": _("The operator did not answer in time."), "answer": ""}
    except (OSError, InvalidHandshake, WebSocketException) as e:
        return {
            "ok": False,
            "summary": _("The operator could not be reached: %(error)s") % {"error": e},
            "answer": "",
        }
    text = answer if isinstance(answer, str) else answer.decode("utf-8", "replace")
    try:
        ok = json.loads(text)[0] == 3
    except (ValueError, IndexError, KeyError, TypeError):
        ok = False
    summary = (
        _("Connected: the operator answered the Heartbeat.")
        if ok
        else _("Connected, but the operator answered the Heartbeat with an error.")
    )
    return {"ok": ok, "summary": summary, "answer": text[:2000]}
