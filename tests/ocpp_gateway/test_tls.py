"""Security profile 2: HTTP Basic over TLS. A charger that trusts the gateway's certificate
connects with `wss://` and its password; a wrong password is refused there too."""

import asyncio
import ssl
import subprocess

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chargers.models import Charger
from ocpp_gateway.batcher import EventBatcher
from ocpp_gateway.decisions import Decisions
from ocpp_gateway.server import Gateway, tls_context
from simulator.fleet import basic_auth

from .. import builders

# The gateway and the worker enter their own scopes (scopes_disabled for cross-tenant lookups,
# the charger's community for its writes); the test body reads inside the community's scope.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.community_scope]


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1, made by the openssl command line."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert), str(key)


def test_basic_auth_over_tls(community, site, certificate, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    builders.make_charger(community, site=site, identity="TLS-CP-01", password="s3cret-tls")
    client_context = ssl.create_default_context(cafile=certificate[0])

    async def scenario():
        gateway = Gateway(
            host="127.0.0.1", port=0, ssl=tls_context(*certificate),
            batcher=EventBatcher(flush_seconds=0.05), decisions=Decisions(),
        )  # fmt: skip
        async with gateway:
            assert gateway.url.startswith("wss://127.0.0.1:")
            with pytest.raises(InvalidStatus) as refused:
                await connect(
                    gateway.url + "TLS-CP-01", subprotocols=["ocpp1.6"], ssl=client_context,
                    additional_headers={"Authorization": basic_auth("TLS-CP-01", "wrong")},
                    open_timeout=5,
                )  # fmt: skip
            assert refused.value.response.status_code == 401
            async with connect(
                gateway.url + "TLS-CP-01", subprotocols=["ocpp1.6"], ssl=client_context,
                additional_headers={"Authorization": basic_auth("TLS-CP-01", "s3cret-tls")},
                open_timeout=5,
            ) as ws:  # fmt: skip
                assert ws.subprotocol == "ocpp1.6"
                await ws.send('[2,"b1","Heartbeat",{}]')
                answer = await asyncio.wait_for(ws.recv(), 5)
                assert answer.startswith('[3,"b1",{"currentTime"')

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert Charger.objects.get(identity="TLS-CP-01").last_seen is not None
