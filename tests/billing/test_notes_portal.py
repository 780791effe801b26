"""Expense notes in the portal: the Tools tab (months, states, ZIP with progress, send now,
re-send) and drivers' own notes (tenant-scoped, permission-checked downloads)."""

import io
import zipfile
from datetime import UTC, datetime

import pytest
import time_machine
from django.core import mail
from django_scopes import scope

from billing.models import ExpenseNote, ExportJob, NoteDispatch
from communities.models import Role
from tests import builders
from tests.communities.portal_data import local, make_session

from .notes_data import issue

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope

NOW = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
TOOLS = "/c/tilleuls/exports/"


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def notes(community, charger, individual):
    community.expense_email = "finance@tilleuls.example"
    community.save()
    individual.email = "driver@x.example"
    individual.save()
    other = builders.make_member(community, Role.INDIVIDUAL).user
    for user, energy in ((individual, "10000"), (other, "20000")):
        for month in (9, 10):
            make_session(
                charger,
                None,
                user,
                None,
                energy_wh=energy,
                started_at=local(community, 2025, month, 3, 8, 0),
            )
    for month in (9, 10):
        issue(community, 2025, month)
    return {
        "mine": ExpenseNote.objects.get(holder=individual, month=10),
        "theirs": ExpenseNote.objects.get(holder=other, month=10),
    }


def test_tools_page_lists_months_notes_and_states(
    manager_client, notes, django_assert_max_num_queries
):
    with django_assert_max_num_queries(15):
        page = manager_client.get(TOOLS).content.decode()
    assert "2025-10" in page and "2025-09" in page
    assert notes["mine"].number in page and "Not sent yet" in page
    assert 'value="2025-10"' in page  # month checkboxes


def test_no_recipient_is_explained(manager_client, notes, community):
    community.expense_email = ""
    community.save()
    page = manager_client.get(TOOLS).content.decode()
    assert "No expense-note recipient is set" in page and "Not sent: no recipient" in page
    from django.template import Context, Template

    html = Template("{% load billing %}{% expense_notes_alert %}").render(
        Context({"community": community, "community_perms": {"notes:manage"}})
    )
    assert "No expense-note recipient is set" in html


def test_zip_export_with_progress_then_download(
    manager_client, notes, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = manager_client.post(
            f"{TOOLS}notes/",
            {"months": ["2025-09", "2025-10"], "action": "zip"},
            HTTP_HX_REQUEST="true",
        )
    assert response.status_code == 200  # tasks run in-process here: already done
    job = ExportJob.objects.get()
    assert job.status == "done" and job.months == ["2025-09", "2025-10"]
    poll = manager_client.get(f"{TOOLS}notes/job/", {"job": job.pk}, HTTP_HX_REQUEST="true")
    assert poll.status_code == 286  # htmx stops polling
    assert f"?job={job.pk}" in poll.content.decode()
    download = manager_client.get(f"{TOOLS}notes/zip/", {"job": job.pk})
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    names = sorted(archive.namelist())
    assert names == [
        "2025-09/TILLEULS-2025-09-0001.pdf",
        "2025-09/TILLEULS-2025-09-0002.pdf",
        "2025-10/TILLEULS-2025-10-0001.pdf",
        "2025-10/TILLEULS-2025-10-0002.pdf",
        "expense-notes.csv",
    ]
    assert archive.read("expense-notes.csv").decode().count("\n") == 5
    assert archive.read(names[0]).startswith(b"%PDF")


def test_progress_partial_polls_while_running(manager_client, notes, manager, community):
    job = ExportJob.objects.create(community=community, months=["2025-10"], total=4, done=1)
    poll = manager_client.get(f"{TOOLS}notes/job/", {"job": job.pk}, HTTP_HX_REQUEST="true")
    assert poll.status_code == 200 and 'hx-trigger="every 1s"' in poll.content.decode()
    assert "1 / 4" in poll.content.decode()


def test_export_refuses_current_month_and_bad_input(manager_client, notes):
    response = manager_client.post(f"{TOOLS}notes/", {"months": ["2025-11"], "action": "zip"})
    assert response.status_code == 400  # not a choice: only ended months are offered
    assert manager_client.get(f"{TOOLS}notes/job/").status_code == 400
    assert manager_client.get(f"{TOOLS}notes/job/", {"job": "999999"}).status_code == 404


def test_send_now_then_nothing_twice(manager_client, notes, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post(f"{TOOLS}notes/", {"months": ["2025-10"], "action": "send"})
    finance = [m for m in mail.outbox if m.to == ["finance@tilleuls.example"]]
    assert len(finance) == 1 and len(finance[0].attachments) == 3
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post(f"{TOOLS}notes/", {"months": ["2025-10"], "action": "send"})
    assert len([m for m in mail.outbox if m.to == ["finance@tilleuls.example"]]) == 1
    page = manager_client.get(TOOLS).content.decode()
    assert "Re-send" in page


def test_resend_button(manager_client, notes):
    response = manager_client.post(
        f"{TOOLS}notes/resend/", {"note": notes["mine"].pk, "kind": "driver"}
    )
    assert response.status_code == 302
    assert mail.outbox[-1].to == ["driver@x.example"]
    assert NoteDispatch.objects.get(note=notes["mine"], kind="driver").status == "sent"


def test_failed_send_shows_as_failed(
    manager_client, notes, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.billing.test_expense_notes.FailingBackend"
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post(f"{TOOLS}notes/", {"months": ["2025-10"], "action": "send"})
    page = manager_client.get(TOOLS).content.decode()
    assert "Failed" in page and "Connection unexpectedly closed" in page


def test_driver_sees_and_downloads_own_notes_only(client, individual, notes):
    client.force_login(individual)
    page = client.get("/c/tilleuls/expense-notes/").content.decode()
    assert notes["mine"].number in page and notes["theirs"].number not in page
    assert "My expense notes" in client.get("/c/tilleuls/").content.decode()
    own = client.get("/c/tilleuls/expense-notes/pdf/", {"note": notes["mine"].pk})
    assert own.status_code == 200 and own.content.startswith(b"%PDF")
    assert (
        client.get("/c/tilleuls/expense-notes/pdf/", {"note": notes["theirs"].pk}).status_code
        == 404
    )
    assert client.get("/c/tilleuls/exports/notes/job/", {"job": 1}).status_code == 403


def test_manager_downloads_any_note_of_the_community(manager_client, notes):
    response = manager_client.get("/c/tilleuls/expense-notes/pdf/", {"note": notes["theirs"].pk})
    assert response.status_code == 200


def test_forged_ids_from_another_community_are_404(client, outsider, notes):
    other = builders.community_of(outsider)
    charger = builders.make_charger(other)
    make_session(
        charger, None, outsider, None, energy_wh="1000", started_at=local(other, 2025, 10, 3, 8, 0)
    )
    with scope(community=other):
        issue(other, 2025, 10)
        foreign = ExpenseNote.objects.get(community=other)
    client.force_login(outsider)
    assert (
        client.get(f"/c/{other.slug}/expense-notes/pdf/", {"note": notes["mine"].pk}).status_code
        == 404
    )
    assert (
        client.post(
            f"/c/{other.slug}/exports/notes/resend/", {"note": notes["mine"].pk, "kind": "finance"}
        ).status_code
        == 404
    )
    job = ExportJob.objects.create(community=notes["mine"].community, months=["2025-10"])
    assert client.get(f"/c/{other.slug}/exports/notes/zip/", {"job": job.pk}).status_code == 404
    assert (
        client.get(f"/c/{other.slug}/expense-notes/pdf/", {"note": foreign.pk}).status_code == 200
    )
