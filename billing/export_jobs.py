"""ZIP exports of expense notes (Tools tab): a job row, built by a task that issues the chosen
months, renders what has no PDF yet and writes the archive, reporting progress as it goes."""

import logging
import tempfile

from django.core.files import File
from django.db import transaction
from django.utils import timezone

from communities.models import Community
from communities.services import audit

from .exports import write_notes_zip
from .issuing import generate_month
from .models import ExpenseNote, ExportJob
from .months import check_month, months_q, parse_months
from .rendering import render_missing

logger = logging.getLogger(__name__)


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


@transaction.atomic
def start_export(*, community: Community, actor, months: list[str]) -> ExportJob:
    """A ZIP of the chosen months' notes (issued first if needed), built by a task."""
    from .tasks import build_export

    parsed = parse_months(months)
    for year, month in parsed:
        check_month(community, year, month)
    job = ExportJob.objects.create(
        community=community,
        requested_by=actor if actor and actor.pk else None,
        months=[f"{y:04d}-{m:02d}" for y, m in parsed],
        total=len(parsed),
    )
    audit(community=community, actor=actor, action="expense_notes.export", target=job.months)
    transaction.on_commit(lambda: build_export.delay(community=community.pk, job=job.pk))
    return job


def build_export_zip(*, job: ExportJob) -> ExportJob:
    """The work of an export job: issue each month's notes (and render the PDFs not rendered
    yet, here: the archive needs them all), then ZIP the current ones. Progress is written as
    it goes (outside any long transaction) so the page can poll it."""
    community = job.community
    if job.finished:
        return job
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportJob.Status.RUNNING, stage=ExportJob.Stage.GENERATE, done=0
    )
    try:
        parsed = parse_months(job.months)
        for done, (year, month) in enumerate(parsed, 1):
            generate_month(community=community, year=year, month=month, actor=job.requested_by)
            render_missing(community, year, month)
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
