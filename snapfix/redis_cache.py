"""RedisCache: the cache port on Redis, shared by every query-API and projector process.

A versioned entry is a hash ``{e: epoch, v: version, d: bytes}`` with a time to live
(an entry written before epochs existed has none: epoch 0). A Lua script compares and
writes it in one step on the server, so a reader filling a miss can never overwrite a
newer copy that a projector wrote in the meantime (a GET then SET from Python could).
Another reads an entry and the epoch counter together and answers the value only if
it was stored in that epoch, so the epoch check adds no round trip to a cached read.
Counters are plain INCR keys without expiry; the label a counter follows is a plain key
beside it (``<counter>:label``), without expiry too.

Timeouts are short and a failed command is retried once, at once (that covers a
pooled connection that Redis closed): a cache that does not answer quickly is a
miss, not an outage.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from snapfix.cache import Cache, CacheError

PUT_VERSIONED = """
local stored = redis.call('HMGET', KEYS[1], 'e', 'v')
if stored[2] then
  local epoch, wanted = tonumber(stored[1] or '0'), tonumber(ARGV[4])
  if epoch > wanted or (epoch == wanted and tonumber(stored[2]) >= tonumber(ARGV[1])) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'e', ARGV[4], 'v', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
GET_CURRENT = """
local epoch = tonumber(redis.call('GET', KEYS[2]) or '0')
local entry = redis.call('HMGET', KEYS[1], 'e', 'd')
if entry[2] and tonumber(entry[1] or '0') == epoch then
  return {epoch, entry[2]}
end
return {epoch}
"""
FOLLOW = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  return tonumber(redis.call('GET', KEYS[1]) or '0')
end
redis.call('SET', KEYS[2], ARGV[1])
return redis.call('INCR', KEYS[1])
"""


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """Redis errors become CacheError, which callers read as a miss."""
    try:
        yield
    except RedisError as e:
        raise CacheError(f"{action}: {e}") from e


class RedisCache(Cache):
    def __init__(self, url: str, *, prefix: str = "", timeout_s: float = 0.5) -> None:
        """Nothing connects yet. ``prefix`` namespaces every key, so deployments or tests can share one Redis."""
        self._redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._prefix = prefix
        self._put = self._redis.register_script(PUT_VERSIONED)
        self._get_current = self._redis.register_script(GET_CURRENT)
        self._follow = self._redis.register_script(FOLLOW)

    async def get(self, key: str) -> bytes | None:
        with _translated("get"):
            value = await self._redis.hget(self._prefix + key, "d")
        return cast(bytes | None, value)  # replies stay bytes: the client is built without decode_responses

    async def get_current(self, key: str, epoch_key: str) -> tuple[bytes | None, int]:
        with _translated("get_current"):
            reply = await self._get_current(keys=[self._prefix + key, self._prefix + epoch_key])
        return (cast(bytes, reply[1]) if len(reply) > 1 else None), int(reply[0])

    async def put_versioned(self, key: str, version: int, value: bytes, ttl_s: int, *, epoch: int = 0) -> bool:
        with _translated("put_versioned"):
            stored = await self._put(keys=[self._prefix + key], args=[version, value, ttl_s, epoch])
        return bool(stored)

    async def incr(self, key: str) -> int:
        with _translated("incr"):
            return int(await self._redis.incr(self._prefix + key))

    async def counter(self, key: str) -> int:
        with _translated("counter"):
            value = await self._redis.get(self._prefix + key)
        return int(cast(bytes, value)) if value is not None else 0

    async def counters(self, keys: Sequence[str]) -> list[int]:
        with _translated("counters"):
            values = await self._redis.mget([self._prefix + key for key in keys])
        return [int(value) if value is not None else 0 for value in values]

    async def follow(self, key: str, label: str) -> int:
        with _translated("follow"):
            return int(await self._follow(keys=[self._prefix + key, self._prefix + key + ":label"], args=[label]))

    async def delete(self, key: str) -> None:
        with _translated("delete"):
            await self._redis.delete(self._prefix + key)

    async def ping(self) -> None:
        with _translated("ping"):
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
