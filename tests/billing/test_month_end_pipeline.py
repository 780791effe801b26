"""The month-end pipeline: rows issued in one short transaction, each PDF rendered once after
commit (crash-safe, orphans replaced), e-mails claimed before they leave, finance waiting for
the month's last PDF, the month lock never held while rendering, lost work picked up again."""

import socket
import threading
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.core import mail
from django.core.files.base import ContentFile
from django.db import connections, transaction
from django.utils import timezone
from django_scopes import scope

from billing import dispatch, emails, issuing, rendering, scheduling, tasks
from billing.models import ExpenseNote, ExpenseRun, NoteDispatch
from billing.pdf import render_expense_note_pdf
from communities.models import Role
from tests import builders
from tests.communities.portal_data import local, make_session
from tests.e2e.processes import Inbox, free_port

from .notes_data import after_commit

NOW = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
FINANCE = "finance@tilleuls.example"


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def month(community, charger):
    """Three drivers with October sessions, two with an e-mail address."""
    community.expense_email = FINANCE
    community.save()
    drivers = []
    for n, email in enumerate(("a@x.example", "b@x.example", ""), 1):
        user = builders.make_member(community, Role.INDIVIDUAL).user
        user.email = email
        user.save()
        drivers.append(user)
        make_session(
            charger,
            None,
            user,
            None,
            energy_wh=str(1000 * n),
            started_at=local(community, 2025, 10, 3 + n, 8, 0),
        )
    return drivers


def generate(community, **kwargs):
    """Issue October without running what it queued on commit (the test transaction never
    commits): the rows alone, as the workers find them."""
    with scope(community=community):
        return issuing.generate_month(community=community, year=2025, month=10, **kwargs)


@pytest.mark.community_scope
def test_issuing_writes_rows_and_dispatches_and_leaves_pdfs_to_tasks(community, month):
    with mock.patch("billing.rendering.render_expense_note_pdf") as render:
        result = generate(community, send=True)
    render.assert_not_called()  # nothing slow inside the month's transaction
    assert len(result.created) == 3
    assert not ExpenseNote.objects.exclude(pdf="").exists()
    assert ExpenseRun.objects.get(year=2025, month=10).auto_send
    kinds = sorted(NoteDispatch.objects.values_list("kind", "to_email"))
    assert kinds == [
        ("driver", "a@x.example"),
        ("driver", "b@x.example"),
        ("finance", FINANCE),
        ("finance", FINANCE),
        ("finance", FINANCE),
    ]
    assert set(NoteDispatch.objects.values_list("status", flat=True)) == {"pending"}


@pytest.mark.community_scope
def test_a_month_not_sent_gets_no_dispatch_rows(community, month):
    generate(community)
    assert not NoteDispatch.objects.exists()


@pytest.mark.community_scope
def test_after_commit_each_pdf_is_rendered_then_drivers_and_finance_are_mailed(community, month):
    after_commit(generate, community, send=True)
    assert not ExpenseNote.objects.filter(pdf="").exists()
    assert sorted(m.to[0] for m in mail.outbox) == ["a@x.example", "b@x.example", FINANCE]
    finance = next(m for m in mail.outbox if m.to == [FINANCE])
    assert len([a for a in finance.attachments if a[0].endswith(".pdf")]) == 3
    assert set(NoteDispatch.objects.values_list("status", flat=True)) == {"sent"}
    assert NoteDispatch.objects.filter(claimed_at__isnull=False).count() == 0


@pytest.mark.community_scope
def test_finance_waits_for_the_months_last_pdf(community, month):
    generate(community, send=True)
    notes = list(ExpenseNote.objects.select_related("replaces").order_by("sequence"))
    with scope(community=community):
        for note in notes[:2]:
            rendering.store_note_pdf(note)
        assert dispatch.send_finance(community=community, year=2025, month=10).waiting_for_pdfs
        assert mail.outbox == []
        rendering.store_note_pdf(notes[2])
        result = dispatch.send_finance(community=community, year=2025, month=10)
    assert result.finance_sent == 3 and len(mail.outbox) == 1


@pytest.mark.community_scope
def test_a_stored_pdf_is_not_rendered_again(community, month):
    after_commit(generate, community)
    note = ExpenseNote.objects.first()
    name = note.pdf.name
    with mock.patch("billing.rendering.render_expense_note_pdf") as render:
        assert rendering.store_note_pdf(note) is False
    render.assert_not_called()
    assert ExpenseNote.objects.get(pk=note.pk).pdf.name == name


@pytest.mark.community_scope
def test_a_crash_while_rendering_leaves_no_file_and_no_field(community, month):
    generate(community)
    note = ExpenseNote.objects.select_related("replaces").first()
    with mock.patch("billing.rendering.render_expense_note_pdf", side_effect=MemoryError):
        with pytest.raises(MemoryError):
            rendering.store_note_pdf(note)
    note.refresh_from_db()
    name = note.pdf.field.generate_filename(note, f"{note.number}.pdf")
    assert not note.pdf and not note.pdf.storage.exists(name)


