"""Expense notes: which sessions, amounts to the cent (mixed prices, a DST month), the PDF's
text, versioning, sending once, failures, the command."""

import contextlib
import io
import smtplib
import subprocess
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.management import CommandError, call_command
from django.db.models.signals import post_init
from pypdf import PdfReader

from billing import dispatch, scheduling
from billing.models import ExpenseNote, ExpenseRun, NoteDispatch
from billing.pdf import render_expense_note_pdf
from billing.services import BillingError
from chargers.models import ChargingSession
from communities.models import AuditEvent, Membership, Role
from tests import builders
from tests.communities.portal_data import local, make_session

from .notes_data import after_commit, charge, end, in_scope, issue, start_only

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope

NOW = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def fleet(community, charger, individual, manager):
    """October 2025 in Europe/Paris: summer time ends on the 26th; the price changes on the
    15th. Driver A (French) has five sessions in the month and two just outside it."""
    community.address = "12 avenue des Tilleuls\n69003 Lyon"
    community.expense_email = "finance@tilleuls.example"
    community.save()
    builders.make_connector(charger, 1)
    builders.make_price(community, price="0.3120", valid_from="2025-10-15")
    a = individual
    a.first_name, a.last_name, a.email, a.language = "Lucas", "Bernard", "lucas@x.example", "fr"
    a.save()
    b = builders.make_member(community, Role.INDIVIDUAL).user
    b.first_name, b.last_name, b.email, b.language = "Emma", "Petit", "emma@x.example", "en"
    b.save()
    builders.make_card(community, holder=a, uid="CARDA")
    builders.make_card(community, holder=b, uid="CARDB")
    paris = community
    charge(charger, "CARDA", local(paris, 2025, 9, 30, 23, 59), 30, 4000)  # September
    charge(charger, "CARDA", local(paris, 2025, 10, 1, 0, 30), 60, 7404)  # 1.86
    charge(charger, "CARDA", local(paris, 2025, 10, 14, 23, 30), 60, 12345)  # 3.11 (old price)
    charge(charger, "CARDA", local(paris, 2025, 10, 15, 0, 10), 60, 10000)  # 3.12 (new price)
    # 02:45 summer time, two hours later it is 03:45 winter time.
    charge(charger, "CARDA", datetime(2025, 10, 26, 0, 45, tzinfo=UTC), 120, 5555)  # 1.73
    charge(charger, "CARDA", local(paris, 2025, 10, 31, 23, 30), 20, 1000)  # 0.31
    charge(charger, "CARDA", local(paris, 2025, 11, 1, 0, 0), 20, 1000)  # November
    charge(charger, "CARDB", local(paris, 2025, 10, 20, 8, 0), 90, 20000)  # 6.24
    charge(charger, "UNKNOWN-CARD", local(paris, 2025, 10, 21, 8, 0), 90, 20000)  # no holder
    return {"a": a, "b": b, "charger": charger}


def generate(community, year=2025, month=10):
    return issue(community, year, month)


def send(community, year=2025, month=10):
    return in_scope(community, dispatch.send_month, community=community, year=year, month=month)


def check():
    return after_commit(scheduling.check_months)


@contextlib.contextmanager
def instances_built(*models):
    """The instances of `models` Django builds inside the block (from the database or not)."""
    built = []

    def record(sender, instance, **kwargs):
        built.append(instance)

    for model in models:
        post_init.connect(record, sender=model)
    try:
        yield built
    finally:
        for model in models:
            post_init.disconnect(record, sender=model)


def note_of(user, year=2025, month=10) -> ExpenseNote:
    return ExpenseNote.objects.get(holder=user, year=year, month=month, is_current=True)


def pdf_text(data: bytes) -> str:
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    return text.replace("\u202f", " ").replace("\xa0", " ")


