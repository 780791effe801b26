"""When expense notes are issued and sent without anyone asking: the month-end run and the
hourly check that catches what changed or did not go through since."""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django_scopes import scope

from chargers.models import ChargingSession
from communities.models import Community
from sparklin.dates import month_bounds

from .dispatch import CLAIM_TIMEOUT
from .models import ExpenseNote, ExpenseRun, NoteDispatch
from .months import previous_month

# The month-end run starts on the 1st at this local time, for the month just ended.
MONTH_END_HOUR = 6
# A note still without its PDF this long after it was issued lost its rendering task (a broker
# restarted empty, a task that gave up): the check queues it again.
RENDER_GRACE = timedelta(minutes=10)


def month_end_due(community: Community, now: datetime) -> tuple[int, int] | None:
    """The month whose run is due: the previous month once it is past the 1st at 06:00 in the
    community's time zone (an aware comparison, so DST changes move nothing), else None."""
    tz = community.tz
    local = timezone.localtime(now, tz)
    if local < datetime(local.year, local.month, 1, MONTH_END_HOUR, tzinfo=tz):
        return None
    return previous_month(local.year, local.month)


# A queued run: (community id, year, month, send); send None: only the sending is retried.
QueuedRun = tuple[int, int, int, bool | None]


def check_months(*, now: datetime | None = None) -> list[QueuedRun]:
    """The hourly beat check, over every community (the one place that looks across tenants:
    it lists the communities, then works inside each one's scope). Returns the (community id,
    year, month, send) runs it queued (send None: only the sending is retried):

    - the month just ended, once per month after the 1st 06:00 local time (and again while a
      queued run has not completed), issued and sent;
    - any issued month whose sessions changed since it was last compared (a session that ended
      or was corrected): issued again, so changed notes get a new version, sent if the month is;
    - any sent month with failed dispatches, or pending ones nobody is sending: sent again
      (tasks also retry with backoff; this keeps retrying after they give up, until the mail
      server takes it).

    Notes whose PDF was never stored (their task was lost) get their rendering task again."""
    from .issuing import queue_renders
    from .tasks import run_month, send_month_task

    now = now or timezone.now()
    queued: list[QueuedRun] = []
    renders = []
    for community in Community.objects.order_by("pk"):
        with scope(community=community):
            queued += _check_community(community, now)
            missing = list(
                ExpenseNote.objects.filter(
                    community=community, pdf="", created_at__lt=now - RENDER_GRACE
                ).values_list("pk", flat=True)
            )
            if missing:
                renders.append((community.pk, missing))
    for community_id, year, month, send in queued:
        if send is None:
            send_month_task.delay(community=community_id, year=year, month=month)
        else:
            run_month.delay(community=community_id, year=year, month=month, send=send)
    for community_id, note_ids in renders:
        queue_renders(community_id, note_ids)
    return queued


def _check_community(community: Community, now: datetime) -> list[QueuedRun]:
    queued: list[QueuedRun] = []
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
        elif run.auto_send and _stuck_dispatches(community, run, now):
            queued.append((community.pk, run.year, run.month, None))
    return queued


def _stuck_dispatches(community: Community, run: ExpenseRun, now: datetime) -> bool:
    """Failed sends, and sends still pending long after their note was issued (a lost task,
    a worker that died holding the claim)."""
    month = NoteDispatch.objects.filter(
        community=community,
        note__year=run.year,
        note__month=run.month,
        note__is_current=True,
    )
    return (
        month.filter(status=NoteDispatch.Status.FAILED).exists()
        or month.filter(
            status=NoteDispatch.Status.PENDING,
            note__created_at__lt=now - CLAIM_TIMEOUT,
        )
        .exclude(note__pdf="")
        .exists()
    )
