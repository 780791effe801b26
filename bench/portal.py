"""`python -m bench.portal [--runs N] [--sessions M] [--chargers C] [--keep] [--reuse]
[--pages a,b]`: the portal's pages at fleet scale.

Builds (`bench/portal_data.py`, set-based, about a minute) one community with 10,000 chargers
and 1,000,000 sessions in its own PostgreSQL database `<name>_portal_bench` next to the one
DATABASE_URL names, then requests each page N times as its manager through Django's test
client (the whole middleware stack, no network) and prints, per page, p50/p95 of the wall
time, the CPU per request (this process, i.e. Django, and the PostgreSQL backend serving it:
the fairer figure on a shared machine), the number of SQL queries and the response size; the
sessions CSV of one month also with the time until its first session row arrived (the header
comes at once; a download is judged on that, the goal for a page, since its whole length grows
with the month) and the Python memory it allocated at its peak (tracemalloc, one extra run). `--keep` keeps the database, `--reuse` uses a kept
one instead of building it, `--pages` measures only the pages whose name contains one of the
words given. Not a timed test: numbers for the README and docs/architecture.md; the goal is
p95 ≤ 150 ms with a number of queries that does not grow with the fleet."""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import prepare_database

GOAL_MS = 150.0


@dataclass
class Result:
    name: str
    times: list[float] = field(default_factory=list)
    queries: int = 0
    size: int = 0
    status: int = 0
    first_row: list[float] = field(default_factory=list)
    peak_kb: float | None = None
    # CPU per request, the shared machine's fairer figure: this process (Django) and the
    # PostgreSQL backend serving it (None when it is not a local process we can read).
    cpu: list[float] = field(default_factory=list)
    db_cpu: list[float] = field(default_factory=list)

    def pct(self, q: float, times: list[float] | None = None) -> float:
        ordered = sorted(self.times if times is None else times)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def _consume(response) -> tuple[int, float | None]:
    """The body's size, and for a streamed response when the chunk holding its second line (a
    CSV's first row after the header) came."""
    if not getattr(response, "streaming", False):
        return len(response.content), None
    size, first, lines = 0, None, 0
    for chunk in response.streaming_content:
        if first is None:
            lines += chunk.count(b"\n")
            if lines >= 2:
                first = time.perf_counter()
        size += len(chunk)
    return size, first


