"""The real pipeline: charger → websockets → gateway process → Redis → Celery worker process →
PostgreSQL, read back from the manager's page and the CSV export."""

import asyncio
import csv
import io
import time
from decimal import Decimal

import pytest
from django.core.management import call_command

from chargers.models import ChargingSession, Connector, normalize_card_uid
from communities.models import Role
from simulator.fleet import connect_charger, run_session
from tests import builders

from .processes import wait_until

# The test body reads the fleet's community inside its scope (the worker and the gateway are
# other processes, with their own scoping).
pytestmark = [pytest.mark.e2e, pytest.mark.community_scope("fleet")]

CARD = "E2E-CARD-01"


@pytest.fixture
def fleet(e2e_env):
    community = builders.make_community(name="E2E Résidence", slug="e2e")
    builders.make_price(community, price="0.2516", valid_from="2020-01-01")
    manager = builders.make_member(community, Role.MANAGER).user
    driver = builders.make_member(community, Role.INDIVIDUAL).user
    builders.make_card(community, holder=driver, uid=CARD, name="Driver's card")
    site = builders.make_site(community, name="Parking")
    return {
        "community": community,
        "manager": manager,
        "driver": driver,
        "c16": builders.make_charger(community, site=site, identity="E2E-16"),
        "c201": builders.make_charger(community, site=site, identity="E2E-201"),
    }


def completed(charger, transaction_id):
    return ChargingSession.objects.filter(
        charger=charger, transaction_id=transaction_id, state=ChargingSession.State.COMPLETED
    ).first()


def test_sessions_in_16_and_201_reach_the_portal_and_the_export(
    fleet, worker, gateway_process, client
):
    r16 = asyncio.run(run_session(gateway_process.url, "E2E-16", "1.6", card=CARD, energy_wh=7404))
    r201 = asyncio.run(
        run_session(gateway_process.url, "E2E-201", "2.0.1", card=CARD, energy_wh=12_345)
    )
    assert r16["authorization"] == "Accepted"

    s16 = wait_until(lambda: completed(fleet["c16"], r16["transaction_id"]), what="1.6 session")
    s201 = wait_until(
        lambda: completed(fleet["c201"], r201["transaction_id"]), what="2.0.1 session"
    )
    assert s16.energy_wh == Decimal("7404") and s16.cost == Decimal("1.86")  # 7.404 kWh × 0.2516
    assert s201.energy_wh == Decimal("12345") and s201.cost == Decimal("3.11")
    assert s16.holder == fleet["driver"] and s16.card.uid == normalize_card_uid(CARD)
    # The charger hung up: its outlet is shown not connected.
    wait_until(
        lambda: (
            not Connector.objects.filter(charger=fleet["c16"], charger__connected=True).exists()
        ),
        what="charger marked disconnected",
    )

    client.force_login(fleet["manager"])
    page = client.get("/c/e2e/sessions/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f">{r16['transaction_id']}<" in page and r201["transaction_id"][:13] in page
    assert "7.404" in page and "12.345" in page and "1.86" in page

    out = io.StringIO()
    month = s16.started_at.astimezone(fleet["community"].tz).strftime("%Y-%m")
    call_command("export_sessions", community="e2e", month=month, stdout=out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    by_tx = {row["transaction_id"]: row for row in rows}
    assert by_tx[r16["transaction_id"]]["energy_kwh"] == "7.404"
    assert by_tx[r16["transaction_id"]]["cost"] == "1.86"
    assert by_tx[r201["transaction_id"]]["charger"] == "E2E-201"
    download = client.get(f"/c/e2e/exports/sessions.csv?month={month}")
    assert download.status_code == 200
    assert b"".join(download.streaming_content).decode() == out.getvalue()


def test_worker_down_during_a_session_loses_nothing(fleet, worker, gateway_process):
    async def plug_in():
        async with connect_charger(gateway_process.url, "E2E-16", "1.6") as charger:
            await charger.boot()
            await charger.status(1, "Available")

    asyncio.run(asyncio.wait_for(plug_in(), 20))
    wait_until(lambda: Connector.objects.filter(charger=fleet["c16"]).exists(), what="outlet")

    worker.stop()
    result = asyncio.run(
        run_session(gateway_process.url, "E2E-16", "1.6", card=CARD, energy_wh=5000)
    )
    time.sleep(1.5)  # several gateway flushes: the events wait in Redis
    assert not ChargingSession.objects.filter(transaction_id=result["transaction_id"]).exists()

    worker.start(timeout=60)
    session = wait_until(
        lambda: completed(fleet["c16"], result["transaction_id"]), what="session after restart"
    )
    assert session.energy_wh == Decimal("5000") and session.cost == Decimal("1.26")
    assert ChargingSession.objects.filter(charger=fleet["c16"]).count() == 1
