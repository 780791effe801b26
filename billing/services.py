"""Billing rules: which kWh price applies, setting a new one, and the monthly expense notes
(issuing and versioning them, sending them to finance and to drivers, exporting them).

Expense-note services take the community explicitly and run with scopes disabled inside, so
views (in the community scope), tasks and commands call them alike."""

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.core.files import File
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scopes_disabled

from chargers.models import ChargingSession
from communities.models import Community
from communities.services import audit
from sparklin.dates import month_bounds

from . import notes as note_data
from .emails import send_driver_email, send_finance_email
from .exports import write_notes_zip
from .models import ExpenseNote, ExpenseRun, ExportJob, NoteDispatch, Price
from .pdf import render_expense_note_pdf

logger = logging.getLogger(__name__)


class BillingError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


@transaction.atomic
def set_price(*, community: Community, actor, valid_from: date, price_per_kwh: Decimal) -> Price:
    """Add a kWh price in force from `valid_from` (community local date). Sessions already
    recorded keep the price they were given when they started; only sessions starting on or
    after that date use it."""
    if price_per_kwh < 0:
        raise BillingError(_("A price cannot be negative."))
    if (
        Price.objects.with_scopes_disabled()
        .filter(community=community, valid_from=valid_from)
        .exists()
    ):
        raise BillingError(_("A price already starts on this date."))
    price = Price.objects.create(
        community=community, valid_from=valid_from, price_per_kwh=price_per_kwh
    )
    audit(
        community=community,
        actor=actor,
        action="price.add",
        target=f"{price_per_kwh} @ {valid_from}",
        price_id=price.pk,
        valid_from=valid_from.isoformat(),
        price_per_kwh=str(price_per_kwh),
    )
    return price


# --- Expense notes ---------------------------------------------------------------------------

# Sessions saved up to this long before a check may still have been committing while it read:
# they are compared again at the next check (which costs a fingerprint, not a new note).
CHECK_MARGIN = timedelta(minutes=10)
# The month-end run starts on the 1st at this local time, for the month just ended.
MONTH_END_HOUR = 6


class DeliveryError(BillingError):
    """An e-mail could not be handed to the mail server; the dispatch is marked failed."""


def no_recipient_message() -> str:
    return _(
        "No expense-note recipient is set: notes are created but not e-mailed. "
        "Set the recipient's address in Company configuration."
    )


def check_month(community: Community, year: int, month: int, now: datetime | None = None):
    """Refuse a month that does not exist or is not over yet in the community's time zone:
    an issued note covers a whole month."""
    if not (2000 <= year <= 9999 and 1 <= month <= 12):
        raise BillingError(_("Invalid month: expected YYYY-MM, e.g. 2025-03."))
    _start, end = month_bounds(community, year, month)
    if end > (now or timezone.now()):
        raise BillingError(
            _("%(month)s is not over yet: its expense notes are issued once it has ended.")
            % {"month": f"{year:04d}-{month:02d}"}
        )


def note_number(community: Community, year: int, month: int, sequence: int, version: int) -> str:
    """`DEMO-2026-11-0007`, then `DEMO-2026-11-0007-V2` for its next version."""
    base = f"{community.slug.upper()}-{year:04d}-{month:02d}-{sequence:04d}"
    return base if version == 1 else f"{base}-V{version}"


def _locked_run(community: Community, year: int, month: int) -> ExpenseRun:
    run, _created = ExpenseRun.objects.get_or_create(community=community, year=year, month=month)
    return ExpenseRun.objects.select_for_update().get(pk=run.pk)


def _month_notes(community, year, month):
    return ExpenseNote.objects.filter(community=community, year=year, month=month)


@dataclass
class GenerateResult:
    created: list = field(default_factory=list)
    versioned: list = field(default_factory=list)
    unchanged: int = 0


