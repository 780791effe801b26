"""The command bus: how a command asked in the portal reaches the gateway holding the charger.

One mechanism for every deployment, embedded (SQLite, no Redis) or production (PostgreSQL, Redis,
several gateways): the portal writes a *pending* `ChargerCommand` row (`from_portal=True`);
every gateway polls, once a second, the pending portal commands of the chargers it holds (one
bounded, indexed read), claims each with a conditional UPDATE pending → sent (so two gateways
can never both send it, e.g. during a reconnection that moved the charger), and sends it. The
answer comes back through the event pipeline like every other command status (`command` events,
upserts by uid). Commands nobody picked up within `PENDING_TTL` seconds (the charger is not
connected) are marked timed out by whichever gateway polls first.

Why not Redis pub/sub per gateway instance: it needs the registry lookup, loses a message sent
while a gateway restarts, and does not exist in the embedded mode; polling an indexed table of
rarely more than a few rows costs one small query per second per gateway, and the claim is the
only write the gateway makes besides reserving transaction ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.utils import timezone
from django_scopes import scopes_disabled

from chargers.models import ChargerCommand

PENDING_TTL = 120  # seconds a portal command waits for its charger to be connected
MAX_PER_POLL = 200


class PendingCommand(TypedDict):
    """A claimed portal command, as the gateway sends it."""

    pk: int
    uid: uuid.UUID
    action: str
    payload: Any
    charger__identity: str
    created_at: datetime


def claim_pending(identities: Iterable[str]) -> list[PendingCommand]:
    """Claim the pending portal commands of the chargers in `identities` (held by this gateway):
    returns them as plain dicts, oldest first, already marked sent. Expires stale ones."""
    now = timezone.now()
    held = set(identities)
    with scopes_disabled():
        pending = ChargerCommand.objects.filter(
            status=ChargerCommand.Status.PENDING, from_portal=True
        )
        pending.filter(created_at__lt=now - timedelta(seconds=PENDING_TTL)).update(
            status=ChargerCommand.Status.TIMED_OUT,
            response={"error": "The charger was not connected."},
            updated_at=now,
        )
        rows: list[PendingCommand] = []
        ordered = sorted(held)
        for start in range(0, len(ordered), 1000):  # bounded IN lists, however large the fleet
            rows += (
                pending.filter(charger__identity__in=ordered[start : start + 1000])
                .order_by("created_at")
                .values("pk", "uid", "action", "payload", "charger__identity", "created_at")[
                    :MAX_PER_POLL
                ]
            )
        rows = sorted(rows, key=lambda row: row["created_at"])[:MAX_PER_POLL]
        claimed = []
        for row in rows:
            won = ChargerCommand.objects.filter(
                pk=row["pk"], status=ChargerCommand.Status.PENDING
            ).update(status=ChargerCommand.Status.SENT, updated_at=now)
            if won:
                claimed.append(row)
    return claimed