@pytest.mark.community_scope
def test_an_orphan_file_left_by_a_crash_after_writing_is_replaced(community, month):
    generate(community)
    note = ExpenseNote.objects.select_related("replaces").first()
    storage = note.pdf.storage
    name = note.pdf.field.generate_filename(note, f"{note.number}.pdf")
    storage.save(name, ContentFile(b"half a PDF"))
    assert storage.exists(name)
    assert rendering.store_note_pdf(note) is True
    note.refresh_from_db()
    assert note.pdf.name == name  # the fixed name, not name_XXXX
    assert note.pdf.read().startswith(b"%PDF")


@pytest.mark.community_scope
def test_of_two_workers_rendering_one_note_the_first_wins(community, month):
    generate(community)
    note = ExpenseNote.objects.select_related("replaces").first()
    twin = ExpenseNote.objects.select_related("replaces").get(pk=note.pk)
    assert rendering.store_note_pdf(note) is True
    twin.pdf.name = ""  # it looked before the first one stored it
    assert rendering.store_note_pdf(twin) is False
    files = list(note.pdf.storage.listdir(note.pdf.name.rsplit("/", 1)[0])[1])
    assert files == [note.pdf.name.rsplit("/", 1)[1]]


@pytest.mark.community_scope
def test_a_claimed_dispatch_is_not_sent_by_another_worker_until_its_claim_is_stale(
    community, month
):
    after_commit(generate, community)
    note = ExpenseNote.objects.select_related("holder").get(holder=month[0])
    claimed = NoteDispatch.objects.create(
        community=community,
        note=note,
        kind=NoteDispatch.Kind.DRIVER,
        to_email="a@x.example",
        claimed_at=timezone.now(),
    )
    assert dispatch.send_driver_copy(note=note).driver_sent == 0
    assert mail.outbox == []
    NoteDispatch.objects.filter(pk=claimed.pk).update(
        claimed_at=timezone.now() - dispatch.CLAIM_TIMEOUT - timedelta(seconds=1)
    )
    assert dispatch.send_driver_copy(note=note).driver_sent == 1  # its worker died mid-send
    assert dispatch.send_driver_copy(note=note).driver_sent == 0
    assert len(mail.outbox) == 1


@pytest.mark.community_scope
def test_a_version_replaced_before_it_was_sent_is_not_sent(community, month, charger):
    generate(community, send=True)
    first = ExpenseNote.objects.get(holder=month[0])
    make_session(
        charger,
        None,
        month[0],
        None,
        energy_wh="500",
        started_at=local(community, 2025, 10, 20, 8, 0),
    )
    after_commit(generate, community, send=True)
    assert not NoteDispatch.objects.filter(note=first).exists()
    to_a = [m for m in mail.outbox if m.to == ["a@x.example"]]
    assert len(to_a) == 1 and to_a[0].attachments[0][0].endswith("-V2.pdf")


def test_the_hourly_check_renders_notes_whose_task_was_lost_and_sends_them(community, month):
    generate(community, send=True)  # committed rows, tasks lost (a broker restarted empty)
    with time_machine.travel(NOW + timedelta(minutes=20), tick=False):
        after_commit(scheduling.check_months)  # beat's entry point: no community in scope
    with scope(community=community):
        assert not ExpenseNote.objects.filter(pdf="").exists()
    assert sorted(m.to[0] for m in mail.outbox) == ["a@x.example", "b@x.example", FINANCE]


@pytest.mark.community_scope
def test_the_download_renders_a_note_whose_pdf_is_not_stored_yet(manager_client, community, month):
    generate(community)
    note = ExpenseNote.objects.first()
    response = manager_client.get("/c/tilleuls/expense-notes/pdf/", {"note": note.pk})
    assert response.status_code == 200 and response.content.startswith(b"%PDF")


@pytest.mark.community_scope
@pytest.mark.django_db(transaction=True)
def test_the_month_lock_is_not_held_while_pdfs_are_rendered(community, month):
    """Rendering happens after the issuing transaction committed: another connection can lock
    the month's run row while a PDF is being rendered."""
    seen = []

    def render_and_probe(note, language=None):
        def probe():
            try:
                with scope(community=community), transaction.atomic():
                    ExpenseRun.objects.select_for_update(nowait=True).get(year=2025, month=10)
                seen.append("free")
            except Exception as e:  # DatabaseError: could not obtain lock
                seen.append(type(e).__name__)
            finally:
                connections.close_all()

        thread = threading.Thread(target=probe)  # its own database connection
        thread.start()
        thread.join(10)
        return render_expense_note_pdf(note, language)

    with mock.patch("billing.rendering.render_expense_note_pdf", side_effect=render_and_probe):
        with scope(community=community):
            issuing.generate_month(community=community, year=2025, month=10, send=True)
    assert seen == ["free", "free", "free"]
    assert not ExpenseNote.objects.filter(pdf="").exists()
    assert len(mail.outbox) == 3