def test_one_note_per_driver_with_amounts_to_the_cent(community, fleet):
    result = generate(community)
    assert len(result.created) == 2 and not result.versioned
    a = note_of(fleet["a"])
    assert a.session_count == 5
    assert [line["amount"] for line in a.lines] == ["1.86", "3.11", "3.12", "1.73", "0.31"]
    assert [line["price_per_kwh"] for line in a.lines] == ["0.2516"] * 2 + ["0.3120"] * 3
    assert a.amount == Decimal("10.13") and a.energy_wh == Decimal("36304.0")
    assert note_of(fleet["b"]).amount == Decimal("6.24")
    assert a.number == "TILLEULS-2025-10-0001" and note_of(fleet["b"]).number.endswith("-0002")
    assert a.holder_name == "Lucas Bernard" and a.community_name == "Résidence Les Tilleuls"
    assert ExpenseRun.objects.get(community=community, year=2025, month=10).generated_at
    assert AuditEvent.objects.filter(action="expense_notes.generate").count() == 1


def test_issuing_reads_each_driver_once_not_once_per_session(community, fleet):
    """A month is tens of thousands of sessions: their holders are read once each (building a
    user parses their phone number), not joined to every session."""
    from accounts.models import User
    from billing.notes import drivers_of_month

    with instances_built(User) as built:
        drivers = drivers_of_month(community, 2025, 10)
    # Each driver once, though A has five sessions.
    assert sorted(user.pk for user in built) == sorted([fleet["a"].pk, fleet["b"].pk])
    assert [len(drivers[fleet[k].pk].lines) for k in "ab"] == [5, 1]
    assert drivers[fleet["a"].pk].holder == fleet["a"]


def test_issuing_reads_the_sessions_as_rows_and_writes_whole_lines(community, fleet):
    """The month's sessions are read as rows (no session, charger, site or outlet instance
    built for each of tens of thousands), and each line holds what the note prints."""
    from chargers.models import Charger, Connector
    from communities.models import Site

    with instances_built(ChargingSession, Charger, Site, Connector) as built:
        generate(community)
    assert built == []
    charger = fleet["charger"]
    first = note_of(fleet["a"]).lines[0]
    session = ChargingSession.objects.get(started_at=datetime(2025, 9, 30, 22, 30, tzinfo=UTC))
    assert first == {
        "session": session.pk,
        "started_at": "2025-09-30T22:30:00+00:00",
        "stopped_at": "2025-09-30T23:30:00+00:00",
        "site": charger.site.name,
        "outlet": f"{charger.identity} #1",
        "energy_wh": "7404.0",
        "price_per_kwh": "0.2516",
        "amount": "1.86",
        "free": False,
    }


@pytest.mark.parametrize(
    "name, evse, connector, label",
    [
        ("", 1, 1, "WB-7 #1"),  # no name: the identity
        ("Garage", 1, 1, "Garage #1"),
        ("Garage", 2, 1, "Garage #2.1"),  # 2.0.1: EVSE 2, its connector 1
        ("Garage", None, None, "Garage"),  # a session without a known outlet
    ],
)
def test_a_line_names_its_outlet(name, evse, connector, label):
    from types import SimpleNamespace

    from billing.notes import _outlet_label

    row = SimpleNamespace(
        charger__name=name,
        charger__identity="WB-7",
        connector__evse_id=evse,
        connector__connector_id=connector,
    )
    assert _outlet_label(row) == label


def test_pdf_text_has_the_lines_and_totals_in_english(community, fleet):
    generate(community)
    a = note_of(fleet["a"])
    assert a.language == "en"  # the recipient is no member: the site's language (tests: en)
    text = pdf_text(a.pdf.read())
    assert "Expense note" in text and "TILLEULS-2025-10-0001" in text
    assert "Lucas Bernard" in text and "October 2025" in text and "69003 Lyon" in text
    assert "1 Oct 2025" in text and "00:30" in text
    # The DST night: 02:45 summer time to 03:45 winter time is two hours.
    assert "26 Oct 2025" in text and "02:45" in text and "03:45" in text and "2 h 00" in text
    assert "€0.2516" in text and "€0.3120" in text and "€1.73" in text
    assert "36.304" in text and "€10.13" in text
    assert "30 Sep" not in text and "\n1 Nov" not in text
    assert "1 / 1" in text  # page numbers


