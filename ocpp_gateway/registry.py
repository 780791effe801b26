"""Which gateway process holds which charger, in Redis (when REDIS_URL is set), and the rule that
makes several gateways share a fleet: **the newest connection of a charger wins**.

    sparklin:gateway:charger:<identity>  →  "<instance id>|<connected at (unix time)>"  (TTL 90 s)

Each gateway *claims* the chargers it accepts. The claim is one Lua script (atomic in Redis): it
writes the key unless a *newer* connection held by another gateway is already there, and when it
takes the key from another gateway it publishes a takeover notice on that gateway's channel
`sparklin:gateway:takeover:<instance id>` ("<identity>|<connected at>"). The gateway receiving
the notice closes its older socket for that charger without recording a disconnection (the
charger is connected, elsewhere). The refresher re-claims every held charger every `ttl / 3`
seconds with the same script, so a notice lost while Redis or a gateway restarted is caught
within 30 s: a gateway that finds a newer holder closes its own stale socket.

Connections: one bounded pool for the whole process (`GATEWAY_REDIS_MAX_CONNECTIONS`, default 4):
claims and releases are queued in memory and written in pipelines by one flusher task every
0.2 s, and the takeover listener holds one connection. A 10,000-charger storm costs a few
pipelines, not 10,000 connections. Redis being down pauses the registry (logged once, then
"back"), never the chargers' connections.

Commands asked in the portal do not travel through Redis: every gateway polls the pending
`ChargerCommand` rows of the chargers it holds (see `ocpp_gateway.commands`), which works the
same in the embedded mode without Redis; the newest-wins rule makes sure exactly one gateway
holds (and so polls for) a charger. The charger page shows the holder from the `connected`
event (`Charger.gateway`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "sparklin:gateway:charger:"
TAKEOVER_CHANNEL = "sparklin:gateway:takeover:"

# KEYS[1] charger key; ARGV: instance id, connected at, ttl, takeover channel prefix, identity.
# Returns the value of a newer holder elsewhere (the caller's connection is stale), else nil.
_CLAIM = """
local cur = redis.call('get', KEYS[1])
local mine = ARGV[1] .. '|' .. ARGV[2]
if cur and cur ~= mine then
  local who, at = string.match(cur, '^(.*)|([^|]*)$')
  if who and who ~= ARGV[1] then
    if tonumber(at) > tonumber(ARGV[2]) then
      return cur
    end
    redis.call('publish', ARGV[4] .. who, ARGV[5] .. '|' .. ARGV[2])
  end
