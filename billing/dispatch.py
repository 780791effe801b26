"""Sending expense notes: to the community's expense-note recipient (finance: one e-mail per
month with the PDFs of the notes not sent yet and the CSV summary) and to each driver (a copy
of their own note).

Exactly once per (note version, recipient kind): each has one `NoteDispatch` row. A sender
first *claims* rows in a short transaction (`claimed_at`), commits, talks to the mail server
outside any lock, then marks the rows sent or failed (releasing the claim). Two workers never
send the same row: only one claim succeeds. A claim older than `CLAIM_TIMEOUT` (its worker died
mid-send) can be taken again — the one case where a message may go out twice, as with any
mail queue that cannot know whether the server kept a message it never acknowledged."""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from communities.models import Community
from communities.services import audit

from . import notes as note_data
from .emails import finance_parts, send_driver_email, send_finance_email
from .issuing import create_dispatches, locked_run, month_notes
from .models import ExpenseNote, ExpenseRun, NoteDispatch
from .months import check_month, parse_months
from .rendering import month_has_all_pdfs
from .services import BillingError

logger = logging.getLogger(__name__)

# Longer than any send can take (the SMTP connection times out well before, see emails.py).
CLAIM_TIMEOUT = timedelta(minutes=15)


class DeliveryError(BillingError):
    """An e-mail could not be handed to the mail server; the dispatch is marked failed."""


def no_recipient_message() -> str:
    return _(
        "No expense-note recipient is set: notes are created but not e-mailed. "
        "Set the recipient's address in Company configuration."
    )


@dataclass
class SendResult:
    finance_sent: int = 0
    driver_sent: int = 0
    failed: list = field(default_factory=list)  # error texts
    not_sent_reason: str = ""
    drivers_without_email: int = 0
    waiting_for_pdfs: bool = False


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _claimable(now):
    return ~Q(status=NoteDispatch.Status.SENT) & (
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_TIMEOUT)
    )


def _mark(ids, *, status, to, error=""):
    now = timezone.now()
    NoteDispatch.objects.filter(pk__in=ids).update(
        status=status,
        to_email=to,
        error=error[:500],
        attempts=F("attempts") + 1,
        sent_at=now if status == NoteDispatch.Status.SENT else None,
        claimed_at=None,
        updated_at=now,
    )


def _unsent(community, year, month, kind):
    sent = NoteDispatch.objects.filter(
        note=OuterRef("pk"), kind=kind, status=NoteDispatch.Status.SENT
    )
    return (
        month_notes(community, year, month)
        .filter(is_current=True)
        .exclude(Exists(sent))
        .select_related("replaces", "holder")
        .order_by("sequence")
    )


def send_month(*, community: Community, year: int, month: int, actor=None) -> SendResult:
    """E-mail the month's current notes that were not sent yet: finance once every current note
    of the month has its PDF, and each driver whose note has its PDF. Sending twice sends
    nothing new. A failed send is recorded (status failed, reason) and left for the next
    attempt; the result lists the failures. The month becomes one whose later versions are
    sent too (the hourly check)."""
    result = SendResult()
    with transaction.atomic():
        run = locked_run(community, year, month)
        if not run.auto_send:
            run.auto_send = True
            run.save(update_fields=["auto_send"])
        create_dispatches(community, _unsent_any(community, year, month))
    if community.expense_email:
        send_finance(community=community, year=year, month=month, result=result)
    else:
        result.not_sent_reason = no_recipient_message()
    for note in _unsent(community, year, month, NoteDispatch.Kind.DRIVER).exclude(pdf=""):
        send_driver_copy(note=note, result=result)
    if result.finance_sent or result.driver_sent or result.failed:
        audit(
            community=community,
            actor=actor,
            action="expense_notes.send",
            target=f"{year:04d}-{month:02d}",
            finance=result.finance_sent,
            drivers=result.driver_sent,
            failed=result.failed,
        )
    return result


def _unsent_any(community, year, month):
    return month_notes(community, year, month).filter(is_current=True).select_related("holder")


def send_finance(
    *, community: Community, year: int, month: int, result: SendResult | None = None
) -> SendResult:
    """The month's e-mail to the expense-note recipient with every current note not sent to
    them yet — once every current note of the month has its PDF (until then it waits: the
    last rendering task calls again)."""
    result = result or SendResult()
    to = community.expense_email
    if not to:
        result.not_sent_reason = no_recipient_message()
        return result
    now = timezone.now()
    with transaction.atomic():
        locked_run(community, year, month)  # one claimer at a time for the month's message
        if not month_has_all_pdfs(community, year, month):
            result.waiting_for_pdfs = True
            return result
        notes = list(_unsent(community, year, month, NoteDispatch.Kind.FINANCE))
        if not notes:
            return result
        create_dispatches(community, notes)
        dispatches = NoteDispatch.objects.filter(note__in=notes, kind=NoteDispatch.Kind.FINANCE)
        ids = list(dispatches.values_list("pk", flat=True))
        if dispatches.filter(_claimable(now)).count() != len(ids):
            return result  # another worker is sending them right now
        dispatches.update(claimed_at=now, to_email=to)
    # Claimed and committed: the mail server is talked to outside any lock. A large month goes
    # in parts (`finance_parts`), each marked sent as it leaves: a failure leaves only the
    # notes not sent yet for the retry.
    by_note = dict(dispatches.values_list("note_id", "pk"))
    parts = finance_parts(notes)
    for number, part in enumerate(parts, start=1):
        part_ids = [by_note[note.pk] for note in part]
        try:
            send_finance_email(
                community=community,
                notes=part,
                to=to,
                language=note_data.finance_language(community),
                year=year,
                month=month,
                part=number,
                parts=len(parts),
                summary=notes,
            )
        except OSError as e:  # smtplib.SMTPException is an OSError
            logger.warning("Expense notes %s-%s to %s failed: %s", year, month, to, e)
            unsent = [by_note[n.pk] for later in parts[number - 1 :] for n in later]
            _mark(unsent, status=NoteDispatch.Status.FAILED, to=to, error=_error_text(e))
            result.failed.append(_error_text(e))
            break
        _mark(part_ids, status=NoteDispatch.Status.SENT, to=to)
        result.finance_sent += len(part)
    return result


