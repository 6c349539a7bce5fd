"""One live threshold pair for the whole consumer group, kept in Redis.

Every worker recalibrates on its own window, but all of them must apply the same pair, so a
new version is published with compare-and-set: it replaces the stored one only if the
stored version is the one the worker started from. The loser of a race simply reads the
winner's version and carries on. Layout (one hash tag, so Redis Cluster keeps both keys on
one slot):
- `<prefix>:live`     hash: `version` (integer), `state` (the `ThresholdState` JSON) and
                      `signature` (see below)
- `<prefix>:history`  list, newest first, capped at `HISTORY_LENGTH`: one JSON object
                      `{"published_at": <Redis server time, s>, "state": {...}}` per version

Anyone who can write Redis could otherwise move the live pair, so the state is signed
(models/signing.py) together with the key it is stored under: a reader applies only a
state signed with its own key for this consumer group, and raises `SharedThresholdError`
(`ThresholdSignatureError`) for anything else, exactly as for an unreadable state: the
workers keep their pair in force, and publish none until the forged one is deleted. A
signature proves a keyholder wrote the pair, not that it is the newest one: a pair this
group once published, replayed with its signature, verifies. The history is for reports
and is not signed.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from fraudstream.features.redis_client import RedisClient, redis_client
from fraudstream.models.signing import SigningKey
from fraudstream.thresholds.online import ThresholdState

HISTORY_LENGTH = 1000

# Shared tail of both scripts: store ARGV[1] (state JSON) as version ARGV[2] with its
# signature ARGV[4], and log it.
_STORE_AND_LOG = """
local t = redis.call('TIME')
local published_at = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'state', ARGV[1], 'signature', ARGV[4])
redis.call('LPUSH', KEYS[2], '{"published_at":' .. published_at .. ',"state":' .. ARGV[1] .. '}')
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
"""

# An absent pair counts as version 0, so the first version can be published as well.
_PUBLISH_IF_VERSION = (
    """
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored ~= tonumber(ARGV[5]) then
  return 0
end
"""
    + _STORE_AND_LOG
    + "return 1\n"
)

_INITIALISE = (
    """
local live = redis.call('HMGET', KEYS[1], 'state', 'signature')
if live[1] then
  return live
end
"""
    + _STORE_AND_LOG
    + "return {ARGV[1], ARGV[4]}\n"
)


class SharedThresholdError(RuntimeError):
    """Redis could not serve the shared threshold; the worker keeps the pair it has."""


class ThresholdSignatureError(SharedThresholdError):
    """The stored pair is unsigned or not signed with this worker's key: not applied."""


def _text(reply: str | bytes) -> str:
    """Redis' reply as text; bytes that are not UTF-8 become U+FFFD and fail verification."""
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def _parsed_state(text: str) -> ThresholdState:
    """The state JSON kept in Redis; `SharedThresholdError` when it does not parse.

    A corrupt state then fails like an outage: every worker keeps the pair it has instead
    of crashing on it at every refresh.
    """
    try:
        return ThresholdState.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as error:
        raise SharedThresholdError(
            f"stored threshold state is unreadable ({error!r}): publish a valid one or "
            "delete the key"
        ) from error


class SharedThreshold:
    """Reads and publishes the group's threshold pair under `key_prefix` (keep it tagged),
    signing what it publishes and verifying what it reads with `signing_key`."""

    def __init__(
        self, client: RedisClient, key_prefix: str = "fs:{threshold}", *,
        signing_key: SigningKey,
    ) -> None:  # fmt: skip
        if "{" not in key_prefix or "}" not in key_prefix:
            raise ValueError(f"key_prefix needs a hash tag such as fs:{{threshold}}: {key_prefix}")
        self._client = client
        self._signing_key = signing_key
        #: The Redis hash holding the live pair (delete it to reset the group's pair).
        self.live_key = f"{key_prefix}:live"
        self._history_key = f"{key_prefix}:history"
        self._publish = client.register_script(_PUBLISH_IF_VERSION)
        self._initialise = client.register_script(_INITIALISE)

    @classmethod
    def from_url(
        cls, url: str, key_prefix: str = "fs:{threshold}", *, signing_key: SigningKey
    ) -> SharedThreshold:
        return cls(redis_client(url), key_prefix, signing_key=signing_key)

    async def close(self) -> None:
        await self._client.aclose()

    async def current(self) -> ThresholdState | None:
        """The live pair, or None if nothing was ever published."""
        try:
            state, signature = await self._client.hmget(self.live_key, ["state", "signature"])
        except aioredis.RedisError as error:
            raise SharedThresholdError(f"shared threshold unavailable: {error}") from error
        return None if state is None else self._verified(state, signature)

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
                keys=[self.live_key, self._history_key],
                args=[*self._signed(new), expected_version],
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
            live, signature = await self._initialise(
                keys=[self.live_key, self._history_key], args=self._signed(state)
            )
        except aioredis.RedisError as error:
            raise SharedThresholdError(f"could not initialise thresholds: {error}") from error
        return self._verified(live, signature)

    async def history(self, limit: int = 100) -> list[dict[str, Any]]:
        """Up to `limit` published versions, newest first, each with its `published_at`."""
        if limit < 1:
            return []
        try:
            entries = await self._client.lrange(self._history_key, 0, limit - 1)
        except aioredis.RedisError as error:
            raise SharedThresholdError(f"shared threshold unavailable: {error}") from error
        return [json.loads(entry) for entry in entries]

    def _signed(self, state: ThresholdState) -> list[str | int]:
        """The scripts' arguments: state JSON, version, history length, signature."""
        text = json.dumps(state.to_dict(), separators=(",", ":"), allow_nan=False)
        return [text, state.version, HISTORY_LENGTH, self._signing_key.sign(self._scoped(text))]

    def _scoped(self, text: str) -> dict[str, str]:
        """What is signed: the exact stored JSON and the key it lives under (the group)."""
        return {"redis_key": self.live_key, "state": text}

    def _verified(self, state: str | bytes, signature: str | bytes | None) -> ThresholdState:
        """The stored state, if signed with this key for this group; else an error."""
        text = _text(state)
        if signature is None:
            raise ThresholdSignatureError(
                f"the threshold state in {self.live_key} is not signed, so it is not applied; "
                "delete it and restart a worker to publish a signed pair"
            )
        if not self._signing_key.verify(self._scoped(text), _text(signature)):
            raise ThresholdSignatureError(
                f"the threshold state in {self.live_key} is not signed with this worker's "
                "FRAUDSTREAM_SIGNING_KEY (or was copied from another group), so it is not "
                "applied; delete it and restart a worker to publish a signed pair"
            )
        return _parsed_state(text)
