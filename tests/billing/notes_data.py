"""Sessions recorded the way chargers report them (chargers.events), for the expense-note tests:
the price in force at the start and the cost rounded to the cent come from production code;
and billing services called as production calls them (in scope, tasks run after commit)."""

import itertools
from datetime import datetime, timedelta

from django.test import TestCase
from django_scopes import scope

from billing import issuing
from chargers import events as ev
from chargers.models import ChargingSession

_tid = itertools.count(5000)


def charge(charger, card_uid: str, start: datetime, minutes: float, energy_wh: int, tid=None):
    """A whole session on `charger` (outlet 1): Started at `start`, Ended `minutes` later with
    `energy_wh` on the register. Returns the completed session."""
    tid = str(tid or next(_tid))
    stop = start + timedelta(minutes=minutes)
    meter = 100_000

    def tx(kind, when, meter_wh):
        return {
            "identity": charger.identity,
            "kind": "transaction",
            "received_at": when.isoformat(),
            "payload": {
                "event": kind,
                "transaction_id": tid,
                "evse_id": 1,
                "connector_id": 1,
                "id_tag": card_uid,
                "timestamp": when.isoformat(),
                "meter_wh": meter_wh,
                "reason": "EVDisconnected" if kind == "ended" else "",
                "seq_no": None,
                "offline": False,
                "samples": [],
            },
        }

    ev.process_events([tx("started", start, meter), tx("ended", stop, meter + energy_wh)])
    return ChargingSession.objects.get(charger=charger, transaction_id=tid)


def start_only(charger, card_uid, start, tid):
    ev.process_events(
        [
            {
                "identity": charger.identity,
                "kind": "transaction",
                "received_at": start.isoformat(),
                "payload": {
                    "event": "started",
                    "transaction_id": str(tid),
                    "evse_id": 1,
                    "connector_id": 1,
                    "id_tag": card_uid,
                    "timestamp": start.isoformat(),
                    "meter_wh": 100_000,
                    "samples": [],
                },
            }
        ]
    )


def end(charger, tid, when, energy_wh):
    ev.process_events(
        [
            {
                "identity": charger.identity,
                "kind": "transaction",
                "received_at": when.isoformat(),
                "payload": {
                    "event": "ended",
                    "transaction_id": str(tid),
                    "timestamp": when.isoformat(),
                    "meter_wh": 100_000 + energy_wh,
                    "reason": "Local",
                    "samples": [],
                },
            }
        ]
    )


def after_commit(fn, *args, **kwargs):
    """Call `fn`, then run what it queued on commit (PDF renderings, the e-mails they start), as
    the commit of a real transaction would: the test's own transaction never commits."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return fn(*args, **kwargs)


def in_scope(tenant, fn, *args, **kwargs):
    """Call a billing service the way a request or a task does: inside the community's scope."""
    with scope(community=tenant):
        return fn(*args, **kwargs)


def issue(community, year, month, **kwargs):
    """Issue a month and render its PDFs (the tasks queued on commit run here, in-process)."""
    return after_commit(
        in_scope,
        community,
        issuing.generate_month,
        community=community,
        year=year,
        month=month,
        **kwargs,
    )
