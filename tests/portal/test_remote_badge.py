"""A remote-command badge does not stay under a newer session started by card."""

from datetime import timedelta
from types import SimpleNamespace

from django.utils import timezone

from sparklin.templatetags.remote import command_applies

NOW = timezone.now()


def cmd(action, minutes_ago):
    return SimpleNamespace(action=action, created_at=NOW - timedelta(minutes=minutes_ago))


def session(minutes_ago):
    return SimpleNamespace(started_at=NOW - timedelta(minutes=minutes_ago))


def test_without_a_session_the_outcome_shows():
    assert command_applies(cmd("RemoteStopTransaction", 5), None)


def test_a_stop_is_stale_under_a_newer_session():
    assert not command_applies(cmd("RemoteStopTransaction", 30), session(10))


def test_a_start_shows_under_the_session_it_started_only():
    assert command_applies(cmd("RemoteStartTransaction", 10), session(9))
    assert command_applies(cmd("RequestStartTransaction", 10), session(9))
    assert not command_applies(cmd("RemoteStartTransaction", 60), session(10))


def test_no_command():
    assert not command_applies(None, session(1))