def generate_month(
    *, community: Community, year: int, month: int, actor=None, now=None, progress=None
) -> GenerateResult:
    """Issue the month's expense notes: one per driver with completed sessions, none for a month
    without any. Idempotent: a driver whose issued note still matches their sessions gets
    nothing new; one whose sessions ended or changed since gets a new version (the old one is
    kept, no longer current); one whose sessions all went away gets an empty version that
    cancels the previous one. `progress(done, total)` is called after each PDF."""
    check_month(community, year, month, now)
    result = GenerateResult()
    with scopes_disabled(), transaction.atomic():
        run = _locked_run(community, year, month)
        checked_at = timezone.now() - CHECK_MARGIN
        drivers = note_data.drivers_of_month(community, year, month)
        current = {
            n.holder_id: n
            for n in _month_notes(community, year, month)
            .filter(is_current=True, holder__isnull=False)
            .select_related("holder")
        }
        todo = []
        for holder_id in sorted(set(drivers) | set(current)):
            driver = drivers.get(holder_id)
            lines = driver.lines if driver else []
            previous = current.get(holder_id)
            if previous is None and not lines:
                continue
            if previous is not None and previous.fingerprint == note_data.fingerprint(lines):
                result.unchanged += 1
                continue
            todo.append((driver, previous, lines))

        next_sequence = (
            _month_notes(community, year, month).aggregate(m=Max("sequence"))["m"] or 0
        ) + 1
        language = note_data.finance_language(community)
        for done, (driver, previous, lines) in enumerate(todo, 1):
            if previous is not None:
                previous.is_current = False
                previous.save(update_fields=["is_current"])
                sequence, version = previous.sequence, previous.version + 1
            else:
                sequence, version = next_sequence, 1
                next_sequence += 1
            holder = driver.holder if driver else previous.holder
            note = ExpenseNote(
                community=community,
                holder=holder,
                holder_name=note_data.holder_name(holder),
                year=year,
                month=month,
                sequence=sequence,
                version=version,
                number=note_number(community, year, month, sequence, version),
                replaces=previous,
                language=language,
                currency=community.currency,
                time_zone=community.time_zone,
                community_name=community.name,
                community_address=community.address,
                lines=lines,
                session_count=len(lines),
                energy_wh=sum((Decimal(x["energy_wh"]) for x in lines), Decimal(0)),
                amount=sum((Decimal(x["amount"]) for x in lines), Decimal(0)),
                fingerprint=note_data.fingerprint(lines),
            )
            note.pdf.save(
                f"{note.number}.pdf", ContentFile(render_expense_note_pdf(note)), save=False
            )
            note.save()
            (result.versioned if previous else result.created).append(note)
            if progress:
                progress(done, len(todo))
        run.generated_at = timezone.now()
        run.checked_at = checked_at
        run.save(update_fields=["generated_at", "checked_at"])
        if todo:
            audit(
                community=community,
                actor=actor,
                action="expense_notes.generate",
                target=f"{year:04d}-{month:02d}",
                created=len(result.created),
                versioned=[n.number for n in result.versioned],
            )
    return result


@dataclass
class SendResult:
    finance_sent: int = 0
    driver_sent: int = 0
    failed: list = field(default_factory=list)  # error texts
    not_sent_reason: str = ""
    drivers_without_email: int = 0


def _mark(ids, *, status, to, error=""):
    NoteDispatch.objects.filter(pk__in=ids).update(
        status=status,
        to_email=to,
        error=error[:500],
        attempts=F("attempts") + 1,
        sent_at=timezone.now() if status == NoteDispatch.Status.SENT else None,
        updated_at=timezone.now(),
    )


def _unsent(community, year, month, kind):
    sent = NoteDispatch.objects.filter(
        note=OuterRef("pk"), kind=kind, status=NoteDispatch.Status.SENT
    )
    return (
        _month_notes(community, year, month)
        .filter(is_current=True)
        .exclude(Exists(sent))
        .select_related("replaces", "holder")
        .order_by("sequence")
    )


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def send_month(*, community: Community, year: int, month: int, actor=None) -> SendResult:
    """E-mail the month's current notes that were not sent yet: one message to the community's
    expense-note recipient with every such PDF and the CSV summary, and each driver a copy of
    their own note. Sending twice sends nothing new: each (note, recipient kind) has one
    dispatch row, created and marked under the month's lock. A failed send is recorded (status
    failed, reason) and left for the next attempt; the result lists the failures."""
    result = SendResult()
    with scopes_disabled():
        # A month someone sent is a month whose later versions are sent too (hourly check).
        ExpenseRun.objects.filter(community=community, year=year, month=month).update(
            auto_send=True
        )
        if community.expense_email:
            _send_finance(community, year, month, result)
        else:
            result.not_sent_reason = no_recipient_message()
        _send_driver_copies(community, year, month, result)
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


