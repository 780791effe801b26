"""`run_periodic`: the embedded mode's beat (the demo has no broker, hence no Celery beat). It
runs CELERY_BEAT_SCHEDULE in-process: every scheduled task is found and runs, a failing one is
one warning line, and with a broker it refuses."""

import logging

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from chargers.models import ChargerCommand
from communities.models import AccessRequest, Role
from rules.models import Reason, RuleEvent
from sparklin.management.commands.run_periodic import run_entry
from tests import builders

pytestmark = [pytest.mark.django_db, pytest.mark.community_scope]


def test_refuses_when_tasks_go_to_a_broker(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with pytest.raises(CommandError, match="celery -A sparklin beat"):
        call_command("run_periodic", "--once")


def test_runs_the_products_periodic_work_in_process(
    community, charger, individual, caplog, django_capture_on_commit_callbacks
):
    """Once through the schedule: local lists are sent to a connected charger, a refusal and an
    access request reach the managers, the sweep marks a silent charger not connected — what
    beat does in production — and no task fails."""
    boss = builders.make_member(community, Role.MANAGER).user
    boss.email, boss.language = "boss@example.org", "en"
    boss.save()
    builders.make_card(community, holder=individual, uid="04A23B11")
    builders.make_connector(charger, 1)
    charger.connected, charger.ocpp_version = True, "1.6"
    charger.last_seen = timezone.now()
    charger.save()
    silent = builders.make_charger(community, site=charger.site, connected=True)
    silent.last_seen = timezone.now() - timezone.timedelta(hours=2)
    silent.save()
    RuleEvent.objects.create(
        community=community,
        kind=RuleEvent.Kind.REFUSED,
        reason=Reason.OUTSIDE_HOURS,
        action="Authorize",
        charger=charger,
        evse_id=1,
        uid="04A23B11",
        holder=individual,
    )
    AccessRequest.objects.create(community=community, user=builders.make_user(), message="")
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        call_command("run_periodic", "--once")
    assert not [r for r in caplog.records if "Periodic task" in r.getMessage()]
    assert ChargerCommand.objects.filter(charger=charger, action="SendLocalList").exists()
    subjects = sorted(m.subject for m in mail.outbox if m.to == ["boss@example.org"])
    assert len(subjects) == 2 and any("asks for access" in s for s in subjects)
    silent.refresh_from_db()
    assert not silent.connected


def test_a_failing_task_is_one_warning_line(caplog, settings):
    entry = {"task": "notifications.tasks.send_group", "schedule": 30.0}  # misses its kwargs
    with caplog.at_level(logging.WARNING):
        assert run_entry("broken", entry) is False
    (record,) = [r for r in caplog.records if "Periodic task" in r.getMessage()]
    assert "broken" in record.getMessage() and record.exc_info is None
