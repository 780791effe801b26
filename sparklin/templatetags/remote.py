"""Whether an outlet's last remote start/stop still says something about what it shows now."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django import template

if TYPE_CHECKING:
    from chargers.models import ChargerCommand, ChargingSession

register = template.Library()

# A session that starts this soon after a remote start is the one it asked for.
START_MATCH = timedelta(minutes=3)


@register.filter
def command_applies(command: ChargerCommand | None, session: ChargingSession | None) -> bool:
    """A remote command's outcome belongs under the outlet until a newer session says more:
    a stop is stale once any session runs again; a start only describes the session it
    started (one that began within a few minutes after it), not a later one begun by card."""
    if command is None:
        return False
    if not session or session.started_at is None:
        return True
    if command.action in ("RemoteStartTransaction", "RequestStartTransaction"):
        return command.created_at <= session.started_at <= command.created_at + START_MATCH
    return session.started_at < command.created_at