def _send_finance(community, year, month, result: SendResult) -> None:
    with transaction.atomic():
        _locked_run(community, year, month)
        notes = list(_unsent(community, year, month, NoteDispatch.Kind.FINANCE))
        if not notes:
            return
        to = community.expense_email
        ids = [
            NoteDispatch.objects.get_or_create(
                note=n,
                kind=NoteDispatch.Kind.FINANCE,
                defaults={"community": community, "to_email": to},
            )[0].pk
            for n in notes
        ]
        try:
            send_finance_email(
                community=community,
                notes=notes,
                to=to,
                language=note_data.finance_language(community),
                year=year,
                month=month,
            )
        except OSError as e:  # smtplib.SMTPException is an OSError
            logger.warning("Expense notes %s-%s to %s failed: %s", year, month, to, e)
            _mark(ids, status=NoteDispatch.Status.FAILED, to=to, error=_error_text(e))
            result.failed.append(_error_text(e))
        else:
            _mark(ids, status=NoteDispatch.Status.SENT, to=to)
            result.finance_sent += len(notes)


def _send_driver_copies(community, year, month, result: SendResult) -> None:
    for note in _unsent(community, year, month, NoteDispatch.Kind.DRIVER):
        to = note.holder.email if note.holder else ""
        if not to:
            result.drivers_without_email += 1
            continue
        with transaction.atomic():
            dispatch, _created = NoteDispatch.objects.get_or_create(
                note=note,
                kind=NoteDispatch.Kind.DRIVER,
                defaults={"community": community, "to_email": to},
            )
            dispatch = NoteDispatch.objects.select_for_update().get(pk=dispatch.pk)
            if dispatch.status == NoteDispatch.Status.SENT:
                continue  # another worker sent it while we were looking
            try:
                send_driver_email(note=note, to=to, language=note.holder.language)
            except OSError as e:
                _mark([dispatch.pk], status=NoteDispatch.Status.FAILED, to=to, error=_error_text(e))
                result.failed.append(_error_text(e))
            else:
                _mark([dispatch.pk], status=NoteDispatch.Status.SENT, to=to)
                result.driver_sent += 1


def resend_note(*, note: ExpenseNote, kind: str, actor) -> NoteDispatch:
    """A manager sends one note again, now, to finance or to its driver, whether or not it was
    sent before (a lost e-mail, a new recipient)."""
    community = note.community
    with scopes_disabled():
        if kind == NoteDispatch.Kind.FINANCE:
            to = community.expense_email
            if not to:
                raise BillingError(no_recipient_message())
        else:
            to = note.holder.email if note.holder else ""
            if not to:
                raise BillingError(_("This driver has no e-mail address."))
        failure = None
        with transaction.atomic():
            _locked_run(community, note.year, note.month)
            dispatch, _created = NoteDispatch.objects.get_or_create(
                note=note, kind=kind, defaults={"community": community, "to_email": to}
            )
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


def _parse_months(months) -> list[tuple[int, int]]:
    return sorted({(int(m[:4]), int(m[5:7])) for m in months})


@transaction.atomic
def request_send(*, community: Community, actor, months: list[str]) -> int:
    """ "Send now" from the Tools tab: issue the chosen months' notes and e-mail what was not
    sent yet, in the background. Versions issued later for these months are sent too."""
    from .tasks import run_month

    parsed = _parse_months(months)
    for year, month in parsed:
        check_month(community, year, month)
    if not community.expense_email:
        raise BillingError(no_recipient_message())
    with scopes_disabled():
        for year, month in parsed:
            run, _created = ExpenseRun.objects.get_or_create(
                community=community, year=year, month=month
            )
            ExpenseRun.objects.filter(pk=run.pk).update(auto_send=True)
            transaction.on_commit(lambda y=year, m=month: run_month.delay(community.pk, y, m, True))
        audit(
            community=community,
            actor=actor,
            action="expense_notes.send_request",
            target=", ".join(months),
        )
    return len(parsed)


@transaction.atomic
def start_export(*, community: Community, actor, months: list[str]) -> ExportJob:
    """A ZIP of the chosen months' notes (issued first if needed), built by a task."""
    from .tasks import build_export

    parsed = _parse_months(months)
    for year, month in parsed:
        check_month(community, year, month)
    with scopes_disabled():
        job = ExportJob.objects.create(
            community=community,
            requested_by=actor if actor and actor.pk else None,
            months=[f"{y:04d}-{m:02d}" for y, m in parsed],
            total=len(parsed),
        )
        audit(community=community, actor=actor, action="expense_notes.export", target=job.months)
    transaction.on_commit(lambda: build_export.delay(job.pk))
    return job


