"""`python manage.py run_periodic [--skip TASK] [--once]`: Celery beat for the embedded mode.

With no broker (the demo: SQLite, `CELERY_TASK_ALWAYS_EAGER`) there is no beat to publish to,
so the product's periodic work — the notification scan and dispatch, local lists and offline
behaviour, limits of use, the offline sweep, purges — would never run. This process runs the
same schedule, `CELERY_BEAT_SCHEDULE` (the one home of what runs when), in-process: each task
when its schedule says it is due (as beat, the first run one interval after the start), one at
a time. Quiet: nothing is printed for a task that ran; a task that fails is one warning line
(the next run tries again). With a broker, use `celery -A sparklin beat`: this refuses."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery.schedules import BaseSchedule, maybe_schedule
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection

from sparklin.celery import app

logger = logging.getLogger(__name__)

MAX_SLEEP = 30.0  # seconds between looks at the schedule, at most


class Command(BaseCommand):
    help = "Run the periodic tasks of CELERY_BEAT_SCHEDULE in-process (embedded mode, no broker)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--skip",
            action="append",
            default=[],
            metavar="TASK",
            help="a task name (e.g. billing.tasks.check_months) not to run; repeatable",
        )
        parser.add_argument(
            "--once", action="store_true", help="run every entry once, now, and exit"
        )

    def handle(self, *args: Any, skip: list[str], once: bool, **options: Any) -> None:
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            raise CommandError(
                "Tasks go to a broker here: run `celery -A sparklin beat` (and a worker) instead."
            )
        app.loader.import_default_modules()  # every app's tasks registered
        schedule: dict[str, dict[str, Any]] = settings.CELERY_BEAT_SCHEDULE
        unknown = sorted({str(e["task"]) for e in schedule.values()} - set(app.tasks))
        if unknown:
            raise CommandError(f"Scheduled tasks not found: {', '.join(unknown)}")
        entries = {name: entry for name, entry in schedule.items() if entry["task"] not in skip}
        if once:
            for name, entry in entries.items():
                run_entry(name, entry)
            return
        schedules: dict[str, BaseSchedule] = {}
        for name, entry in entries.items():
            when = maybe_schedule(entry["schedule"], app=app)
            assert isinstance(when, BaseSchedule)  # a number becomes a `schedule`
            schedules[name] = when
        started = app.now()
        last_run: dict[str, datetime] = {name: started for name in entries}
        logger.info("Periodic tasks in-process: %s", ", ".join(sorted(entries)))
        try:
            while True:
                wake = MAX_SLEEP
                for name, entry in entries.items():
                    due, next_in = schedules[name].is_due(last_run[name])
                    if due:
                        last_run[name] = app.now()
                        run_entry(name, entry)
                    wake = min(wake, next_in)
                time.sleep(max(wake, 0.2))
        except KeyboardInterrupt:
            pass


def run_entry(name: str, entry: dict[str, Any]) -> bool:
    """Run one schedule entry's task now, in this process; False (and one warning) if it
    failed. A long-lived process: connections the database dropped are replaced first."""
    _replace_dropped_connections()
    try:
        result = app.tasks[entry["task"]].apply(
            args=entry.get("args", ()), kwargs=entry.get("kwargs", {}), throw=True
        )
        result.get(propagate=True)
    except Exception as exc:  # one line: the next run tries again
        logger.warning("Periodic task %s (%s) failed: %r", name, entry["task"], exc)
        return False
    finally:
        _replace_dropped_connections()
    return True


def _replace_dropped_connections() -> None:
    # Not inside a transaction (a caller's, a test's): that connection is not ours to close.
    if not connection.in_atomic_block:
        close_old_connections()
