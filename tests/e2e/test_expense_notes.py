"""The month-end run end to end: the hourly beat task published to the broker, real Celery worker
processes issuing the notes in PostgreSQL, rendering the PDFs and e-mailing them over SMTP to a
local aiosmtpd server started here. A second run sends nothing; two workers share a month and
still send each e-mail once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import ExpenseNote, NoteDispatch
from communities.models import Role
from sparklin.celery import app
from tests import builders
from tests.communities.portal_data import make_session

from .processes import celery_worker, child_env, wait_until

# The test body reads the community's notes inside its scope (the worker is another process).
pytestmark = [pytest.mark.e2e, pytest.mark.community_scope("last_month_sessions")]

RECIPIENT = "finance@e2e.example"


@pytest.fixture
def mail_worker(e2e_env, smtp, tmp_path, settings):
    """The real worker, sending e-mail to the local SMTP server, storing PDFs under tmp_path."""
    settings.MEDIA_ROOT = tmp_path / "media"
    app.conf.task_always_eager = False  # publish to Redis, for the worker (reset per test)
    env = child_env(EMAIL_HOST="127.0.0.1", EMAIL_PORT=smtp.port, MEDIA_ROOT=settings.MEDIA_ROOT)
    process = celery_worker(env).start(timeout=60)
    yield process
    process.stop()
    print(f"--- worker output ---\n{process.output()}")


@pytest.fixture
def last_month_sessions(e2e_env):
    community = builders.make_community(name="E2E Company", slug="e2e-notes")
    community.expense_email = RECIPIENT
    community.save()
    charger = builders.make_charger(community, identity="E2E-NOTES-01")
    now = timezone.localtime(timezone.now(), community.tz)
    first_of_month = now.replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    last_month = (first_of_month - timedelta(days=1)).replace(day=3)
    drivers = []
    for n, energy in enumerate(("12345", "7404"), 1):
        user = builders.make_member(community, Role.INDIVIDUAL).user
        user.email = f"driver{n}@e2e.example"
        user.save()
        drivers.append(user)
        make_session(charger, None, user, None, energy_wh=energy, started_at=last_month)
        make_session(
            charger, None, user, None, energy_wh="1000", started_at=last_month + timedelta(days=5)
        )
    # This month's session belongs to next month's run.
    make_session(charger, None, drivers[0], None, energy_wh="999", started_at=now)
    return {"community": community, "drivers": drivers, "month": last_month}


def succeeded(worker, task_name):
    return sum(
        1
        for line in worker.output().splitlines()
        if f"{task_name}[" in line and "succeeded" in line
    )


def test_month_end_run_mails_finance_and_drivers_once(mail_worker, smtp, last_month_sessions):
    community = last_month_sessions["community"]
    month = last_month_sessions["month"]
    app.send_task("billing.tasks.check_months")

    wait_until(lambda: len(smtp.messages) >= 3, timeout=90, what="three e-mails")
    finance = [m for to, m in smtp.messages if to == [RECIPIENT]]
    assert len(finance) == 1
    message = finance[0]
    assert message["To"] == RECIPIENT
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    prefix = f"E2E-NOTES-{month.year:04d}-{month.month:02d}"
    assert sorted(attachments) == [
        f"{prefix}-0001.pdf",
        f"{prefix}-0002.pdf",
        f"expense-notes-e2e-notes-{month.year:04d}-{month.month:02d}.csv",
    ]
    assert attachments[f"{prefix}-0001.pdf"].get_content().startswith(b"%PDF")
    csv_text = attachments[f"expense-notes-e2e-notes-{month.year:04d}-{month.month:02d}.csv"]
    assert csv_text.get_content().count("\n") == 3  # header + two notes
    copies = sorted(to[0] for to, _m in smtp.messages if to != [RECIPIENT])
    assert copies == ["driver1@e2e.example", "driver2@e2e.example"]

    notes = ExpenseNote.objects.filter(community=community)
    assert notes.count() == 2 and all(n.pdf for n in notes)
    wait_until(
        lambda: NoteDispatch.objects.filter(status="sent").count() == 4, what="dispatches sent"
    )

    # A second month-end run, and the month run forced again: nothing more is sent.
    sends_before = succeeded(mail_worker, "billing.tasks.send_month")
    app.send_task("billing.tasks.check_months")
    app.send_task(
        "billing.tasks.run_month",
        kwargs={"community": community.pk, "year": month.year, "month": month.month, "send": True},
    )
    wait_until(
        lambda: succeeded(mail_worker, "billing.tasks.send_month") > sends_before,
        timeout=60,
        what="the second send to finish",
    )
    assert len(smtp.messages) == 3
    assert ExpenseNote.objects.filter(community=community).count() == 2


def named_worker(env, name):
    return celery_worker(env, name=name)


@pytest.fixture
def two_workers(e2e_env, smtp, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    app.conf.task_always_eager = False
    env = child_env(EMAIL_HOST="127.0.0.1", EMAIL_PORT=smtp.port, MEDIA_ROOT=settings.MEDIA_ROOT)
    workers = [named_worker(env, f"notes{n}").start(timeout=60) for n in (1, 2)]
    yield workers
    for process in workers:
        process.stop()
        print(f"--- {process.name} output ---\n{process.output()}")


@pytest.fixture
def shared_community(e2e_env):
    community = builders.make_community(name="Shared Month", slug="e2e-shared")
    community.expense_email = RECIPIENT
    community.save()
    return community


@pytest.mark.community_scope("shared_community")
def test_two_workers_share_a_month_and_send_each_email_once(two_workers, smtp, shared_community):
    community = shared_community
    charger = builders.make_charger(community, identity="E2E-SHARED-01")
    now = timezone.localtime(timezone.now(), community.tz)
    last_month = (now.replace(day=1, hour=12) - timedelta(days=1)).replace(day=3)
    drivers = 12
    for n in range(drivers):
        user = builders.make_member(community, Role.INDIVIDUAL).user
        user.email = f"shared{n}@e2e.example"
        user.save()
        make_session(charger, None, user, None, energy_wh=str(1000 + n), started_at=last_month)

    app.send_task(
        "billing.tasks.run_month",
        kwargs={
            "community": community.pk,
            "year": last_month.year,
            "month": last_month.month,
            "send": True,
        },
    )
    wait_until(
        lambda: len(smtp.messages) >= drivers + 1, timeout=120, what="every e-mail of the month"
    )
    wait_until(
        lambda: NoteDispatch.objects.filter(status="sent").count() == 2 * drivers,
        what="every dispatch marked sent",
    )
    recipients = sorted(to[0] for to, _m in smtp.messages)
    assert recipients == sorted([RECIPIENT] + [f"shared{n}@e2e.example" for n in range(drivers)])
    finance = next(m for to, m in smtp.messages if to == [RECIPIENT])
    pdfs = [p for p in finance.iter_attachments() if p.get_filename().endswith(".pdf")]
    assert len(pdfs) == drivers
    # Both workers rendered part of the month, each sending its drivers' copies itself.
    assert all(succeeded(w, "billing.tasks.render_note") >= 1 for w in two_workers)
    assert sum(succeeded(w, "billing.tasks.render_note") for w in two_workers) == drivers
    assert not any(succeeded(w, "billing.tasks.send_driver_copy") for w in two_workers)
    # Each worker kept its SMTP connection from one e-mail to the next.
    assert len(set(smtp.peers)) <= len(two_workers) < len(smtp.messages)
    assert not ExpenseNote.objects.filter(community=community, pdf="").exists()
