"""Fault tests with real processes (issue 7): the gateway, a Celery worker, RabbitMQ and
PostgreSQL under simulated traffic while one piece fails. Each ends with every message the
chargers got an answer for recorded once: sessions with their start, price and energy, every
answered meter sample a row.

Servers that a test restarts are private to it (a RabbitMQ node, a redis-server, on free ports);
the database fault is `pg_terminate_backend` on the test database's own backends."""

import time

import pytest

from . import processes
from .faults import Traffic, assert_all_recorded, make_fleet, terminate_backends
from .processes import PrivateRabbitMQ, PrivateRedis, celery_worker, free_port, gateway

pytestmark = pytest.mark.e2e


class Stack:
    """A gateway and a worker started with one environment, stopped (output printed, so a
    failing test shows it) at the end."""

    def __init__(self, env: dict):
        self.env = env
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ocpp/"
        self.worker = celery_worker(env)
        self.gateway = gateway(env, self.port)

    def start(self) -> "Stack":
        self.worker.start(timeout=60)
        self.start_gateway()
        return self

    def start_gateway(self) -> None:
        self.gateway.start()
        processes.wait_for_port(self.port)

    def stop(self) -> None:
        for process in (self.gateway, self.worker):
            process.stop()
        print(f"--- gateway output ---\n{self.gateway.output()}")
        print(f"--- worker output ---\n{self.worker.output()}")


@pytest.fixture
def stack_for(e2e_env):
    started = []

    def make(**extra):
        stack = Stack({**e2e_env, **{k: str(v) for k, v in extra.items()}}).start()
        started.append(stack)
        return stack

    yield make
    for stack in started:
        stack.stop()


@pytest.fixture
def rabbitmq():
    node = PrivateRabbitMQ()
    try:
        node.start()
    except RuntimeError as exc:
        node.cleanup()
        pytest.fail(f"a private RabbitMQ node could not be started: {exc}")
    yield node
    print(f"--- private RabbitMQ ---\n{node.log_tail()[-1500:]}")
    node.cleanup()


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.stop()


def test_database_backends_terminated_under_traffic(stack_for):
    stack = stack_for()
    fleet = make_fleet(10, "PGT")
    traffic = Traffic(stack.url, fleet, duration=10).start()
    terminated = 0
    for _ in range(3):
        time.sleep(2.5)
        terminated += terminate_backends()
    chargers = traffic.join()
    assert terminated >= 3  # the worker's and the gateway's connections were cut each time
    assert_all_recorded(chargers)
    # The worker stayed up: the same process applies new work after the faults.
    assert stack.worker.proc.poll() is None and stack.gateway.proc.poll() is None


def test_broker_restarted_with_work_queued_and_under_traffic(stack_for, rabbitmq):
    """First with the worker stopped, so that tasks wait in the queue across the restart
    (durable queue, persistent messages); then with the worker running, which reconnects."""
    stack = stack_for(CELERY_BROKER_URL=rabbitmq.url)
    fleet = make_fleet(10, "MQR")
    traffic = Traffic(stack.url, fleet, duration=24, interval=0.4).start()
    time.sleep(2)
    stack.worker.stop()
    time.sleep(2)
    rabbitmq.restart()  # the gateway keeps its events meanwhile and publishes them after
    stack.worker.start(timeout=60)
    time.sleep(2)
    rabbitmq.restart()  # now the running worker loses its connection
    chargers = traffic.join()
    assert_all_recorded(chargers)
    assert stack.gateway.proc.poll() is None and stack.worker.proc.poll() is None
    assert "Publishing gateway events works again" in stack.gateway.output()
    worker_log = stack.worker.output()
    assert "Connection to broker lost" in worker_log or "Cannot connect" in worker_log


def test_redis_restarted_empty_under_traffic(stack_for, private_redis):
    stack = stack_for(REDIS_URL=private_redis.url)
    fleet = make_fleet(10, "RDR")
    traffic = Traffic(stack.url, fleet, duration=8).start()
    time.sleep(2)
    private_redis.restart()
    time.sleep(3)
    private_redis.restart()
    chargers = traffic.join()
    assert_all_recorded(chargers)
    assert stack.gateway.proc.poll() is None and stack.worker.proc.poll() is None


def test_worker_killed_under_load(stack_for):
    stack = stack_for()
    fleet = make_fleet(16, "WKL")
    traffic = Traffic(stack.url, fleet, duration=8, interval=0.2).start()
    time.sleep(3)
    stack.worker.kill()  # kill -9 mid-task: its unacknowledged tasks go back to the queue
    stack.worker.start(timeout=60)
    chargers = traffic.join()
    assert_all_recorded(chargers)