def send_driver_copy(
    *, note: ExpenseNote, result: SendResult | None = None, row: NoteDispatch | None = None
) -> SendResult:
    """A driver's copy of their current note, once its PDF is stored, unless already sent.
    `row`: the note's driver dispatch when the caller has just read it (else looked up, or
    created)."""
    result = result or SendResult()
    holder = note.holder if note.holder_id else None
    to = holder.email if holder is not None else ""
    if holder is None or not to:
        result.drivers_without_email += 1
        return result
    if not note.is_current or not note.pdf:
        return result
    now = timezone.now()
    dispatch = row
    if dispatch is None:
        dispatch, _created = NoteDispatch.objects.get_or_create(
            note=note,
            kind=NoteDispatch.Kind.DRIVER,
            defaults={"community_id": note.community_id, "to_email": to},
        )
    # The claim: one conditional UPDATE; of two workers only one sees it succeed.
    claimed = (
        NoteDispatch.objects.filter(pk=dispatch.pk)
        .filter(_claimable(now))
        .update(claimed_at=now, to_email=to)
    )
    if not claimed:
        return result  # sent already, or being sent by another worker
    try:
        send_driver_email(note=note, to=to, language=holder.language)
    except OSError as e:
        _mark([dispatch.pk], status=NoteDispatch.Status.FAILED, to=to, error=_error_text(e))
        result.failed.append(_error_text(e))
    else:
        _mark([dispatch.pk], status=NoteDispatch.Status.SENT, to=to)
        result.driver_sent += 1
    return result


def resend_note(*, note: ExpenseNote, kind: str, actor) -> NoteDispatch:
    """A manager sends one note again, now, to finance or to its driver, whether or not it was
    sent before (a lost e-mail, a new recipient)."""
    community = note.community
    if kind == NoteDispatch.Kind.FINANCE:
        to = community.expense_email
        if not to:
            raise BillingError(no_recipient_message())
    else:
        to = note.holder.email if note.holder else ""
        if not to:
            raise BillingError(_("This driver has no e-mail address."))
    dispatch, _created = NoteDispatch.objects.get_or_create(
        note=note, kind=kind, defaults={"community": community, "to_email": to}
    )
    failure = None
    try:
        if kind == NoteDispatch.Kind.FINANCE:
            send_finance_email(
                community=community,
                notes=[note],
                to=to,
                language=note_data.finance_language(community),
                year=note.year,
                month=note.month,
            )
        else:
            assert note.holder is not None  # a driver's copy is refused above without one
            send_driver_email(note=note, to=to, language=note.holder.language)
    except OSError as e:
        failure = _error_text(e)
        _mark([dispatch.pk], status=NoteDispatch.Status.FAILED, to=to, error=failure)
    else:
        _mark([dispatch.pk], status=NoteDispatch.Status.SENT, to=to)
    audit(
        community=community,
        actor=actor,
        action="expense_note.resend",
        target=note.number,
        kind=kind,
        to=to,
        failed=failure or "",
    )
    if failure:
        raise DeliveryError(_("The e-mail could not be sent: %(error)s") % {"error": failure})
    dispatch.refresh_from_db()
    return dispatch


@transaction.atomic
def request_send(*, community: Community, actor, months: list[str]) -> int:
    """ "Send now" from the Tools tab: issue the chosen months' notes and e-mail what was not
    sent yet, in the background. Versions issued later for these months are sent too."""
    from .tasks import run_month

    parsed = parse_months(months)
    for year, month in parsed:
        check_month(community, year, month)
    if not community.expense_email:
        raise BillingError(no_recipient_message())
    for year, month in parsed:
        run, _created = ExpenseRun.objects.get_or_create(
            community=community, year=year, month=month
        )
        ExpenseRun.objects.filter(pk=run.pk).update(auto_send=True)
        transaction.on_commit(
            partial(run_month.delay, community=community.pk, year=year, month=month, send=True)
        )
    audit(
        community=community,
        actor=actor,
        action="expense_notes.send_request",
        target=", ".join(months),
    )
    return len(parsed)