def _backend_cpu() -> Callable[[], float | None]:
    """A reader of the CPU seconds used so far by the PostgreSQL backend of this connection
    (its /proc entry: PostgreSQL on this machine), or of None."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    tick = os.sysconf("SC_CLK_TCK")

    def read() -> float | None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / tick

    return read


def measure(name: str, request: Callable[[], object], runs: int) -> Result:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    result = Result(name)
    request()  # warm: templates compiled, PostgreSQL's caches filled
    db_cpu = _backend_cpu()
    for i in range(runs):
        with CaptureQueriesContext(connection) as queries:
            began, cpu, db = time.perf_counter(), time.process_time(), db_cpu()
            response = request()
            size, first = _consume(response)
            result.times.append(time.perf_counter() - began)
            result.cpu.append(time.process_time() - cpu)
            db_after = db_cpu()
            if db is not None and db_after is not None:
                result.db_cpu.append(db_after - db)
        if first is not None:
            result.first_row.append(first - began)
        if i == 0:
            result.queries, result.size = len(queries), size
            result.status = response.status_code  # type: ignore[attr-defined]
    tracemalloc.start()
    _consume(request())
    result.peak_kb = tracemalloc.get_traced_memory()[1] / 1024
    tracemalloc.stop()
    return result


def run_pages(ids: dict[str, int], runs: int, only: str = "") -> list[Result]:
    from django.test import Client
    from django.urls import NoReverseMatch, reverse
    from django.utils import timezone

    from accounts.models import User

    client = Client()
    client.force_login(User.objects.get(pk=ids["manager"]))
    slug = "fleet"

    def url(name: str, **kwargs: int) -> str:
        try:
            return reverse(name, kwargs={"community": slug, **kwargs})
        except NoReverseMatch:  # a page this version does not have
            return ""

    def get(path: str, **extra: str) -> Callable[[], object]:
        return lambda: client.get(path, **extra)

    def poll(name: str, **kwargs: int) -> Callable[[], object]:
        """An htmx poll of a live region that shows what the page just showed."""
        path = url(name, **kwargs)
        if not path:
            return get("")
        page = client.get(path).content.decode()
        fp = re.search(r'"fp": "([0-9a-f]+)"', page)
        assert fp, f"no fingerprint on {name}"
        return get(path, data={"fp": fp.group(1)}, HTTP_HX_REQUEST="true")  # type: ignore[arg-type]

    last_month = timezone.localdate().replace(day=1) - timezone.timedelta(days=1)
    pages: list[tuple[str, Callable[[], object]]] = [
        ("dashboard", get(url("communities:dashboard"))),
        ("dashboard poll (unchanged)", poll("communities:dashboard")),
        ("outlets", get(url("chargers:outlet-list"))),
        ("outlets poll (unchanged)", poll("chargers:outlet-list")),
        ("outlets, one site", get(url("chargers:outlet-list") + f"?site={ids['site']}")),
        ("outlets, faulted", get(url("chargers:outlet-list") + "?state=faulted")),
        ("outlets, search", get(url("chargers:outlet-list") + "?q=FLEET-0123")),
        ("sessions", get(url("chargers:session-list"))),
        ("session detail", get(url("chargers:session-detail", session=ids["session"]))),
        ("charger", get(url("chargers:charger-detail", charger=ids["charger"]))),
        ("user", get(url("communities:member-detail", member=ids["member"]))),
        ("users", get(url("communities:member-list"))),
        ("site (1,000 chargers)", get(url("communities:site-detail", site=ids["site"]))),
        ("site power (1,000 chargers)", get(url("power:site-power", site=ids["site"]))),
        ("site power poll (unchanged)", poll("power:site-power", site=ids["site"])),
        ("sites", get(url("communities:site-list"))),
        # The other pages a manager opens at fleet scale.
        ("rules", get(url("rules:rules-page"))),
        ("rules, one site", get(url("rules:rules-page") + f"?site={ids['site']}")),
        ("rules, search", get(url("rules:rules-page") + "?q=FLEET-0123")),
        ("site rule", get(url("rules:rules-site", site=ids["site"]))),
        ("user groups", get(url("rules:group-list"))),
        ("audit log", get(url("communities:audit-log"))),
        ("configuration", get(url("communities:settings"))),
        ("add a user", get(url("communities:member-add"))),
        ("access requests", get(url("communities:access-request-list"))),
        ("refused chargers", get(url("chargers:unknown-charger-list"))),
        (
            "charger configuration",
            get(url("chargers:charger-configuration", charger=ids["charger"])),
        ),
        ("my sessions", get(url("chargers:my-session-list"))),
        ("exports", get(url("billing:export-list"))),
        ("expense notes", get(url("billing:note-list"))),
        (
            "sessions CSV (one month)",
            get(url("billing:export-sessions") + f"?month={last_month:%Y-%m}"),
        ),
    ]
    results = []
    for name, request in pages:
        if only and not any(word.strip() in name for word in only.split(",")):
            continue
        if not request.__closure__ or not all(  # type: ignore[attr-defined]
            c.cell_contents for c in request.__closure__ if isinstance(c.cell_contents, str)
        ):
            continue
        result = measure(name, request, runs)
        results.append(result)
        print(_line(result), flush=True)
    return results


def _within_goal(r: Result) -> bool:
    """p95 ≤ the goal: of the whole response for a page, of the first row for a download."""
    return r.pct(0.95, r.first_row or None) <= GOAL_MS and r.status in (200, 204)


def _line(r: Result) -> str:
    flag = "ok " if _within_goal(r) else "!! "
    extra = f"  CPU {statistics.mean(r.cpu) * 1000:6.1f} ms"
    if r.db_cpu:  # clock ticks (10 ms): the mean over the runs
        extra += f" + db {statistics.mean(r.db_cpu) * 1000:5.1f} ms"
    if r.first_row:
        extra += (
            f"  first row p50 {statistics.median(r.first_row) * 1000:6.1f} ms "
            f"p95 {r.pct(0.95, r.first_row):6.1f} ms"
        )
    return (
        f"{flag}{r.name:<28} {r.status}  p50 {r.pct(0.5):7.1f} ms  p95 {r.pct(0.95):7.1f} ms  "
        f"{r.queries:3d} queries  {r.size / 1024:8.1f} KB  peak {r.peak_kb or 0:8.0f} KB{extra}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.portal", description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--chargers", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--reuse", action="store_true", help="use a kept database as it is")
    parser.add_argument(
        "--pages", default="", help="only the pages whose name contains one of these (a,b)"
    )
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        print("bench.portal needs PostgreSQL: set DATABASE_URL.", file=sys.stderr)
        return 2
    name = url.rsplit("/", 1)[-1].split("?")[0] + "_portal_bench"
    if args.reuse:
        os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + name
        where, cleanup = f"PostgreSQL ({name}, reused)", lambda: None
    else:
        where, cleanup = prepare_database(name, keep=args.keep)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sparklin.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import override_settings

    # Not setup_test_environment(): its instrumented rendering copies every template context.
    override_settings(
        ALLOWED_HOSTS=["testserver"],
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
    ).enable()
    print(f"Portal at fleet scale — {where}, Python {platform.python_version()}")
    try:
        if args.reuse:
            call_command("migrate", verbosity=0)  # a database kept by an older version
            ids = _ids()
            from bench.portal_data import add_management_data

            add_management_data(ids["community"])  # a database kept by an older version
        else:
            call_command("migrate", verbosity=0)
            began = time.perf_counter()
            from bench.portal_data import build

            print(f"Building {args.chargers:,} chargers and {args.sessions:,} sessions:")
            ids = build(chargers=args.chargers, sessions=args.sessions)
            print(f"  built in {time.perf_counter() - began:.0f} s")
        print(f"{args.runs} runs per page; goal p95 ≤ {GOAL_MS:.0f} ms")
        results = run_pages(ids, args.runs, args.pages)
    finally:
        cleanup()
    slow = [r.name for r in results if not _within_goal(r)]
    print("All pages within the goal." if not slow else f"Over the goal: {', '.join(slow)}")
    return 0


def _ids() -> dict[str, int]:
    """The ids `portal_data.build` returned, found again in a kept database."""
    from django.db import connection

    from bench.portal_data import MANAGER_PHONE, SLUG

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.id, u.id,
                 (SELECT id FROM communities_site WHERE community_id = c.id ORDER BY id LIMIT 1),
                 (SELECT id FROM chargers_charger WHERE community_id = c.id ORDER BY id LIMIT 1),
                 (SELECT m.id FROM communities_membership m JOIN accounts_user v
                    ON v.id = m.user_id WHERE v.phone LIKE '+3361%%' ORDER BY m.id LIMIT 1),
                 (SELECT id FROM chargers_chargingsession WHERE community_id = c.id
                  ORDER BY started_at DESC LIMIT 1 OFFSET 5)
               FROM communities_community c, accounts_user u
               WHERE c.slug = %s AND u.phone = %s""",
            [SLUG, MANAGER_PHONE],
        )
        row = cursor.fetchone()
    keys = ("community", "manager", "site", "charger", "member", "session")
    return dict(zip(keys, row, strict=True))


if __name__ == "__main__":
    sys.exit(main())
