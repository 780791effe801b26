"""The month-end benchmark (`python -m bench`) counts PostgreSQL's CPU beside the workers':
on this machine both share the same two cores."""

import psycopg
import pytest
from django.db import connection


@pytest.mark.django_db
def test_the_bench_measures_the_cpu_of_the_other_backends_of_its_database():
    from bench.__main__ import _database_backends

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (own,) = cursor.fetchone()
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as worker:  # a worker's connection
        (pid,) = worker.execute("SELECT pg_backend_pid()").fetchone()
        worker.execute("SELECT count(*) FROM generate_series(1, 2000000)").fetchone()
        backends = _database_backends()
    assert pid in backends and own not in backends
    assert backends[pid] > 0


def test_whether_fonts_are_subset_by_harfbuzz_is_known(monkeypatch):
    """The bench warns when `libharfbuzz-subset0` is missing (fontTools: ~0.3 s more a note)."""
    from weasyprint.text import ffi

    from billing.pdf import subsets_fonts_with_harfbuzz

    assert subsets_fonts_with_harfbuzz() is (ffi.harfbuzz_subset is not None)
    monkeypatch.setattr(ffi, "harfbuzz_subset", None)
    assert subsets_fonts_with_harfbuzz() is False
