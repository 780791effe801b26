"""Where other apps' writes tell notifications that a fact may call for a notice, without
importing it: the worker's batches (`after_batch`) and new access requests
(`after_access_request`).

After a batch of gateway events:

`after_batch` is in `chargers.events.batch.EXTRA_FLUSHES` (added by `NotificationsConfig.ready`),
called inside the batch's transaction with the chargers whose events applied. It only looks:
the sessions that are completed in this batch (their ids) and whether an `access` event was
applied (a refusal may have been recorded). Nothing is sent here — after the commit one task is
queued (`notifications.tasks.session_ended` with the ids, `notifications.tasks.collect` at most
once per `POKE_SECONDS` across workers), so the batch path pays a loop over its own rows and,
rarely, one publish. The callbacks are `robust`: a broker or cache hiccup there is logged, never
turned into a failure of the batch that committed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.cache import cache
from django.db import transaction

from chargers.models import ChargingSession

if TYPE_CHECKING:
    from chargers.events.batch import ChargerState
    from communities.models import AccessRequest

POKE_SECONDS = 2


def after_batch(states: list[ChargerState]) -> None:
    ended: list[int] = []
    access = False
    for st in states:
        for s in st.new_sessions:
            if s.state == ChargingSession.State.COMPLETED and s.holder_id and s.pk:
                ended.append(s.pk)
        for s in st.dirty_sessions.values():
            if s.state == ChargingSession.State.COMPLETED and s.holder_id and s.pk:
                ended.append(s.pk)
        if not access:
            for e in st.events:  # a plain loop: ~0.15 µs of CPU per event (any() costs 2.5×)
                if e.get("kind") == "access":
                    access = True
                    break
    if ended:
        ids = sorted(set(ended))
        transaction.on_commit(lambda: _queue_sessions(ids), robust=True)
    if access:
        transaction.on_commit(_poke_collect, robust=True)


def _queue_sessions(ids: list[int]) -> None:
    from .tasks import session_ended

    session_ended.delay(ids)


def _poke_collect() -> None:
    from .tasks import collect

    # One scan every few seconds is enough whatever the number of workers and batches.
    if cache.add("notifications:poke", 1, timeout=POKE_SECONDS):
        collect.delay()


def after_access_request(access_request: AccessRequest) -> None:
    """In `communities.services.ACCESS_REQUEST_HOOKS`, called inside the transaction that
    records the request: once it is committed, one task tells the managers (the same fact,
    key and rows as the beat scan's, which stays as the safety net: nothing is told twice).
    `robust`: a broker hiccup is logged, the request stays recorded and the scan tells it."""
    pk = access_request.pk
    transaction.on_commit(lambda: _queue_access_request(pk), robust=True)


def _queue_access_request(pk: int) -> None:
    from .tasks import access_requested

    access_requested.delay(pk)
