"""Real processes for the end-to-end tests: a Celery worker and the OCPP gateway, started with
the environment of the test database so they share its data with the test (which must use
`django_db(transaction=True)` for its rows to be visible to them)."""

import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra) -> dict:
    """The environment of a child process: the test database (pytest-django renamed it to
    test_…), the test Redis, tasks through Redis."""
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=(
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        REDIS_URL=settings.REDIS_URL,
        CELERY_TASK_ALWAYS_EAGER="false",
        DJANGO_SETTINGS_MODULE="sparklin.settings",
        GATEWAY_EVENT_FLUSH_SECONDS="0.2",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Process:
    """A child process whose output is kept (last lines) for failure messages."""

    def __init__(self, name: str, args: list[str], env: dict, ready_text: str | None = None):
        self.name, self.args, self.env, self.ready_text = name, args, env, ready_text
        self.lines: deque[str] = deque(maxlen=400)
        self.proc: subprocess.Popen | None = None
        self._ready = threading.Event()

    def start(self, timeout: float = 30) -> "Process":
        self._ready.clear()
        self.proc = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if self.ready_text and not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"{self.name} did not become ready:\n{self.output()}")
        return self

    def _read(self):
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if self.ready_text and self.ready_text in line:
                self._ready.set()

    def stop(self, timeout: float = 15):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def output(self) -> str:
        return "\n".join(self.lines)


def celery_worker(env: dict) -> Process:
    return Process(
        "worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "sparklin",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
        ready_text="ready.",
    )


def gateway(env: dict, port: int) -> Process:
    return Process(
        "gateway",
        [sys.executable, "manage.py", "run_gateway", "--host", "127.0.0.1", "--port", str(port)],
        env,
    )


def wait_for_port(port: int, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_until(predicate, timeout: float = 30, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
