"""Each note's PDF, rendered once, after the note's row is committed and outside the month's
lock. Idempotent and crash-safe: a note whose PDF is stored is not rendered again; the file is
written first and the field set after it, under the note's row lock, at a name fixed by the
note's number — so a crash between the two leaves an orphan file that the next attempt
overwrites, never a note pointing at half a file."""

import logging

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Exists, Q, QuerySet

from communities.models import Community

from .models import ExpenseNote
from .pdf import render_expense_note_pdf

logger = logging.getLogger(__name__)


def store_note_pdf(note: ExpenseNote) -> bool:
    """Render and store `note`'s PDF unless it has one. Returns whether this call stored it
    (False when it was already there, or another worker stored it first)."""
    if note.pdf:
        return False
    data = render_expense_note_pdf(note)  # the slow part: no lock held
    field = note.pdf.field
    name = field.generate_filename(note, f"{note.number}.pdf")
    with transaction.atomic():
        locked = ExpenseNote.objects.select_for_update().only("pk", "pdf").get(pk=note.pk)
        if locked.pdf:
            return False  # another worker finished first; our bytes are dropped
        storage = field.storage
        if storage.exists(name):
            # Left by an attempt that died between writing and committing: nobody points at it.
            logger.info("Replacing orphan PDF %s", name)
            storage.delete(name)
        saved = storage.save(name, ContentFile(data))
        ExpenseNote.objects.filter(pk=note.pk).update(pdf=saved)
    note.pdf.name = saved
    return True


def notes_without_pdf(
    community: Community, year: int | None = None, month: int | None = None
) -> QuerySet[ExpenseNote]:
    notes = ExpenseNote.objects.filter(community=community, pdf="")
    if year is not None:
        assert month is not None, "a year is given with its month"
        notes = notes.filter(year=year, month=month)
    return notes.select_related("replaces").order_by("year", "month", "sequence", "version")


def _current_without_pdf(community: Community, year: int, month: int) -> QuerySet:
    return notes_without_pdf(community, year, month).filter(is_current=True)


def all_pdfs_stored(community: Community, year: int, month: int) -> Q:
    """The condition "every current note of the month has its PDF", to filter another query
    with (`month_has_all_pdfs` asks it alone)."""
    return ~Q(Exists(_current_without_pdf(community, year, month)))


def month_has_all_pdfs(community: Community, year: int, month: int) -> bool:
    """Every current note of the month has its PDF: the month can go to finance."""
    return not _current_without_pdf(community, year, month).exists()


def render_missing(community: Community, year: int, month: int) -> int:
    """Render here, one after the other, the month's notes that have no PDF yet (the command
    and export jobs, which need them all before going on). Returns how many it stored."""
    return sum(store_note_pdf(note) for note in notes_without_pdf(community, year, month))