def test_pdf_in_french_formats_numbers_and_money_for_french(community, fleet):
    generate(community)
    text = pdf_text(render_expense_note_pdf(note_of(fleet["a"]), "fr"))
    assert "Note de frais" in text and "octobre 2025" in text
    assert "26/10/2025" in text and "36,304" in text and "10,13 €" in text
    assert "0,3120 €" in text


def test_thousands_are_grouped_in_french(community, fleet):
    generate(community)
    note = note_of(fleet["a"])
    note.amount = Decimal("1234.56")
    text = pdf_text(render_expense_note_pdf(note, "fr"))
    assert "1 234,56 €" in text
    assert "€1,234.56" in pdf_text(render_expense_note_pdf(note, "en"))


def test_pdf_is_a4_with_repeated_header_on_long_notes(community, charger, individual):
    builders.make_connector(charger, 1)
    builders.make_card(community, holder=individual, uid="LONG")
    for day in range(1, 31):
        for hour in (7, 12, 19):
            charge(charger, "LONG", local(community, 2025, 9, day, hour, 0), 30, 1500)
    generate(community, 2025, 9)
    data = note_of(individual, 2025, 9).pdf.read()
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) >= 2
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4 in points
    last = reader.pages[-1].extract_text()
    assert f"{len(reader.pages)} / {len(reader.pages)}" in last
    for page in reader.pages[:2]:
        assert "Price per kWh" in page.extract_text()  # the table header on every page


def test_pdftotext_reads_it_too(community, fleet, tmp_path):
    generate(community)
    path = tmp_path / "note.pdf"
    path.write_bytes(note_of(fleet["b"]).pdf.read())
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True)
    assert "Emma Petit" in out.stdout and "€6.24" in out.stdout


def test_generating_again_creates_nothing(community, fleet):
    generate(community)
    again = generate(community)
    assert not again.created and not again.versioned and again.unchanged == 2
    assert ExpenseNote.objects.count() == 2


def test_a_session_ending_late_versions_the_note(community, fleet):
    start_only(fleet["charger"], "CARDA", local(community, 2025, 10, 31, 22, 0), tid="LATE")
    generate(community)
    first = note_of(fleet["a"])
    assert first.session_count == 5  # the session in progress waits
    end(fleet["charger"], "LATE", local(community, 2025, 11, 1, 1, 0), 3000)
    result = generate(community)
    assert [n.holder_id for n in result.versioned] == [fleet["a"].pk] and not result.created
    second = note_of(fleet["a"])
    first.refresh_from_db()
    assert not first.is_current and first.pdf  # the old version is kept
    assert second.version == 2 and second.replaces == first
    assert second.number == "TILLEULS-2025-10-0001-V2"
    assert second.session_count == 6 and second.amount == Decimal("10.13") + Decimal("0.94")
    text = pdf_text(second.pdf.read())
    assert "replaces note TILLEULS-2025-10-0001" in text and "€10.13" in text
    assert "Difference: €0.94" in text


def test_a_corrected_session_versions_the_note_and_removing_all_cancels_it(community, fleet):
    generate(community)
    b_note = note_of(fleet["b"])
    session = fleet["b"].charging_sessions.get()
    session.holder = None  # the card was not theirs
    session.save()
    result = generate(community)
    cancel = note_of(fleet["b"])
    assert result.versioned == [cancel] and cancel.replaces == b_note
    assert cancel.session_count == 0 and cancel.amount == 0
    assert "cancels the previous one" in pdf_text(cancel.pdf.read())


