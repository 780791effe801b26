"""Token buckets in memory, bounded: the gateway's throttles at the upgrade (password guesses per
identity and per source address, refusals per source address).

A bucket holds up to `capacity` tokens and regains `rate` tokens per second; a failure takes one.
An empty bucket means "answer 429 with Retry-After" before doing any work. Keys are kept in an
LRU of at most `max_keys` entries: a full bucket carries no information, so forgetting the least
recently used key only ever forgives, and an attacker rotating keys cannot grow memory.
In memory per gateway process on purpose: the throttle must hold while Redis or the database is
down, and with N gateways behind a balancer an attacker gets at most N times the budget.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class TokenBucket:
    def __init__(
        self,
        capacity: float,
        rate: float,
        max_keys: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or rate <= 0:
            raise ValueError("capacity >= 1 and rate > 0")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def _tokens(self, key: Hashable, now: float) -> float:
        item = self._buckets.get(key)
        if item is None:
            return self.capacity
        tokens, at = item
        return min(self.capacity, tokens + (now - at) * self.rate)

    def retry_after(self, key: Hashable) -> int:
        """0 when `key` may proceed, else the whole seconds until it regains a token."""
        tokens = self._tokens(key, self.clock())
        if tokens >= 1:
            return 0
        return max(1, math.ceil((1 - tokens) / self.rate))

    def take(self, key: Hashable) -> None:
        """Spend one token (a failure happened)."""
        now = self.clock()
        tokens = max(0.0, self._tokens(key, now) - 1)
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
