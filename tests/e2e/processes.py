"""Real processes for the end-to-end tests: a Celery worker and the OCPP gateway, started with
the environment of the test database and broker so they share its data with the test (which
must use `django_db(transaction=True)` for its rows to be visible to them); and, for the fault
tests, private servers that a test may stop and restart (a RabbitMQ node, a redis-server) — never
the machine's shared ones."""

import email
import email.policy
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from django.conf import settings
from django.db import connection

from sparklin.celery import worker_command

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
        """kill -9: no shutdown code runs (what a crash or the OOM killer does)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def output(self) -> str:
        return "\n".join(self.lines)


def celery_worker(env: dict, name: str | None = None) -> Process:
    return Process(name or "worker", worker_command(name=name), env, ready_text="ready.")


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


def _wait_port(port: int, up: bool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return True
        except OSError:
            if not up:
                return True
        time.sleep(0.1)
    return False


class PrivateRabbitMQ:
    """A RabbitMQ node of its own (node name, ports, data and logs in a temporary directory),
    for tests that stop and restart the broker. Its data survives `restart()`: durable queues
    and persistent messages must come back, as on a real broker restart. Starts in ~7 s."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="sparklin-rabbitmq-"))
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"sparklin-test-{uuid.uuid4().hex[:8]}@localhost"
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.dir / "enabled_plugins").write_text("[].\n")
        if os.geteuid() == 0:  # the server script runs the node as the rabbitmq user
            shutil.chown(self.dir, "rabbitmq", "rabbitmq")
            for path in self.dir.iterdir():
                shutil.chown(path, "rabbitmq", "rabbitmq")
        self.env = dict(
            os.environ,
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(self.dir / "feature_flags"),
            RABBITMQ_PID_FILE=str(self.dir / "pid"),
            RABBITMQ_CONF_ENV_FILE="/dev/null",  # not the machine's node settings
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, timeout: float = 40) -> "PrivateRabbitMQ":
        server = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"
        self.proc = subprocess.Popen(
            [server],
            env=self.env,
            cwd=self.dir,
            stdout=open(self.dir / "server.out", "ab"),
            stderr=subprocess.STDOUT,
        )
        if not _wait_port(self.port, up=True, timeout=timeout):
            self.stop()
            raise RuntimeError(f"private RabbitMQ did not start:\n{self.log_tail()}")
        return self

    def stop(self, timeout: float = 30) -> None:
        """A clean broker shutdown (what a restart or an upgrade does)."""
        if self.proc is None:
            return
        subprocess.run(
            ["rabbitmqctl", "-n", self.node, "stop"],
            env=self.env,
            capture_output=True,
            timeout=timeout,
        )
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None
        _wait_port(self.port, up=False, timeout=5)

    def kill(self) -> None:
        pid_file = self.dir / "pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self) -> str:
        out = self.dir / "server.out"
        return out.read_text(errors="replace")[-3000:] if out.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A redis-server of its own, without persistence: `restart()` brings it back empty."""

    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not _wait_port(self.port, up=True, timeout=10):
            raise RuntimeError("private redis-server did not start")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # no save, no goodbye: comes back empty
            self.proc.wait(5)
        self.proc = None
        _wait_port(self.port, up=False, timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()


class Inbox:
    """An aiosmtpd handler keeping what a local SMTP server accepted: (recipients, message)."""

    def __init__(self):
        self.messages = []
        self.peers = []  # the client's (host, port) of each message: one per SMTP connection

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        self.peers.append(session.peer)
        return "250 OK"

    def to(self, address):
        return [m for rcpt, m in self.messages if rcpt == [address]]