def test_month_without_sessions_has_no_note(community, fleet):
    assert generate(community, 2025, 8).created == []


def test_unfinished_month_refused(community, fleet):
    with pytest.raises(BillingError):
        generate(community, 2025, 11)


def test_driver_who_left_keeps_notes(community, fleet):
    generate(community)
    Membership.objects.filter(user=fleet["a"]).update(state=Membership.State.LEFT)
    assert generate(community).unchanged == 2
    assert note_of(fleet["a"]).holder_name == "Lucas Bernard"


# --- sending ---------------------------------------------------------------------------------


def test_send_month_sends_one_email_to_finance_and_copies_once(community, fleet):
    generate(community)
    result = send(community)
    assert (result.finance_sent, result.driver_sent, result.failed) == (2, 2, [])
    finance = [m for m in mail.outbox if m.to == ["finance@tilleuls.example"]]
    assert len(finance) == 1
    names = sorted(a[0] for a in finance[0].attachments)
    assert names == [
        "TILLEULS-2025-10-0001.pdf",
        "TILLEULS-2025-10-0002.pdf",
        "expense-notes-tilleuls-2025-10.csv",
    ]
    csv_text = dict((a[0], a[1]) for a in finance[0].attachments)[
        "expense-notes-tilleuls-2025-10.csv"
    ]
    assert "TILLEULS-2025-10-0001,1,,Lucas Bernard,2025-10,5,36.304,10.13,EUR" in csv_text
    lucas = [m for m in mail.outbox if m.to == ["lucas@x.example"]]
    assert len(lucas) == 1 and "octobre 2025" in lucas[0].subject  # his language
    assert "Note de frais" in pdf_text(lucas[0].attachments[0][1])
    assert NoteDispatch.objects.filter(status=NoteDispatch.Status.SENT).count() == 4

    again = send(community)
    assert (again.finance_sent, again.driver_sent) == (0, 0)
    assert len(mail.outbox) == 3


def test_a_large_month_goes_to_finance_in_parts_each_marked_as_it_leaves(
    community, fleet, settings
):
    """Each part's PDFs stay under EXPENSE_NOTES_FINANCE_PART_MB (here: one PDF per part); every
    part carries the month's CSV and total and says which part it is."""
    generate(community)
    settings.EXPENSE_NOTES_FINANCE_PART_MB = 0.001
    result = send(community)
    assert (result.finance_sent, result.failed) == (2, [])
    finance = [m for m in mail.outbox if m.to == ["finance@tilleuls.example"]]
    assert [m.subject.rsplit("—", 1)[-1].strip() for m in finance] == [
        "part 1 of 2",
        "part 2 of 2",
    ]
    assert [[a[0] for a in m.attachments] for m in finance] == [
        ["TILLEULS-2025-10-0001.pdf", "expense-notes-tilleuls-2025-10.csv"],
        ["TILLEULS-2025-10-0002.pdf", "expense-notes-tilleuls-2025-10.csv"],
    ]
    for m in finance:
        csv_text = m.attachments[1][1]
        assert "TILLEULS-2025-10-0001" in csv_text and "TILLEULS-2025-10-0002" in csv_text
        assert "this is part" in m.body and "16.37" in m.body  # the month's total
    assert "TILLEULS-2025-10-0002" not in finance[0].body.split("Total")[0]


class SecondMessageFails:
    sent = 0

    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        SecondMessageFails.sent += 1
        if SecondMessageFails.sent == 2:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        mail.outbox.extend(messages)
        return len(messages)


