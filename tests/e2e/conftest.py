import pytest
import redis
from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connections

from .processes import Inbox, celery_worker, child_env, free_port, gateway, wait_for_port

# Every module here marks itself `pytestmark = pytest.mark.e2e` (or `browser`), so the fast
# suite (`-m "not e2e and not browser"`) never starts a process.


def purge_broker(url: str) -> None:
    """Empty the task queue of the test broker (vhost): a previous run's leftovers must not
    reach this test's worker."""
    from sparklin.celery import app

    with app.connection_for_write(url) as conn:
        queue = app.amqp.queues[app.conf.task_default_queue]
        queue.bind(conn.default_channel).declare()
        queue.bind(conn.default_channel).purge()


@pytest.fixture
def e2e_env(transactional_db):
    if (
        "postgresql" not in settings.DATABASES["default"]["ENGINE"]
        or not settings.REDIS_URL
        or not settings.BROKER_IS_AMQP
    ):
        pytest.fail(
            "End-to-end tests need DATABASE_URL (PostgreSQL), REDIS_URL and CELERY_BROKER_URL "
            "(RabbitMQ): `make test-e2e`"
        )
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()  # the test Redis database: registry and caches start empty
    purge_broker(settings.CELERY_BROKER_URL)
    yield child_env()
    client.flushdb()
    purge_broker(settings.CELERY_BROKER_URL)


@pytest.fixture
def worker(e2e_env):
    process = celery_worker(e2e_env).start(timeout=60)
    yield process
    process.stop()
    print(f"--- worker output ---\n{process.output()}")  # shown by pytest when a test fails


@pytest.fixture
def gateway_process(e2e_env):
    port = free_port()
    process = gateway(e2e_env, port).start()
    try:
        wait_for_port(port)
    except RuntimeError:
        process.stop()
        raise RuntimeError(process.output())
    process.url = f"ws://127.0.0.1:{port}/ocpp/"
    yield process
    process.stop()
    print(f"--- gateway output ---\n{process.output()}")


@pytest.fixture
def browser_page():
    """A Playwright page in Debian's Chromium (never a downloaded browser)."""
    import shutil

    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if not executable:
        pytest.fail("Debian's chromium is needed for browser tests: make system-deps installs it")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        context = browser.new_context(locale="en-GB")
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        # ORM calls made while Playwright's loop runs get their own connections (Django keys
        # connections by async context): close them, or the test database cannot be dropped.
        connections.close_all()
        context.close()
        browser.close()


@pytest.fixture
def smtp():
    """A local SMTP server (aiosmtpd) on a free port; the fixture is its Inbox (`.port` set)."""
    inbox = Inbox()
    port = free_port()  # aiosmtpd cannot bind port 0: an explicit free port
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.port = port
    yield inbox
    controller.stop()
