"""How Sparklin reaches an operator (the endpoint and credentials the gateway's relay uses too,
`ocpp_gateway.upstream`), and the portal's "Test the connection": a websocket handshake with the
charger's OCPP version, then one Heartbeat, showing what the operator answered."""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import uuid
from typing import TypedDict
from urllib.parse import quote, urlsplit

from django.conf import settings
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
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        refusal = refused_address(
            host, resolve(host, parts.port or (443 if parts.scheme == "wss" else 80))
        )
    except OSError as e:
        refusal = _("The operator could not be reached: %(error)s") % {"error": e}
    if refusal is not None:
        return {"ok": False, "summary": refusal, "answer": ""}
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
            "answer": "",
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


def refused_address(host: str, addresses: list[str]) -> str | None:
    """Why Sparklin must not connect to `host` (resolved to `addresses`), or None. Operators are
    on the internet: a loopback, private, link-local or reserved address would let a portal user
    reach Sparklin's own network (the gateway's and the web process's neighbours) — refused
    unless `FORWARDING_ALLOW_PRIVATE_HOSTS` (tests, a lab)."""
    if settings.FORWARDING_ALLOW_PRIVATE_HOSTS:
        return None
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return _("%(host)s has an unusable address.") % {"host": host}
        if not ip.is_global or ip.is_multicast:
            return _(
                "%(host)s is a private or local address: operators must be reachable on the internet."
            ) % {"host": host}
    return None


def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host` (blocking; the gateway asks its loop instead)."""
    return sorted(
        {str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    )
