"""Background work of the billing app: ids in, one service call. Every task but the hourly
check runs on `CommunityTask` (call it with `community=<id>`; the body gets the instance and runs
in its scope). Every task is idempotent (re-running issues, renders and sends nothing twice)
and `acks_late`.

The month-end pipeline: `run_month` issues the month's rows in one short transaction and, after
commit, queues one `render_note` per new note; each rendering sends its driver's e-mail itself
(a failed one goes on in `send_driver_copy`, retried with backoff) and, once the month's last
PDF is stored, queues the finance e-mail (`send_finance`). Several workers share a month that
way.

`check_months` runs hourly on the schedule in `CELERY_BEAT_SCHEDULE` (sparklin/settings.py)."""

from typing import Any, Literal, TypedDict

from celery import Task, shared_task
from django.db import DatabaseError

from communities.models import Community
from sparklin.tasks import CommunityTask

from . import dispatch, issuing, rendering, scheduling
from .export_jobs import build_export_zip
from .models import ExpenseNote, ExportJob, NoteDispatch


class _TaskOptions(TypedDict, total=False):
    """The options shared by several tasks, typed so that `shared_task`'s overloads apply."""

    bind: Literal[True]
    acks_late: bool
    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: int
    retry_backoff_max: int
    retry_jitter: bool
    max_retries: int | None


_DB_RETRY: _TaskOptions = {
    "bind": True,
    "acks_late": True,
    "autoretry_for": (DatabaseError,),
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 10,
}

# Delivery retries: 1, 2, 4 … 60 minutes, about a day in all; after that the hourly check
# keeps trying, and the portal shows the failure with its reason until it goes through.
SEND_RETRY_BASE = 60
SEND_RETRY_MAX = 3600
SEND_MAX_RETRIES = 30

_SEND: _TaskOptions = {
    "bind": True,
    "acks_late": True,
    "autoretry_for": (DatabaseError,),
    "max_retries": SEND_MAX_RETRIES,
}


def _retry_failed_send(task: Task[Any, Any], result: dispatch.SendResult) -> None:
    if result.failed and not task.request.is_eager:
        # In-process (embedded default, tests) there is no broker to come back later: the
        # failure stays recorded and the hourly check retries it.
        countdown = min(SEND_RETRY_MAX, SEND_RETRY_BASE * 2**task.request.retries)
        raise task.retry(countdown=countdown, exc=dispatch.DeliveryError(result.failed[0]))


@shared_task(name="billing.tasks.check_months", **_DB_RETRY)
def check_months(self: Task[[], int]) -> int:
    """Hourly: start the month-end run where it is due, re-issue months whose sessions changed,
    retry failed sends, re-queue lost renderings."""
    return len(scheduling.check_months())


@shared_task(name="billing.tasks.run_month", base=CommunityTask, **_DB_RETRY)
def run_month(
    self: CommunityTask, *, community: Community, year: int, month: int, send: bool = False
) -> dict[str, int]:
    """Issue a community's notes of one month (new ones and new versions); their PDFs and
    e-mails follow in their own tasks. With `send`, the month is sent, and what is left unsent
    from before (failures, notes issued before sending was asked) is sent now."""
    result = issuing.generate_month(community=community, year=year, month=month, send=send)
    if send:
        send_month_task.delay(community=community.pk, year=year, month=month)
    return {"created": len(result.created), "versioned": len(result.versioned)}


@shared_task(name="billing.tasks.render_note", base=CommunityTask, **_DB_RETRY)
def render_note(self: CommunityTask, *, community: Community, note: int) -> bool:
    """Render and store one note's PDF (nothing if it has one), then send its e-mails: the
    driver's copy here and now (a second task per note cost as much as the send itself; a
    failed send is recorded and handed to `send_driver_copy`, which retries it with backoff),
    and the finance e-mail, queued when it was the month's last PDF."""
    obj = ExpenseNote.objects.select_related("replaces", "holder").filter(pk=note).first()
    if obj is None:
        return False  # the community was deleted since
    stored = rendering.store_note_pdf(obj)
    if not obj.is_current:
        return stored
    pending = NoteDispatch.objects.filter(note__year=obj.year, note__month=obj.month).exclude(
        status=NoteDispatch.Status.SENT
    )
    # The driver's row read here is the one the send claims (no second lookup); the finance
    # check is one query for both of its conditions.
    driver = pending.filter(note=obj, kind=NoteDispatch.Kind.DRIVER).only("pk").first()
    if driver is not None:
        result = dispatch.send_driver_copy(note=obj, row=driver)
        if result.failed and not self.request.is_eager:
            send_driver_copy.apply_async(
                kwargs={"community": community.pk, "note": obj.pk}, countdown=SEND_RETRY_BASE
            )
    finance_due = pending.filter(
        rendering.all_pdfs_stored(community, obj.year, obj.month), kind=NoteDispatch.Kind.FINANCE
    )
    if finance_due.exists():
        send_finance.delay(community=community.pk, year=obj.year, month=obj.month)
    return stored


@shared_task(name="billing.tasks.send_driver_copy", base=CommunityTask, **_SEND)
def send_driver_copy(self: CommunityTask, *, community: Community, note: int) -> int:
    """E-mail a driver their note (once); retried with backoff while the send fails."""
    obj = ExpenseNote.objects.select_related("replaces", "holder").filter(pk=note).first()
    if obj is None:
        return 0
    result = dispatch.send_driver_copy(note=obj)
    _retry_failed_send(self, result)
    return result.driver_sent


@shared_task(name="billing.tasks.send_finance", base=CommunityTask, **_SEND)
def send_finance(self: CommunityTask, *, community: Community, year: int, month: int) -> int:
    """E-mail finance the month's notes not sent to them yet, once all have their PDF."""
    result = dispatch.send_finance(community=community, year=year, month=month)
    _retry_failed_send(self, result)
    return result.finance_sent


@shared_task(name="billing.tasks.send_month", base=CommunityTask, **_SEND)
def send_month_task(
    self: CommunityTask, *, community: Community, year: int, month: int
) -> dict[str, int]:
    """E-mail what was not sent yet of a month (finance and drivers); retried with backoff
    while a send fails. The sweeper behind "send now" and the hourly retries."""
    result = dispatch.send_month(community=community, year=year, month=month)
    _retry_failed_send(self, result)
    return {
        "finance": result.finance_sent,
        "drivers": result.driver_sent,
        "failed": len(result.failed),
    }


@shared_task(name="billing.tasks.build_export", base=CommunityTask, bind=True, acks_late=True)
def build_export(self: CommunityTask, *, community: Community, job: int) -> str:
    """Build the ZIP of an export job (the page polls its progress)."""
    obj = ExportJob.objects.select_related("community", "requested_by").get(pk=job)
    return build_export_zip(job=obj).status