end
redis.call('set', KEYS[1], mine, 'EX', tonumber(ARGV[3]))
return false
"""

# Delete the key only if it still holds this connection (the charger may have moved already).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

CHUNK = 1000  # operations per pipeline


class Registry:
    """Best effort: a Redis hiccup is logged and never affects the chargers' connections.

    `on_takeover(identity, connected_at)` is called (on the event loop) when another gateway
    holds a newer connection of a charger held here."""

    def __init__(
        self,
        url: str | None,
        instance_id: str,
        ttl: int = 90,
        *,
        max_connections: int = 4,
        on_takeover: Callable[[str, float], None] | None = None,
        flush_seconds: float = 0.2,
    ):
        self.instance_id = instance_id
        self.ttl = ttl
        self.flush_seconds = flush_seconds
        self.on_takeover = on_takeover or (lambda identity, at: None)
        self.redis: Redis | None = None
        # identity → ("claim" | "release", connected_at), written by the flusher.
        self._pending: dict[str, tuple[str, float]] = {}
        self._healthy = True
        if url:
            import redis.asyncio as redis_asyncio

            # One bounded pool for the process: waiting for a free connection beats opening
            # one per charger (19,000 chargers once took 9,990 of Redis's 10,000 clients).
            self.pool = redis_asyncio.BlockingConnectionPool.from_url(
                url,
                max_connections=max(2, max_connections),
                timeout=10,
                client_name=f"sparklin-gateway-{instance_id}"[:100],
                health_check_interval=30,
            )
            self.redis = redis_asyncio.Redis(connection_pool=self.pool)
            self._claim = self.redis.register_script(_CLAIM)
            self._release = self.redis.register_script(_RELEASE)

    @property
    def enabled(self) -> bool:
        return self.redis is not None

    @property
    def refresh_every(self) -> float:
        return self.ttl / 3

    # --- what the connection handler calls (no await, no connection) -------------------------
    def register(self, identity: str, connected_at: float) -> None:
        if self.redis is not None:
            self._pending[identity] = ("claim", connected_at)

    def unregister(self, identity: str, connected_at: float) -> None:
        if self.redis is None:
            return
        queued = self._pending.get(identity)
        if queued is not None and queued[0] == "claim" and queued[1] > connected_at:
            return  # a newer connection of the charger is being claimed: keep that
        self._pending[identity] = ("release", connected_at)

    # --- the registry's tasks -----------------------------------------------------------------
    async def run(self, held: Callable[[], dict[str, float]]) -> None:
        """Flush queued claims every `flush_seconds`, re-claim every held charger every
        `refresh_every` seconds, and listen for takeover notices. Runs until cancelled."""
        if self.redis is None:
            return
        listener = asyncio.create_task(self._listen(self.redis), name="gateway-registry-takeovers")
        try:
            loop = asyncio.get_running_loop()
            next_refresh = loop.time() + self.refresh_every
            while True:
                await asyncio.sleep(self.flush_seconds)
                if loop.time() >= next_refresh:
                    next_refresh = loop.time() + self.refresh_every
                    for identity, at in held().items():
                        self._pending.setdefault(identity, ("claim", at))
                await self.flush()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def flush(self) -> None:
        if self.redis is None or not self._pending:
            return
        batch, self._pending = self._pending, {}
        items = list(batch.items())
        try:
            for start in range(0, len(items), CHUNK):
                chunk = items[start : start + CHUNK]
                async with self.redis.pipeline(transaction=False) as pipe:
                    for identity, (op, at) in chunk:
                        key = KEY_PREFIX + identity
                        if op == "claim":
                            await self._claim(
                                keys=[key],
                                args=[
                                    self.instance_id,
                                    repr(at),
                                    self.ttl,
                                    TAKEOVER_CHANNEL,
                                    identity,
                                ],
                                client=pipe,
                            )
                        else:
                            await self._release(
                                keys=[key], args=[f"{self.instance_id}|{at!r}"], client=pipe
                            )
                    results = await pipe.execute()
                for (identity, (op, _at)), result in zip(chunk, results, strict=True):
                    if op == "claim" and result:
                        holder = result.decode() if isinstance(result, bytes) else str(result)
                        self._newer_elsewhere(identity, holder)
                # Done: anything that failed later is re-queued below, this chunk is not.
                for identity, _ in chunk:
                    batch.pop(identity, None)
        except Exception as exc:
            # Keep what was not written (newer operations queued meanwhile win).
            for identity, queued in batch.items():
                self._pending.setdefault(identity, queued)
            if self._healthy:
                logger.warning("Registry: Redis unreachable, registry paused (%s)", exc)
                self._healthy = False
            return
        if not self._healthy:
            logger.warning("Registry: Redis reachable again, registry resumed")
            self._healthy = True

    def _newer_elsewhere(self, identity: str, holder: str) -> None:
        _, _, at = holder.rpartition("|")
        try:
            self.on_takeover(identity, float(at))
        except ValueError:
            logger.warning("Registry: unreadable holder %r for %s", holder, identity)

    async def _listen(self, redis: Redis) -> None:
        """Takeover notices for this instance; resubscribes after a Redis outage."""
        channel = TAKEOVER_CHANNEL + self.instance_id
        while True:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None or message.get("type") != "message":
                        continue
                    data = message["data"]
                    data = data.decode() if isinstance(data, bytes) else str(data)
                    identity, _, at = data.rpartition("|")
                    try:
                        self.on_takeover(identity, float(at))
                    except ValueError:
                        logger.warning("Registry: unreadable takeover notice %r", data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("Registry: takeover listener lost Redis (%s); retrying", exc)
                await asyncio.sleep(2.0)
            finally:
                try:
                    await asyncio.shield(pubsub.aclose())
                except Exception:  # noqa: S110 - the connection is gone anyway
                    pass

    async def holder(self, identity: str) -> str | None:
        """The instance id holding `identity`, or None (operators, tests)."""
        if self.redis is None:
            return None
        value: bytes | None = await self.redis.get(KEY_PREFIX + identity)
        if value is None:
            return None
        return value.decode().rpartition("|")[0]

    async def close(self) -> None:
        if self.redis is not None:
            try:
                await self.flush()
            finally:
                await self.redis.aclose()
                await self.pool.disconnect()
