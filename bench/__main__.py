"""`python -m bench [--drivers N] [--sessions M] [--workers W] [--keep]`: the month-end run at
scale. One month of expense notes for N drivers with M sessions each is issued, rendered and
e-mailed by W real `celery worker` processes (default 2) over the broker of the environment
(`CELERY_BROKER_URL`, else `REDIS_URL`), to a local aiosmtpd server started here. Prints the wall
time until every e-mail was accepted (notes/s), when the rows were issued and the last PDF
stored, and the peak memory of each worker. Not a timed test: numbers for the README and the
architecture page.

It needs PostgreSQL (DATABASE_URL): it creates its own database `<name>_notes_bench` next to
the one named there, migrates it and drops it afterwards (`--keep` keeps it)."""

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from urllib.parse import urlsplit

from bench import cpu_seconds, free_port, prepare_database
from sparklin.celery import worker_command

YEAR, MONTH = 2025, 10
ROOT = Path(__file__).resolve().parent.parent


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _peak_rss_mb(pid: int) -> float:
    """The high-water mark of a process's resident memory (Linux VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _seed(drivers: int, sessions: int):
    from django_scopes import scopes_disabled

    from accounts.models import User
    from billing.models import Price
    from chargers.models import Charger, ChargingSession, Connector
    from communities.models import Community, Membership, Role, Site

    with scopes_disabled():  # the bench builds a whole tenant, like a fixture
        community = Community.objects.create(
            name="Bench Company",
            slug="bench",
            address="1 rue du Banc\n75001 Paris",
            expense_email="finance@bench.example",
        )
        Price.objects.create(community=community, valid_from="2020-01-01", price_per_kwh="0.2516")
        Price.objects.create(community=community, valid_from="2025-10-15", price_per_kwh="0.3120")
        site = Site.objects.create(community=community, name="Parking")
        chargers = [
            Charger.objects.create(community=community, site=site, identity=f"BENCH-{i:03d}")
            for i in range(20)
        ]
        connectors = [
            Connector.objects.create(community=community, charger=c, connector_id=1)
            for c in chargers
        ]
        users = User.objects.bulk_create(
            [
                User(
                    phone=f"+3361{n:07d}",
                    first_name=f"Driver{n}",
                    last_name="Bench",
                    email=f"driver{n}@bench.example",
                    password="!",
                )
                for n in range(drivers)
            ],
            batch_size=1000,
        )
        Membership.objects.bulk_create(
            [Membership(community=community, user=u, role=Role.INDIVIDUAL) for u in users],
            batch_size=1000,
        )
        tz = community.tz
        rows = []
        for n, user in enumerate(users):
            for s in range(sessions):
                day = 1 + s % 31
                start = datetime(YEAR, MONTH, day, 7 + (s * 5 + n) % 14, (n * 7) % 60, tzinfo=tz)
                energy = Decimal(2000 + (n * 37 + s * 911) % 30000)
                price = Decimal("0.2516") if day < 15 else Decimal("0.3120")
                connector = connectors[(n + s) % len(connectors)]
                rows.append(
                    ChargingSession(
                        community=community,
                        charger_id=connector.charger_id,
                        connector=connector,
                        transaction_id=f"{n}-{s}",
                        holder=user,
                        state=ChargingSession.State.COMPLETED,
                        started_at=start,
                        stopped_at=start + timedelta(minutes=30 + (n + s) % 300),
                        meter_start_wh=Decimal(0),
                        meter_stop_wh=energy,
                        energy_wh=energy,
                        price_per_kwh=price,
                        cost=(energy / 1000 * price).quantize(Decimal("0.01"), ROUND_HALF_UP),
                    )
                )
        ChargingSession.objects.bulk_create(rows, batch_size=2000)
    return community


class Inbox:
    """Counts what the local SMTP server accepted (messages per recipient, bytes)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_recipient: dict[str, int] = {}
        self.bytes = 0
        self.last_at = 0.0

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            for to in envelope.rcpt_tos:
                self.by_recipient[to] = self.by_recipient.get(to, 0) + 1
            self.bytes += len(envelope.content)
            self.last_at = time.perf_counter()
        return "250 OK"

    def count(self, predicate=lambda to: True) -> int:
        with self.lock:
            return sum(n for to, n in self.by_recipient.items() if predicate(to))


