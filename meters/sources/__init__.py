"""Where readings come from: MQTT (`mqtt`), Modbus TCP (`modbus`), the demo's simulated meter
(`meters.demo`); OCPP main meters arrive through the worker (`meters.ocpp`). run_meters
(`meters.runner`) drives the first three."""

from __future__ import annotations

import random

RETRY_MIN_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


def retry_delay(attempt: int) -> float:
    """Seconds before reconnection attempt `attempt` (1, 2 …): doubling from RETRY_MIN_SECONDS
    up to RETRY_MAX_SECONDS, with jitter so that meters behind one failed router do not all
    come back in step."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_MIN_SECONDS * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)
