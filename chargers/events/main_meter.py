"""Main-meter samples: what a charger (or a standalone OCPP meter) reports for itself — 1.6
connector 0, 2.0.1 EVSE 0 — outside any transaction. Sessions have no use for them; the site's
meters do. chargers does not know who reads them (it sits below the apps that do): an app
registers a consumer at start-up (`register_consumer`, from its AppConfig.ready), and the batch
hands the consumers what it collected, once written, inside its transaction.

A consumer's failure is its own: it runs in a savepoint, a permanent error is logged and the
batch commits anyway (the samples are in the message log); a transient database error
propagates so that the whole batch is retried, which is safe as every write is idempotent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction

from ..contract import Sample

if TYPE_CHECKING:
    from .batch import ChargerState

logger = logging.getLogger("chargers.events")


@dataclass(frozen=True)
class MainMeterSamples:
    charger_id: int
    identity: str
    community_id: int
    received_at: datetime
    samples: list[Sample]  # as the gateway sent them


Consumer = Callable[[list[MainMeterSamples]], None]
_consumers: list[Consumer] = []


def register_consumer(consumer: Consumer) -> None:
    """Have `consumer` called with every batch's main-meter samples (idempotent)."""
    if consumer not in _consumers:
        _consumers.append(consumer)


def collect(st: ChargerState, samples: list[Sample], at: datetime) -> None:
    if _consumers and samples:
        charger = st.charger
        st.main_meter.append(
            MainMeterSamples(charger.pk, charger.identity, charger.community_id, at, samples)
        )


def deliver(collected: list[MainMeterSamples]) -> None:
    if not collected:
        return
    from .apply import is_transient

    for consumer in list(_consumers):
        try:
            with transaction.atomic():
                consumer(collected)
        except Exception as exc:
            if is_transient(exc):
                raise
            logger.exception(
                "Main-meter consumer %s failed", getattr(consumer, "__name__", consumer)
            )