def test_a_failed_part_leaves_only_its_notes_for_the_retry(community, fleet, settings):
    generate(community)
    settings.EXPENSE_NOTES_FINANCE_PART_MB = 0.001
    settings.EMAIL_BACKEND = "tests.billing.test_expense_notes.SecondMessageFails"
    SecondMessageFails.sent = 0
    result = send(community)
    assert result.finance_sent == 1 and result.failed
    finance = NoteDispatch.objects.filter(kind=NoteDispatch.Kind.FINANCE).order_by("note__sequence")
    assert [d.status for d in finance] == ["sent", "failed"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EXPENSE_NOTES_FINANCE_PART_MB = 12
    mail.outbox.clear()
    retry = send(community)
    assert retry.finance_sent == 1
    (again,) = [m for m in mail.outbox if m.to == ["finance@tilleuls.example"]]
    assert [a[0] for a in again.attachments][0] == "TILLEULS-2025-10-0002.pdf"
    assert "part" not in again.subject


def test_new_version_is_sent_alone(community, fleet):
    generate(community)
    send(community)
    mail.outbox.clear()
    make_session(
        fleet["charger"],
        None,
        fleet["b"],
        None,
        energy_wh="1000",
        started_at=local(community, 2025, 10, 22, 9, 0),
    )
    generate(community)
    send(community)
    finance = [m for m in mail.outbox if m.to == ["finance@tilleuls.example"]]
    assert len(finance) == 1
    assert [a[0] for a in finance[0].attachments][0] == "TILLEULS-2025-10-0002-V2.pdf"
    assert "replaces TILLEULS-2025-10-0002" in finance[0].body


def test_no_recipient_creates_notes_and_sends_nothing(community, fleet):
    community.expense_email = ""
    community.save()
    generate(community)
    result = send(community)
    assert result.finance_sent == 0 and "No expense-note recipient" in result.not_sent_reason
    assert ExpenseNote.objects.count() == 2
    assert not NoteDispatch.objects.filter(kind=NoteDispatch.Kind.FINANCE).exists()


class FailingBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


def test_failed_send_is_recorded_then_retried(community, fleet, settings):
    generate(community)
    settings.EMAIL_BACKEND = "tests.billing.test_expense_notes.FailingBackend"
    result = send(community)
    assert result.failed and result.finance_sent == 0
    failed = NoteDispatch.objects.filter(status=NoteDispatch.Status.FAILED)
    assert failed.count() == 4 and "Connection unexpectedly closed" in failed.first().error
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    retry = send(community)
    assert (retry.finance_sent, retry.driver_sent) == (2, 2)
    assert set(NoteDispatch.objects.values_list("status", flat=True)) == {"sent"}
    assert NoteDispatch.objects.filter(attempts=2).count() == 4


def test_manager_resends_a_note(community, fleet, manager):
    generate(community)
    send(community)
    mail.outbox.clear()
    resent = in_scope(
        community,
        dispatch.resend_note,
        note=note_of(fleet["a"]),
        kind=NoteDispatch.Kind.FINANCE,
        actor=manager,
    )
    assert resent.attempts == 2 and len(mail.outbox) == 1
    assert [a[0] for a in mail.outbox[0].attachments][0] == "TILLEULS-2025-10-0001.pdf"
    assert AuditEvent.objects.filter(action="expense_note.resend").exists()


# --- the month-end schedule ----------------------------------------------------------------


def test_month_end_is_due_after_the_1st_0600_local(community):
    # 1 November 2025, Paris is UTC+1: 06:00 local is 05:00 UTC.
    assert scheduling.month_end_due(community, datetime(2025, 11, 1, 4, 59, tzinfo=UTC)) is None
    assert scheduling.month_end_due(community, datetime(2025, 11, 1, 5, 0, tzinfo=UTC)) == (
        2025,
        10,
    )
    # 1 April 2025, summer time (UTC+2): 06:00 local is 04:00 UTC.
    assert scheduling.month_end_due(community, datetime(2025, 4, 1, 3, 59, tzinfo=UTC)) is None
    assert scheduling.month_end_due(community, datetime(2025, 4, 1, 4, 0, tzinfo=UTC)) == (2025, 3)
    assert scheduling.month_end_due(community, datetime(2025, 1, 1, 5, 0, tzinfo=UTC)) == (2024, 12)


def test_check_months_runs_the_month_once_and_versions_later_changes(community, fleet):
    ChargingSession.objects.update(updated_at=datetime(2025, 10, 31, 23, 0, tzinfo=UTC))
    with time_machine.travel(datetime(2025, 11, 1, 5, 30, tzinfo=UTC), tick=False):
        queued = check()
    assert (community.pk, 2025, 10, True) in queued
    assert ExpenseNote.objects.filter(year=2025, month=10).count() == 2
    assert len([m for m in mail.outbox if m.to == ["finance@tilleuls.example"]]) == 1
    with time_machine.travel(datetime(2025, 11, 1, 6, 30, tzinfo=UTC), tick=False):
        assert check() == []
    # A session of October corrected on the 3rd: next hour, a new version, sent.
    with time_machine.travel(datetime(2025, 11, 3, 9, 0, tzinfo=UTC), tick=False):
        s = fleet["b"].charging_sessions.get()
        s.energy_wh, s.cost = Decimal("21000"), Decimal("6.55")
        s.save()
    with time_machine.travel(datetime(2025, 11, 3, 10, 0, tzinfo=UTC), tick=False):
        queued = check()
    assert (community.pk, 2025, 10, True) in queued
    assert note_of(fleet["b"]).version == 2
    assert len([m for m in mail.outbox if m.to == ["finance@tilleuls.example"]]) == 2
    with time_machine.travel(datetime(2025, 11, 3, 11, 0, tzinfo=UTC), tick=False):
        check()
    with time_machine.travel(datetime(2025, 11, 3, 12, 0, tzinfo=UTC), tick=False):
        assert check() == []


# --- the command ---------------------------------------------------------------------------


def test_command_generates_and_sends(community, fleet):
    out = io.StringIO()
    call_command(
        "expense_notes", "--month", "2025-10", "--community", "tilleuls", "--send", stdout=out
    )
    assert "2 new" in out.getvalue() and "sent to finance 2" in out.getvalue()
    out = io.StringIO()
    call_command("expense_notes", "--month", "2025-10", "--send", stdout=out)
    assert "0 new" in out.getvalue() and "sent to finance 0, to drivers 0" in out.getvalue()
    assert len([m for m in mail.outbox if m.to == ["finance@tilleuls.example"]]) == 1


@pytest.mark.parametrize("month", ["2025-13", "25-10", "october", "2025-00"])
def test_command_refuses_an_invalid_month(db, month):
    with pytest.raises(CommandError, match="Invalid month"):
        call_command("expense_notes", "--month", month)


def test_command_refuses_an_unfinished_month_and_unknown_community(community):
    with pytest.raises(CommandError, match="not over yet"):
        call_command("expense_notes", "--month", "2025-11")
    with pytest.raises(CommandError, match="Unknown community"):
        call_command("expense_notes", "--month", "2025-10", "--community", "nope")


def test_rendering_gives_the_garbage_collector_back(community, fleet, monkeypatch):
    """The collector is held off during a rendering (billing.pdf) and restored after it, even
    when the rendering fails; a caller that disabled it keeps it disabled."""
    import gc

    import weasyprint

    generate(community)
    note = note_of(fleet["a"])
    assert "Lucas Bernard" in pdf_text(render_expense_note_pdf(note, "en"))
    assert gc.isenabled()
    gc.disable()
    try:
        render_expense_note_pdf(note, "en")
        assert not gc.isenabled()
    finally:
        gc.enable()

    def fail(*args, **kwargs):
        assert not gc.isenabled()  # held during the layout
        raise RuntimeError("layout failed")

    monkeypatch.setattr(weasyprint.HTML, "write_pdf", fail)
    with pytest.raises(RuntimeError):
        render_expense_note_pdf(note, "en")
    assert gc.isenabled()