class Worker:
    """A real `celery worker` process (solo pool: one process, one task at a time)."""

    def __init__(self, name: str, env: dict):
        self.name = name
        self.lines: deque[str] = deque(maxlen=200)
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            worker_command(name=name),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "ready." in line:
                self.ready.set()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _database_backends() -> dict[int, float]:
    """pid → CPU seconds so far of every PostgreSQL backend of the bench database but this
    process's own (it only polls): the workers' connections, on this machine."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [pid for (pid,) in cursor.fetchall()]
    cpu = {}
    for pid in pids:
        try:
            cpu[pid] = cpu_seconds(pid)
        except OSError:  # ended meanwhile, or a server on another machine
            pass
    return cpu


class BenchTimeout(Exception):
    pass


def _wait(predicate, deadline: float, what: str, workers) -> float:
    while not predicate():
        if time.perf_counter() > deadline:
            raise BenchTimeout(what)
        for w in workers:
            if w.proc.poll() is not None:
                raise SystemExit(f"{w.name} exited.\n" + "\n".join(w.lines))
        time.sleep(0.1)
    return time.perf_counter()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--drivers", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=30, help="sessions per driver")
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes")
    parser.add_argument("--timeout", type=float, default=900, help="give up after (s)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)

    url = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
    if not url.startswith("postgres") or not broker:
        parser.error(
            "needs DATABASE_URL (PostgreSQL) and a broker (CELERY_BROKER_URL or REDIS_URL)"
        )
    name = urlsplit(url).path.lstrip("/") or "sparklin"
    database, cleanup = prepare_database(f"{name}_notes_bench", keep=args.keep)
    media = tempfile.mkdtemp(prefix="sparklin-bench-media-")
    os.environ["MEDIA_ROOT"] = media
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    from aiosmtpd.controller import Controller

    inbox = Inbox()
    smtp_port = free_port()  # aiosmtpd cannot bind port 0
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port, data_size_limit=None)
    workers: list[Worker] = []
    smtp_started = False
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django_scopes import scope

        from billing import issuing
        from billing.models import ExpenseNote, ExpenseRun, NoteDispatch
        from billing.tasks import run_month
        from sparklin.celery import app

        call_command("migrate", verbosity=0)
        t0 = time.perf_counter()
        community = _seed(args.drivers, args.sessions)
        seeded = time.perf_counter() - t0
        smtp.start()
        smtp_started = True
        app.control.purge()  # nothing left over from an earlier, interrupted run
        env = dict(
            os.environ,
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=str(smtp_port),
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="WARNING",
        )
        workers = [Worker(f"bench{i + 1}", env) for i in range(args.workers)]
        for w in workers:
            if not w.ready.wait(90):
                raise SystemExit(f"{w.name} did not start:\n" + "\n".join(w.lines))
        from billing.pdf import subsets_fonts_with_harfbuzz

        if not subsets_fonts_with_harfbuzz():
            print(
                "WARNING: libharfbuzz-subset0 is missing: WeasyPrint subsets fonts with fontTools,"
                " ~0.3 s more CPU per note (scripts/install-system-deps installs it)",
                flush=True,
            )
        print(
            f"{YEAR}-{MONTH:02d}: {args.drivers} drivers x {args.sessions} sessions on {database}"
            f" (seeded in {seeded:.1f} s), {args.workers} workers, broker "
            f"{urlsplit(broker).scheme}…",
            flush=True,
        )

        with scope(community=community):
            runs = ExpenseRun.objects.filter(year=YEAR, month=MONTH, generated_at__isnull=False)
            notes = ExpenseNote.objects.filter(year=YEAR, month=MONTH)
            unsent = NoteDispatch.objects.exclude(status=NoteDispatch.Status.SENT)
            deadline = time.perf_counter() + args.timeout
            cpu_before = sum(cpu_seconds(w.proc.pid) for w in workers)
            db_before = _database_backends()
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            run_month.delay(community=community.pk, year=YEAR, month=MONTH, send=True)
            issued = _wait(runs.exists, deadline, "the month to be issued", workers)
            total = notes.count()
            try:
                rendered = _wait(
                    lambda: not notes.filter(pdf="").exists(), deadline, "every PDF", workers
                )
                driver_mails = _wait(
                    lambda: inbox.count(lambda to: to != community.expense_email) >= total,
                    deadline,
                    "every driver's e-mail",
                    workers,
                )
                finance_mail = _wait(  # every part of it (EXPENSE_NOTES_FINANCE_PART_MB)
                    lambda: (
                        inbox.count(lambda to: to == community.expense_email) >= 1
                        and not unsent.filter(kind=NoteDispatch.Kind.FINANCE).exists()
                    ),
                    deadline,
                    "the finance e-mail",
                    workers,
                )
                done = _wait(
                    lambda: not unsent.exists(), deadline, "every dispatch marked", workers
                )
            except BenchTimeout as e:
                # A machine busy with other work: report how far it got, and what it cost.
                cpu = sum(cpu_seconds(w.proc.pid) for w in workers) - cpu_before
                stored = notes.exclude(pdf="").count()
                print(
                    f"TIMED OUT after {time.perf_counter() - start:.0f} s waiting for {e}: "
                    f"{stored}/{total} PDFs stored, {inbox.count()} e-mails accepted; worker "
                    f"CPU {cpu:.1f} s ({cpu / max(stored, 1) * 1000:.0f} ms per stored note); "
                    f"load average {os.getloadavg()[0]:.1f}"
                )
                return 1
            elapsed = done - start
            cpu = sum(cpu_seconds(w.proc.pid) for w in workers) - cpu_before
            # Backends that ended during the run are missed: a lower bound.
            db_cpu = sum(t - db_before.get(pid, 0.0) for pid, t in _database_backends().items())
            load_after = os.getloadavg()[0]
            failed = NoteDispatch.objects.filter(status=NoteDispatch.Status.FAILED).count()
            peaks = [_peak_rss_mb(w.proc.pid) for w in workers]
            mails = inbox.count()
            mail_bytes = inbox.bytes
            pdf_bytes = sum(
                os.path.getsize(os.path.join(root, f))
                for root, _dirs, files in os.walk(media)
                for f in files
            )
            t1 = time.perf_counter()
            again = issuing.generate_month(community=community, year=YEAR, month=MONTH)
            rerun = time.perf_counter() - t1
    finally:
        for w in workers:
            w.stop()
        if smtp_started:
            smtp.stop()
        shutil.rmtree(media, ignore_errors=True)
        cleanup()

    print(
        f"machine          : {platform.node()} · {os.cpu_count()} CPUs · Python "
        f"{platform.python_version()} · {platform.platform()}"
    )
    print(
        f"notes issued     : {total} ({args.drivers * args.sessions} sessions), "
        f"{pdf_bytes / 1e6:.1f} MB of PDF; {mails} e-mails accepted ({mail_bytes / 1e6:.1f} MB), "
        f"{failed} failed"
    )
    print(
        f"wall time        : {elapsed:.1f} s for issue + render + e-mail "
        f"({total / elapsed:.1f} notes/s, {elapsed / max(total, 1) * 1000 * args.workers:.0f} ms "
        f"per note per worker)"
    )
    print(
        f"worker CPU       : {cpu:.1f} s in all, {cpu / max(total, 1) * 1000:.0f} ms per note "
        f"(with {args.workers} cores to themselves: ~{cpu / args.workers:.0f} s wall); "
        f"load average {load_before:.1f} before, {load_after:.1f} after"
    )
    print(
        f"PostgreSQL CPU   : {db_cpu:.1f} s, {db_cpu / max(total, 1) * 1000:.0f} ms per note (the "
        f"workers' backends); workers + PostgreSQL {(cpu + db_cpu) / max(total, 1) * 1000:.0f} ms "
        f"per note: ~{(cpu + db_cpu) / 2:.0f} s wall on two free cores"
    )
    print(
        f"milestones       : rows issued after {issued - start:.1f} s, last PDF stored "
        f"after {rendered - start:.1f} s, last driver e-mail after {driver_mails - start:.1f} s, "
        f"finance e-mail after {finance_mail - start:.1f} s"
    )
    print(
        "peak memory (RSS): "
        + ", ".join(f"worker {i + 1} {p:.0f} MB" for i, p in enumerate(peaks))
        + f"; this process {_maxrss_mb():.0f} MB"
    )
    print(
        f"re-run (nothing changed): {rerun:.1f} s, {len(again.created)} new, "
        f"{again.unchanged} unchanged"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