def test_gateway_killed_right_after_answering_starts(stack_for):
    """25 chargers start a transaction at once; the gateway is killed -9 the moment the last
    answer arrives. Each answered start must be a session with its start time and price; after
    a new gateway starts, the chargers finish their sessions and the energy is right."""
    import asyncio

    from bench.lag import LeanCharger, now_ms

    from .faults import CARD, assert_all_recorded

    stack = stack_for()
    fleet = make_fleet(25, "GWK")
    chargers = [LeanCharger(stack.url, identity, version, timeout=8) for identity, version in fleet]

    async def scenario():
        for charger in chargers:
            await charger.connect()
        await asyncio.gather(*(c.boot() for c in chargers))
        await asyncio.sleep(1)  # boots settled; now the burst the gateway must not lose
        transactions = await asyncio.gather(*(c.start(CARD, sent=now_ms()) for c in chargers))
        stack.gateway.kill()  # right after the answers: nothing of the process may be needed
        for charger in chargers:
            await charger.close()
        assert len(transactions) == 25

        await asyncio.to_thread(stack.start_gateway)
        for charger, tx in zip(chargers, transactions, strict=True):
            await charger.connect()
            await charger.boot()
            charger.register_wh += 1500
            await charger.meter(tx, sent=now_ms())
            charger.register_wh += 1500
            await charger.stop(tx, CARD, sent=now_ms())
            await charger.close()

    asyncio.run(scenario())
    assert_all_recorded(chargers, timeout=60)


def test_worker_reconnects_after_its_database_backend_is_terminated(e2e_env, worker):
    """The worker's half of 'reconnect everywhere', without the gateway: tasks published
    straight to the broker; the worker's backend is terminated between and during them."""
    from django.utils import timezone

    from chargers.models import Charger
    from ocpp_gateway.batcher import Publisher
    from sparklin.celery import app

    from .processes import wait_until

    community = builders_community()
    charger = Charger.objects.with_scopes_disabled().get(identity=community)
    app.conf.task_always_eager = False
    publisher = Publisher(timeout=5)

    def boot(firmware):
        publisher(
            [
                {
                    "identity": charger.identity,
                    "kind": "boot",
                    "payload": {
                        "vendor": "Sparklin",
                        "model": "Lean",
                        "serial": "",
                        "firmware": firmware,
                        "ocpp_version": "1.6",
                        "heartbeat_interval": 300,
                    },
                    "received_at": timezone.now().isoformat(),
                }
            ]
        )

    def firmware_is(value):
        return lambda: (
            Charger.objects.with_scopes_disabled().get(pk=charger.pk).firmware_version == value
        )

    try:
        boot("1.0")
        wait_until(firmware_is("1.0"), timeout=30, what="first task applied")
        for n in range(3):
            assert terminate_backends() >= 1  # the worker's idle, reused connection
            boot(f"2.{n}")
            wait_until(firmware_is(f"2.{n}"), timeout=30, what="task after the termination")
    finally:
        publisher.close()
        app.conf.task_always_eager = True
    assert worker.proc.poll() is None
    assert "Database connection 'default' was lost" in worker.output()


def builders_community() -> str:
    from django_scopes import scope

    from tests import builders

    community = builders.make_community(name="Worker DB", slug="worker-db")
    with scope(community=community):
        site = builders.make_site(community)
        return builders.make_charger(community, site=site, identity="WDB-1").identity


@pytest.mark.slow
def test_soak_sixty_chargers_through_worker_kills_and_broker_restarts(stack_for, rabbitmq):
    """`make test-slow`: two minutes of a larger fleet while the worker is killed -9 twice and
    the broker restarted twice, interleaved."""
    stack = stack_for(CELERY_BROKER_URL=rabbitmq.url)
    fleet = make_fleet(60, "SOAK")
    traffic = Traffic(stack.url, fleet, duration=120, interval=1.0).start()
    for fault in ("worker", "broker", "worker", "broker"):
        time.sleep(20)
        if fault == "worker":
            stack.worker.kill()
            stack.worker.start(timeout=60)
        else:
            rabbitmq.restart()
    chargers = traffic.join(timeout=400)
    assert_all_recorded(chargers, timeout=300, stall=60)
    assert traffic.answered_samples > 1000