def build_export_zip(*, job: ExportJob) -> ExportJob:
    """The work of an export job: issue each month's notes, then ZIP the current ones. Progress
    is written as it goes (outside any long transaction) so the page can poll it."""
    community = job.community
    with scopes_disabled():
        if job.finished:
            return job
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportJob.Status.RUNNING, stage=ExportJob.Stage.GENERATE, done=0
        )
        try:
            parsed = _parse_months(job.months)
            for done, (year, month) in enumerate(parsed, 1):
                generate_month(community=community, year=year, month=month, actor=job.requested_by)
                ExportJob.objects.filter(pk=job.pk).update(done=done)
            notes = list(
                ExpenseNote.objects.filter(community=community, is_current=True)
                .filter(months_q(parsed))
                .select_related("replaces")
                .order_by("year", "month", "sequence")
            )
            ExportJob.objects.filter(pk=job.pk).update(
                stage=ExportJob.Stage.ZIP, done=0, total=len(notes)
            )

            def progress(done):
                if done % 20 == 0 or done == len(notes):
                    ExportJob.objects.filter(pk=job.pk).update(done=done)

            with tempfile.TemporaryFile() as tmp:
                write_notes_zip(tmp, notes, progress)
                tmp.seek(0)
                job.refresh_from_db()
                name = f"expense-notes-{community.slug}-{'_'.join(job.months)}.zip"
                job.file.save(name, File(tmp), save=False)
            job.status = ExportJob.Status.DONE
            job.finished_at = timezone.now()
            job.save(update_fields=["file", "status", "finished_at"])
        except Exception as e:
            logger.exception("Export %s failed", job.pk)
            ExportJob.objects.filter(pk=job.pk).update(
                status=ExportJob.Status.FAILED, error=_error_text(e), finished_at=timezone.now()
            )
            raise
    job.refresh_from_db()
    return job


def months_q(parsed):
    from django.db.models import Q

    q = Q(pk__in=[])
    for year, month in parsed:
        q |= Q(year=year, month=month)
    return q


def previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def month_end_due(community: Community, now: datetime) -> tuple[int, int] | None:
    """The month whose run is due: the previous month once it is past the 1st at 06:00 in the
    community's time zone (an aware comparison, so DST changes move nothing), else None."""
    tz = community.tz
    local = timezone.localtime(now, tz)
    if local < datetime(local.year, local.month, 1, MONTH_END_HOUR, tzinfo=tz):
        return None
    return previous_month(local.year, local.month)


def check_months(*, now: datetime | None = None) -> list[tuple[int, int, int, bool]]:
    """The hourly beat check, over every community. Returns the (community id, year, month,
    send) runs it queued:

    - the month just ended, once per month after the 1st 06:00 local time (and again while a
      queued run has not completed), issued and sent;
    - any issued month whose sessions changed since it was last compared (a session that ended
      or was corrected): issued again, so changed notes get a new version, sent if the month is;
    - any sent month with failed dispatches: sent again (tasks also retry with backoff; this
      keeps retrying after they give up, until the mail server takes it)."""
    from .tasks import run_month, send_month_task

    now = now or timezone.now()
    queued = []
    with scopes_disabled():
        for community in Community.objects.all():
            due = month_end_due(community, now)
            if due is not None:
                with transaction.atomic():
                    run, _created = ExpenseRun.objects.get_or_create(
                        community=community, year=due[0], month=due[1]
                    )
                    run = ExpenseRun.objects.select_for_update().get(pk=run.pk)
                    if run.scheduled_at is None:
                        run.scheduled_at = now
                        run.auto_send = True
                        run.save(update_fields=["scheduled_at", "auto_send"])
                    if run.generated_at is None or run.generated_at < run.scheduled_at:
                        queued.append((community.pk, due[0], due[1], True))
            for run in ExpenseRun.objects.filter(community=community, generated_at__isnull=False):
                if (community.pk, run.year, run.month, True) in queued:
                    continue
                start, end = month_bounds(community, run.year, run.month)
                changed = ChargingSession.objects.filter(
                    community=community,
                    started_at__gte=start,
                    started_at__lt=end,
                    updated_at__gt=run.checked_at or run.generated_at,
                ).exists()
                if changed:
                    queued.append((community.pk, run.year, run.month, run.auto_send))
                elif (
                    run.auto_send
                    and NoteDispatch.objects.filter(
                        note__community=community,
                        note__year=run.year,
                        note__month=run.month,
                        status=NoteDispatch.Status.FAILED,
                    ).exists()
                ):
                    queued.append((community.pk, run.year, run.month, None))
    for community_id, year, month, send in queued:
        if send is None:
            send_month_task.delay(community_id, year, month)
        else:
            run_month.delay(community_id, year, month, send)
    return queued
