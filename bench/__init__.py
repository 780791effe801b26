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


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    """Return once something listens on 127.0.0.1:`port`; raise after `timeout` seconds."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: on a machine shared with other work, the
    figure that does not depend on what else runs."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    """A process's resident memory now (Linux VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    return rss_kb(pid) / 1024


def raise_open_files(wanted: int | None = None) -> int:
    """Raise this process's open-files limit to `wanted` (default: the hard limit, which caps
    it); returns the limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else max(soft, wanted)
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_process(args: list[str], env: dict, log):
    """Start a child process (a gateway, a worker) from the project's root, its output in the
    file `log`."""
    import subprocess
    from pathlib import Path

    with Path(log).open("wb") as out:
        return subprocess.Popen(
            args, cwd=Path(__file__).resolve().parent.parent, env=env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