@pytest.mark.community_scope
def test_rendering_a_note_sends_its_drivers_copy_in_the_same_task(community, month):
    """One task per note: the rendering sends the driver's copy itself, queuing nothing."""
    generate(community, send=True)
    note = ExpenseNote.objects.get(holder=month[0])
    with (
        mock.patch("billing.tasks.send_driver_copy.delay") as queued,
        mock.patch("billing.tasks.send_driver_copy.apply_async") as queued_later,
    ):
        tasks.render_note(community=community.pk, note=note.pk)
    queued.assert_not_called()
    queued_later.assert_not_called()
    assert [m.to for m in mail.outbox] == [["a@x.example"]]
    assert mail.outbox[0].attachments[0][0] == f"{note.number}.pdf"
    assert NoteDispatch.objects.get(note=note, kind="driver").status == NoteDispatch.Status.SENT


@pytest.mark.community_scope
def test_a_drivers_copy_that_fails_in_the_rendering_task_goes_on_in_the_retrying_task(
    community, month, settings
):
    generate(community, send=True)
    note = ExpenseNote.objects.get(holder=month[0])
    settings.EMAIL_BACKEND = "tests.billing.test_expense_notes.FailingBackend"
    with mock.patch("billing.tasks.send_driver_copy.apply_async") as retry:
        assert tasks.render_note(community=community.pk, note=note.pk) is True
    retry.assert_called_once_with(
        kwargs={"community": community.pk, "note": note.pk}, countdown=tasks.SEND_RETRY_BASE
    )
    failed = NoteDispatch.objects.get(note=note, kind="driver")
    assert failed.status == NoteDispatch.Status.FAILED and failed.claimed_at is None
    assert "Connection unexpectedly closed" in failed.error
    ExpenseNote.objects.get(pk=note.pk).pdf.open().close()  # the PDF is stored all the same


@pytest.fixture
def smtp_server(settings):
    """A local SMTP server; e-mail goes to it through Django's SMTP backend."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    yield inbox
    emails._forget_kept()
    controller.stop()


@pytest.mark.community_scope
def test_a_worker_sends_one_email_after_another_over_one_smtp_connection(
    community, month, smtp_server, monkeypatch
):
    after_commit(generate, community)  # notes and PDFs; the month is not sent
    notes = list(ExpenseNote.objects.select_related("holder").exclude(holder__email=""))
    assert len(notes) == 2 and not smtp_server.messages

    def send(note):
        emails.send_driver_email(note=note, to=note.holder.email, language="en")

    monkeypatch.setattr(emails, "_in_worker", lambda: True)
    send(notes[0])
    send(notes[1])
    assert len(smtp_server.messages) == 2 and len(set(smtp_server.peers)) == 1
    # The connection died meanwhile: seen (NOOP) before the next e-mail, which opens another.
    emails._kept.connection.connection.sock.shutdown(socket.SHUT_RDWR)
    send(notes[0])
    assert len(smtp_server.messages) == 3 and len(set(smtp_server.peers)) == 2
    # Idle longer than it may be: not reused.
    monkeypatch.setattr(emails, "SMTP_KEEP_SECONDS", -1)
    send(notes[1])
    assert len(smtp_server.messages) == 4 and len(set(smtp_server.peers)) == 3
    # Outside a worker (a web request, tasks in-process) each e-mail has its own connection.
    monkeypatch.setattr(emails, "_in_worker", lambda: False)
    monkeypatch.setattr(emails, "SMTP_KEEP_SECONDS", 60)
    send(notes[0])
    send(notes[1])
    assert len(smtp_server.messages) == 6 and len(set(smtp_server.peers)) == 5


@pytest.mark.community_scope
def test_a_send_that_fails_on_the_kept_connection_drops_it(
    community, month, smtp_server, monkeypatch
):
    after_commit(generate, community)
    note = ExpenseNote.objects.select_related("holder").exclude(holder__email="").first()
    monkeypatch.setattr(emails, "_in_worker", lambda: True)
    emails.send_driver_email(note=note, to=note.holder.email, language="en")
    kept = emails._kept.connection
    with mock.patch.object(kept, "_send", side_effect=OSError("reset by peer")):
        with pytest.raises(OSError):
            emails.send_driver_email(note=note, to=note.holder.email, language="en")
    assert emails._kept.connection is None and kept.connection is None  # closed, forgotten
    emails.send_driver_email(note=note, to=note.holder.email, language="en")
    assert len(smtp_server.messages) == 2 and len(set(smtp_server.peers)) == 2
