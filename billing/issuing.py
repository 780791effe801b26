"""Issuing a month of expense notes: new notes, new versions of changed ones, their numbers,
snapshots and fingerprints, and the dispatch rows of a month that is to be sent — all in one
short transaction under the month's lock. Nothing slow happens inside it: each note's PDF is
rendered by its own task queued once the rows are committed (`billing.rendering`), and the
e-mails leave after that (`billing.dispatch`), as pretix does with `invoice_pdf_task`."""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from communities.models import Community
from communities.services import audit

from . import notes as note_data
from .models import ExpenseNote, ExpenseRun, NoteDispatch
from .months import check_month

logger = logging.getLogger(__name__)

# Sessions saved up to this long before a check may still have been committing while it read:
# they are compared again at the next check (which costs a fingerprint, not a new note).
CHECK_MARGIN = timedelta(minutes=10)


def note_number(community: Community, year: int, month: int, sequence: int, version: int) -> str:
    """`DEMO-2026-11-0007`, then `DEMO-2026-11-0007-V2` for its next version."""
    base = f"{community.slug.upper()}-{year:04d}-{month:02d}-{sequence:04d}"
    return base if version == 1 else f"{base}-V{version}"


def locked_run(community: Community, year: int, month: int) -> ExpenseRun:
    """The month's run row, locked until the end of the caller's transaction. It serialises
    issuing a month and claiming its finance e-mail; it is never held while a PDF is rendered or
    a mail server is talked to."""
    run, _created = ExpenseRun.objects.get_or_create(community=community, year=year, month=month)
    return ExpenseRun.objects.select_for_update().get(pk=run.pk)


def month_notes(community: Community, year: int, month: int):
    return ExpenseNote.objects.filter(community=community, year=year, month=month)


@dataclass
class GenerateResult:
    created: list = field(default_factory=list)
    versioned: list = field(default_factory=list)
    unchanged: int = 0

    @property
    def issued(self) -> list:
        return self.created + self.versioned


def generate_month(
    *, community: Community, year: int, month: int, actor=None, now=None, send: bool = False
) -> GenerateResult:
    """Issue the month's expense notes: one per driver with completed sessions, none for a month
    without any. Idempotent: a driver whose issued note still matches their sessions gets
    nothing new; one whose sessions ended or changed since gets a new version (the old one is
    kept, no longer current); one whose sessions all went away gets an empty version that
    cancels the previous one.

    `send` marks the month as one whose notes are e-mailed (now and its later versions). In a
    month that is sent, each new note gets its dispatch rows (finance, driver) in the same
    transaction, so "is it sent?" always has an answer. The PDFs are rendered after commit, one
    task per note; the e-mails follow them."""
    check_month(community, year, month, now)
    result = GenerateResult()
    with transaction.atomic():
        run = locked_run(community, year, month)
        checked_at = timezone.now() - CHECK_MARGIN
        drivers = note_data.drivers_of_month(community, year, month)
        current = {
            n.holder_id: n
            for n in month_notes(community, year, month)
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

        replaced = [previous.pk for _driver, previous, _lines in todo if previous is not None]
        if replaced:
            # Before the new versions exist: one current note per driver and month.
            ExpenseNote.objects.filter(pk__in=replaced).update(is_current=False)
            # A version replaced before it was ever sent is not sent any more.
            NoteDispatch.objects.filter(
                note__in=replaced, status=NoteDispatch.Status.PENDING, attempts=0
            ).delete()

        next_sequence = (
            month_notes(community, year, month).aggregate(m=Max("sequence"))["m"] or 0
        ) + 1
        language = note_data.finance_language(community)
        created_at = timezone.now()
        new_notes = []
        for driver, previous, lines in todo:
            if previous is not None:
                sequence, version = previous.sequence, previous.version + 1
            else:
                sequence, version = next_sequence, 1
                next_sequence += 1
            if driver is not None:
                holder = driver.holder
            else:
                # A driver without sessions this month is in `todo` only to cancel their note.
                assert previous is not None
                holder = previous.holder
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
                created_at=created_at,
            )
            new_notes.append(note)
            (result.versioned if previous else result.created).append(note)
        ExpenseNote.objects.bulk_create(new_notes, batch_size=500)

        if send and not run.auto_send:
            run.auto_send = True
        if run.auto_send:
            create_dispatches(community, new_notes)
        run.generated_at = timezone.now()
        run.checked_at = checked_at
        run.save(update_fields=["generated_at", "checked_at", "auto_send"])
        if todo:
            audit(
                community=community,
                actor=actor,
                action="expense_notes.generate",
                target=f"{year:04d}-{month:02d}",
                created=len(result.created),
                versioned=[n.number for n in result.versioned],
            )
        if new_notes:
            ids = [n.pk for n in new_notes]
            transaction.on_commit(lambda: queue_renders(community.pk, ids))
    return result


def create_dispatches(community: Community, notes) -> None:
    """The dispatch rows (pending) of notes that are to be e-mailed: to finance when the
    community has a recipient, to the driver when they have an address. Existing rows are kept
    as they are (unique per note and kind)."""
    rows = []
    for note in notes:
        if community.expense_email:
            rows.append(
                NoteDispatch(
                    community=community,
                    note=note,
                    kind=NoteDispatch.Kind.FINANCE,
                    to_email=community.expense_email,
                )
            )
        email = note.holder.email if note.holder_id else ""
        if email:
            rows.append(
                NoteDispatch(
                    community=community, note=note, kind=NoteDispatch.Kind.DRIVER, to_email=email
                )
            )
    NoteDispatch.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)


def queue_renders(community_id: int, note_ids: list[int]) -> None:
    """One rendering task per note (after commit: the workers must find the rows)."""
    from .tasks import render_note

    for note_id in note_ids:
        render_note.delay(community=community_id, note=note_id)
