"""Benchmarks: `python -m bench` (expense notes), `python -m bench.gateway` (the OCPP gateway),
`python -m bench.worker` (gateway events applied per second by one worker process).
Not timed tests: they print numbers for the README and docs/architecture.md."""

import os
import shutil
import tempfile
from urllib.parse import urlsplit, urlunsplit


def _admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def prepare_database(name: str, keep: bool = False):
    """Point DATABASE_URL at a fresh database `name` (PostgreSQL when DATABASE_URL names one,
    else a temporary SQLite file); return (description, cleanup function)."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        parts = urlsplit(url)
        bench_url = urlunsplit(parts._replace(path=f"/{name}"))
        admin_url = urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))
        _admin(admin_url, f"DROP DATABASE IF EXISTS {name}")
        _admin(admin_url, f"CREATE DATABASE {name}")
        os.environ["DATABASE_URL"] = bench_url

        def cleanup():
            from django.db import connections

            connections.close_all()
            if not keep:
                _admin(admin_url, f"DROP DATABASE IF EXISTS {name}")

        return f"PostgreSQL ({name})", cleanup
    folder = tempfile.mkdtemp(prefix="sparklin-bench-db-")
    os.environ.pop("DATABASE_URL", None)
    os.environ["SQLITE_PATH"] = os.path.join(folder, "bench.sqlite3")
    return "SQLite (temporary file)", lambda: shutil.rmtree(folder, ignore_errors=True)
