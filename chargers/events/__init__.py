"""Persisting what chargers report: the worker side of the gateway's event pipeline.

The gateway never writes these rows itself. It translates each OCPP message into a small event
(`chargers.contract`: the envelope and one TypedDict per kind) and publishes batches of them as
one Celery task (`chargers.tasks.process_events`), which calls `process_events` here.

- `apply`       process_events: the batch set-based, charger by charger on a permanent error,
                the quarantine for what cannot be applied, refusals, retries of quarantined events
- `batch`       the set-based core: one read of everything a batch needs, bulk writes
- `handlers`    HANDLERS: the function applying each event kind, and the value checks
- `sessions`    sessions and meter samples (transactions, meter values, stale sessions)
- `outlets`     outlets and their status
- `connection`  connection, boot, configuration, commands, the message log
- `values`      parsing and bounds: what the database must never see
- `quarantine`  events kept aside with their error
- `maintenance` the offline sweep and the message log purge

Processing is idempotent: every write is an upsert keyed on what the charger sent, a value only
moves forward in time, and rows inserted in bulk have unique constraints (ON CONFLICT DO
NOTHING). So a batch delivered twice (acks_late, a worker killed mid-task) or batches processed
out of order by several workers end in the same state.
"""

from .apply import is_sqlite_busy, is_transient, process_events, retry_quarantined
from .handlers import HANDLERS
from .maintenance import compact_live_changes, purge_message_log, sweep_offline
from .values import ENERGY_REGISTER, parse_time, sample_unit, sample_value

__all__ = [
    "ENERGY_REGISTER",
    "HANDLERS",
    "compact_live_changes",
    "is_sqlite_busy",
    "is_transient",
    "parse_time",
    "process_events",
    "purge_message_log",
    "retry_quarantined",
    "sample_unit",
    "sample_value",
    "sweep_offline",
]
