"""Notifications end to end: a card refused by a rule at a simulated 1.6 charger, through the
real gateway process, RabbitMQ and a real Celery worker, reaches the manager as an e-mail on a
local SMTP server (aiosmtpd); a whole session at another charger reaches its driver. Nothing
is sent twice when the scans run again."""

import asyncio

import pytest

from accounts.models import User
from communities.models import Role
from notifications.models import Notification
from rules import services as rules
from rules.models import Mode
from simulator.fleet import connect_charger, run_session
from sparklin.celery import app
from tests import builders

from .processes import (
    celery_worker,
    child_env,
    free_port,
    gateway,
    wait_for_port,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.community_scope("fleet")]

CARD = "E2E-NOTIFY-01"


@pytest.fixture
def fleet(e2e_env):
    community = builders.make_community(name="E2E Notify", slug="e2e-notify")
    builders.make_price(community, price="0.2500", valid_from="2020-01-01")
    manager = builders.make_member(community, Role.MANAGER).user
    manager.email, manager.language = "manager@e2e.example", User.Language.ENGLISH
    manager.save()
    driver = builders.make_member(community, Role.INDIVIDUAL).user
    driver.email, driver.language = "driver@e2e.example", User.Language.FRENCH
    driver.save()
    builders.make_card(community, holder=driver, uid=CARD, name="Driver's card")
    closed = builders.make_site(community, name="Closed car park")
    rules.set_policy(community=community, actor=manager, mode=Mode.NOBODY, site=closed)
    return {
        "community": community,
        "refusing": builders.make_charger(community, site=closed, identity="E2E-NOTIFY-REF"),
        "open": builders.make_charger(community, identity="E2E-NOTIFY-OK"),
    }


@pytest.fixture
def processes(e2e_env, smtp, fleet):
    app.conf.task_always_eager = False  # the test publishes to the broker too
    env = child_env(EMAIL_HOST="127.0.0.1", EMAIL_PORT=smtp.port, NOTIFY_THROTTLE_MINUTES=15)
    worker = celery_worker(env).start(timeout=60)
    port = free_port()
    gw = gateway(env, port).start()
    try:
        wait_for_port(port)
        yield f"ws://127.0.0.1:{port}/ocpp/"
    finally:
        gw.stop()
        worker.stop()
        print(f"--- worker ---\n{worker.output()}\n--- gateway ---\n{gw.output()}")


async def present_card(url, identity):
    async with connect_charger(url, identity, "1.6") as charger:
        await charger.boot()
        await charger.status(1, "Available")
        return await charger.authorize(CARD)


def test_refused_card_mails_the_manager_and_an_ended_session_its_driver(processes, smtp, fleet):
    status = asyncio.run(asyncio.wait_for(present_card(processes, "E2E-NOTIFY-REF"), 20))
    assert status == "Blocked"  # 1.6 has no "not at this location"
    (message,) = wait_until(lambda: smtp.to("manager@e2e.example"), timeout=60, what="e-mail")
    assert message["Subject"] == "E2E Notify: a charge was refused (outlet out of service)"
    body = message.get_body(("plain",)).get_content()
    assert "E2E-NOTIFY-REF" in body and "/c/e2e-notify/rules/" in body

    result = asyncio.run(run_session(processes, "E2E-NOTIFY-OK", "1.6", card=CARD, energy_wh=4000))
    assert result["authorization"] == "Accepted"
    (ended,) = wait_until(lambda: smtp.to("driver@e2e.example"), timeout=60, what="driver mail")
    text = ended.get_body(("plain",)).get_content()
    assert "4,000 kWh" in text and "1,00" in text  # French numbers: 4 kWh × 0.25 €

    # The scans and the dispatcher again: every fact was told once.
    app.send_task("notifications.tasks.collect")
    app.send_task("notifications.tasks.dispatch")
    wait_until(
        lambda: not Notification.objects.exclude(state="sent").exists(), what="all rows sent"
    )
    assert len(smtp.messages) == 2
    assert Notification.objects.count() == 2
