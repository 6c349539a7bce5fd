"""One live threshold pair for the whole consumer group, kept in Redis.

Every worker recalibrates on its own window, but all of them must apply the same pair, so a
new version is published with compare-and-set: it replaces the stored one only if the
stored version is the one the worker started from. The loser of a race simply reads the
winner's version and carries on. Layout (one hash tag, so Redis Cluster keeps both keys on
one slot):
- `<prefix>:live`     hash: `version` (integer) and `state` (the `ThresholdState` JSON)
- `<prefix>:history`  list, newest first, capped at `HISTORY_LENGTH`: one JSON object
                      `{"published_at": <Redis server time, s>, "state": {...}}` per version
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from fraudstream.features.redis_client import redis_client
from fraudstream.thresholds.online import ThresholdState

HISTORY_LENGTH = 1000

# Shared tail of both scripts: store ARGV[1] (state JSON) as version ARGV[2] and log it.
_STORE_AND_LOG = """
local t = redis.call('TIME')
local published_at = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'state', ARGV[1])
redis.call('LPUSH', KEYS[2], '{"published_at":' .. published_at .. ',"state":' .. ARGV[1] .. '}')
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
"""

# An absent pair counts as version 0, so the first version can be published as well.
_PUBLISH_IF_VERSION = (
    """
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored ~= tonumber(ARGV[4]) then
  return 0
end
"""
    + _STORE_AND_LOG
    + "return 1\n"
)

_INITIALISE = (
    """
local live = redis.call('HGET', KEYS[1], 'state')
if live then
  return live
end
"""
    + _STORE_AND_LOG
    + "return ARGV[1]\n"
)


class SharedThresholdError(RuntimeError):
    """Redis could not serve the shared threshold; the worker keeps the pair it has."""


def _stored_state(reply: str | bytes) -> ThresholdState:
    """The state JSON kept in Redis; `SharedThresholdError` when it does not parse.

    A corrupt state then fails like an outage: every worker keeps the pair it has instead
    of crashing on it at every refresh.
    """
    try:
        text = reply.decode() if isinstance(reply, bytes) else reply
        return ThresholdState.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as error:
        raise SharedThresholdError(
            f"stored threshold state is unreadable ({error!r}): publish a valid one or "
            "delete the key"
        ) from error


class SharedThreshold:
    """Reads and publishes the group's threshold pair under `key_prefix` (keep it tagged)."""

    def __init__(self, client: aioredis.Redis, key_prefix: str = "fs:{threshold}") -> None:
        if "{" not in key_prefix or "}" not in key_prefix:
            raise ValueError(f"key_prefix needs a hash tag such as fs:{{threshold}}: {key_prefix}")
        self._client = client
        self._live_key = f"{key_prefix}:live"
        self._history_key = f"{key_prefix}:history"
        self._publish = client.register_script(_PUBLISH_IF_VERSION)
        self._initialise = client.register_script(_INITIALISE)

    @classmethod
    def from_url(cls, url: str, key_prefix: str = "fs:{threshold}") -> SharedThreshold:
        return cls(redis_client(url), key_prefix)

    async def close(self) -> None:
        await self._client.aclose()

    async def current(self) -> ThresholdState | None:
        """The live pair, or None if nothing was ever published."""
        try:
            reply = await self._client.hget(self._live_key, "state")
        except aioredis.RedisError as error:
            raise SharedThresholdError(f"shared threshold unavailable: {error}") from error
        return None if reply is None else _stored_state(reply)

    async def publish(self, new: ThresholdState, expected_version: int) -> bool:
        """Make `new` live if the stored version is still `expected_version` (absent = 0).

        Returns False when another worker published first; the caller should then read
        `current()` and recalibrate from there. Versions only go up: `new.version` must
        exceed `expected_version` (ValueError otherwise).
        """
        if new.version <= expected_version:
            raise ValueError(
                f"new version {new.version} must exceed the expected version {expected_version}"
            )
        try:
            won = await self._publish(
                keys=[self._live_key, self._history_key],
                args=[self._encode(new), new.version, HISTORY_LENGTH, expected_version],
            )
        except aioredis.RedisError as error:
            raise SharedThresholdError(f"could not publish thresholds: {error}") from error
        return bool(won)

    async def initialise(self, state: ThresholdState) -> ThresholdState:
        """Publish `state` only if nothing is live yet; return whatever is live afterwards.

        Every worker calls this at start-up with its configured pair, so a restart never
        undoes the group's recalibrations.
        """
        try:
            live = await self._initialise(
                keys=[self._live_key, self._history_key],
                args=[self._encode(state), state.version, HISTORY_LENGTH],
            )
        except aioredis.RedisError as error:
            raise SharedThresholdError(f"could not initialise thresholds: {error}") from error
        return _stored_state(live)

    async def history(self, limit: int = 100) -> list[dict[str, Any]]:
        """Up to `limit` published versions, newest first, each with its `published_at`."""
        if limit < 1:
            return []
        try:
            entries = await self._client.lrange(self._history_key, 0, limit - 1)
        except aioredis.RedisError as error:
            raise SharedThresholdError(f"shared threshold unavailable: {error}") from error
        return [json.loads(entry) for entry in entries]

    @staticmethod
    def _encode(state: ThresholdState) -> str:
        return json.dumps(state.to_dict(), separators=(",", ":"), allow_nan=False)
