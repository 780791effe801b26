"""The Celery application: broker and behaviour come from Django settings (`CELERY_*`).

Database connections in the worker: Celery's Django fixup closes every connection around every
task unless `CELERY_DB_REUSE_MAX` is set, which costs a new PostgreSQL connection per task. We
set it (settings) and instead, around each task, do what Django does around each request: drop
a connection that failed or outlived `CONN_MAX_AGE`, and check a reused one before the task
(CONN_HEALTH_CHECKS' `SELECT 1`). So a database restart or a terminated backend costs at most
the task that was running (retried, as a transient error), is logged, and the worker is never
restarted for it.
"""

import logging
import os
import re
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")

logger = logging.getLogger("sparklin.worker")

_LONG_DIGITS = re.compile(r"[0-9]{19}")
# Bytes bodies: every digit made a NUL byte (which JSON text never holds raw), then a run of 19
# looked for as a plain substring: 6 µs for a 7 KB message of 10 events where the regular
# expression took 67 (it tries a match at every digit), four times orjson's own decoding.
_DIGITS_TO_NUL = bytes.maketrans(b"0123456789", b"\0" * 10)
_NUL_RUN = b"\0" * 19


def json_loads(data: Any) -> Any:
    """kombu's JSON decoder (`kombu.utils.json.loads`), as fast as orjson. kombu's calls a
    Python `object_hook` for every object decoded, to revive the values its encoder tagged
    (`{"__type__": "datetime", "__value__": …}`): for the worker's event messages, one call per
    event, payload and sample — 7 % of a busy worker's time. A body that cannot hold such a
    tag (no `__type__`, no `\\u` escape that could spell it) decodes to the same values
    without the hook; anything else goes to kombu's decoder, as do bodies with a run of 19
    digits (orjson reads an integer beyond 64 bits as a float, the json module exactly) and
    what orjson refuses (NaN)."""
    import orjson
    from kombu.utils import json as kombu_json

    if isinstance(data, memoryview):
        data = data.tobytes()
    if isinstance(data, str):
        tagged = "__type__" in data or "\\u" in data or _LONG_DIGITS.search(data) is not None
    else:
        tagged = b"__type__" in data or b"\\u" in data or _NUL_RUN in data.translate(_DIGITS_TO_NUL)
    if not tagged:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return kombu_json.loads(data)


def _register_json() -> None:
    """Decode `application/json` messages with `json_loads`; encoding stays kombu's."""
    from kombu.serialization import register
    from kombu.utils import json as kombu_json

    register(
        "json",
        kombu_json.dumps,
        json_loads,
        content_type="application/json",
        content_encoding="utf-8",
    )


_register_json()
app = Celery("sparklin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _worker_task(sender: Any) -> bool:
    # Not in eager mode: there the caller (a web request, the embedded gateway) owns the
    # connection and its transaction.
    return not (sender is not None and getattr(sender.request, "is_eager", False))


@signals.task_prerun.connect
def check_database_connections(sender: Any = None, **kwargs: Any) -> None:
    """Before a task: a reused connection that the server closed meanwhile (restart,
    fail-over, pg_terminate_backend) is replaced now, and the log says so, instead of failing
    the task. One `SELECT 1` per task: Django's CONN_HEALTH_CHECKS, done here explicitly."""
    if not _worker_task(sender):
        return
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()  # failed earlier, or older than CONN_MAX_AGE
        if conn.connection is None:
            continue
        if conn.is_usable():
            # Checked just now: Django skips its own check for this request cycle.
            conn.health_check_done = True  # type: ignore[attr-defined]
        else:
            logger.warning(
                "Database connection %r was lost (server restart or terminated backend); "
                "reconnecting",
                conn.alias,
            )
            conn.close()


@signals.task_postrun.connect
def release_broken_database_connections(sender: Any = None, **kwargs: Any) -> None:
    """After a task: drop a connection that failed during it (the task is retried)."""
    if not _worker_task(sender):
        return
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        failed = conn.connection is not None and conn.errors_occurred
        conn.close_if_unusable_or_obsolete()
        if failed and conn.connection is None:
            logger.warning(
                "Database connection %r failed during a task; the next task opens a new one",
                conn.alias,
            )


def worker_command(
    *, name: str | None = None, loglevel: str = "INFO", queue: str | None = None
) -> list[str]:
    """The command line of one solo worker process, as the end-to-end tests and the benchmarks
    start it: no heartbeat, gossip or mingle (a single known worker needs none of them)."""
    import sys

    command = [
        sys.executable, "-m", "celery", "-A", "sparklin", "worker", "--pool", "solo",
        "--loglevel", loglevel, "--without-heartbeat", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if name:
        command += ["--hostname", f"{name}@%h"]
    if queue:
        command += ["--queues", queue]
    return command
