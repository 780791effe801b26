import pytest
import redis
from django.conf import settings

from .processes import celery_worker, child_env, free_port, gateway, wait_for_port


# Every module here marks itself `pytestmark = pytest.mark.e2e` (or `browser`), so the fast
# suite (`-m "not e2e and not browser"`) never starts a process.


@pytest.fixture
def e2e_env(transactional_db):
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"] or not settings.REDIS_URL:
        pytest.fail("End-to-end tests need DATABASE_URL (PostgreSQL) and REDIS_URL: `make test-e2e`")
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()  # the test Redis database: queues and registry start empty
    yield child_env()
    client.flushdb()


@pytest.fixture
def worker(e2e_env):
    process = celery_worker(e2e_env).start(timeout=60)
    yield process
    process.stop()


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
