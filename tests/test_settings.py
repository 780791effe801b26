"""Settings come from the environment through typed helpers: a bad value stops the process at
start with the variable's name, never later as a stray ValueError."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from sparklin.settings import env_float, env_int


def test_a_number_setting_reads_the_environment_or_its_default(monkeypatch):
    monkeypatch.setenv("SPARKLIN_TEST_SECONDS", "0.25")
    assert env_float("SPARKLIN_TEST_SECONDS", 1.0) == 0.25
    monkeypatch.setenv("SPARKLIN_TEST_SECONDS", "")
    assert env_float("SPARKLIN_TEST_SECONDS", 1.5) == 1.5


@pytest.mark.parametrize("helper", [env_float, env_int])
def test_a_number_setting_that_is_not_a_number_names_the_variable(monkeypatch, helper):
    monkeypatch.setenv("GATEWAY_OPEN_TIMEOUT", "sixty")
    with pytest.raises(ImproperlyConfigured, match="GATEWAY_OPEN_TIMEOUT"):
        helper("GATEWAY_OPEN_TIMEOUT", 60)


@pytest.mark.django_db
def test_postgresql_connections_run_without_jit():
    """A fleet's month of sessions passed jit_above_cost and spent 0.56 s in LLVM before its
    first row: Sparklin's connections turn JIT off (DATABASE_JIT=true leaves the server's)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only (make test-unit runs it there)")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
