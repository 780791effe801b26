"""Which gateway process holds which charger, in Redis (when REDIS_URL is set).

`sparklin:gateway:charger:<identity>` → gateway instance id, with a TTL refreshed while the
connection lives, so a crashed gateway's entries disappear on their own.

Commands asked in the portal do not travel through Redis: every gateway polls the pending
`ChargerCommand` rows of the chargers it holds (see `ocpp_gateway.commands`), which works the
same in the embedded mode without Redis. The registry tells operators (and the portal, later)
which instance holds a charger.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

KEY_PREFIX = "sparklin:gateway:charger:"

# Delete the key only if this instance still owns it (the charger may have moved already).
_DELETE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Registry:
    """Best effort: a Redis hiccup is logged and never affects the chargers' connections."""

    def __init__(self, url: str | None, instance_id: str, ttl: int = 90):
        self.instance_id = instance_id
        self.ttl = ttl
        self.redis = None
        if url:
            import redis.asyncio as redis_asyncio

            self.redis = redis_asyncio.from_url(url)

    @property
    def refresh_every(self) -> float:
        return self.ttl / 3

    async def register(self, identity: str) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.set(KEY_PREFIX + identity, self.instance_id, ex=self.ttl)
        except Exception:
            logger.warning("Registry: could not register %s", identity, exc_info=True)

    async def unregister(self, identity: str) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.eval(_DELETE_IF_OWNER, 1, KEY_PREFIX + identity, self.instance_id)
        except Exception:
            logger.warning("Registry: could not unregister %s", identity, exc_info=True)

    async def refresh(self, identities) -> None:
        if self.redis is None or not identities:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for identity in identities:
                    pipe.set(KEY_PREFIX + identity, self.instance_id, ex=self.ttl)
                await pipe.execute()
        except Exception:
            logger.warning("Registry: refresh failed", exc_info=True)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
