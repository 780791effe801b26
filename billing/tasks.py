"""Background work of the billing app: ids in, scope entered, one service call. Every task is
idempotent (re-running a month issues and sends nothing twice) and `acks_late`.

`check_months` runs hourly on the schedule in `CELERY_BEAT_SCHEDULE` (sparklin/settings.py)."""

from celery import shared_task
from django.db import DatabaseError
from django_scopes import scope, scopes_disabled

from communities.models import Community

from . import services
from .models import ExportJob

_DB_RETRY = {
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


def _community(community_id: int) -> Community:
    with scopes_disabled():
        return Community.objects.get(pk=community_id)


@shared_task(name="billing.tasks.check_months", **_DB_RETRY)
def check_months(self) -> int:
    """Hourly: start the month-end run where it is due, re-issue months whose sessions changed,
    retry failed sends."""
    return len(services.check_months())


@shared_task(name="billing.tasks.run_month", **_DB_RETRY)
def run_month(self, community_id: int, year: int, month: int, send: bool = False) -> dict:
    """Issue a community's notes of one month (new ones and new versions), then send if asked."""
    community = _community(community_id)
    with scope(community=community):
        result = services.generate_month(community=community, year=year, month=month)
    if send:
        send_month_task.delay(community_id, year, month)
    return {"created": len(result.created), "versioned": len(result.versioned)}


@shared_task(
    name="billing.tasks.send_month",
    bind=True,
    acks_late=True,
    autoretry_for=(DatabaseError,),
    max_retries=SEND_MAX_RETRIES,
)
def send_month_task(self, community_id: int, year: int, month: int) -> dict:
    """E-mail what was not sent yet of a month; retried with backoff while a send fails."""
    community = _community(community_id)
    with scope(community=community):
        result = services.send_month(community=community, year=year, month=month)
    if result.failed and not self.request.is_eager:
        # In-process (embedded default, tests) there is no broker to come back later: the
        # failure stays recorded and the hourly check retries it.
        countdown = min(SEND_RETRY_MAX, SEND_RETRY_BASE * 2**self.request.retries)
        raise self.retry(countdown=countdown, exc=services.DeliveryError(result.failed[0]))
    return {
        "finance": result.finance_sent,
        "drivers": result.driver_sent,
        "failed": len(result.failed),
    }


@shared_task(name="billing.tasks.build_export", bind=True, acks_late=True)
def build_export(self, job_id: int) -> str:
    """Build the ZIP of an export job (the page polls its progress)."""
    with scopes_disabled():
        job = ExportJob.objects.select_related("community", "requested_by").get(pk=job_id)
    with scope(community=job.community):
        job = services.build_export_zip(job=job)
    return job.status
