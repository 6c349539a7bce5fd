"""The online feature store: the same window state as the offline builder, kept in Redis.

Layout (keys hash-tagged so Redis Cluster keeps each card's and each merchant's keys on
one slot):
- `fs:{card:<id>}:times`  sorted set, member txn_id, score event_time
- `fs:{card:<id>}:events` hash, txn_id -> the encoded `CardEvent`
- `fs:{merchant:<id>}:txns`        sorted set, member txn_id, score event_time
- `fs:{merchant:<id>}:fraud_txns`  sorted set, member txn_id of a transaction labelled fraud,
                                   score its event_time
- `fs:{merchant:<id>}:fraud_label_times` hash, txn_id -> the fraud label's label_time (the
                                   delayed risk features count only labels known by then)
- `fs:{txn:<id>}:seen`        "<content digest> @<event_time> <merchant id>": a late label
                              finds its merchant and event time, a reused txn_id with other
                              content is caught
- `fs:{txn:<id>}:score`       "event_time,score", so a late label finds the decision's score
- `fs:generation`             a token set by the first worker to write; if it vanishes,
                              Redis lost its data (restarted empty): see `RedisFeatureStore`

Every command and script touches one hash tag, so on a Redis Cluster (`redis+cluster://`)
each lives on one slot. There a batch's commands go to their masters concurrently; when one
master fails, the transactions whose card, merchant or txn keys live on it are served
degraded (`FeatureStorePartlyUnavailable`) and the others at full quality.

One Lua script per entity records the transaction (`ZADD NX`: a redelivered `txn_id` is
a no-op), evicts what is older than the retention, refreshes the TTL and returns what the
feature definition needs; all scripts of a micro-batch travel in one pipeline, i.e. one
round trip. The feature vector is then computed by `features.definitions.feature_vector`,
the function the offline builder uses (`feature_vector_from`: the same, from a cached card's
running windows, features/window_pass.py).

Two stores share one Redis client (see `redis_stores`): `RedisFeatureStore` keeps the
windows, `RedisScoreStore` the decisions' scores. Both implement the protocols of
features/stores.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis
from numpy.typing import NDArray

from fraudstream.features.definitions import (
    DEFAULT_LABEL_DELAY_S,
    MERCHANT_COUNT_WINDOW_SECONDS,
    MERCHANT_RISK_WINDOW_SECONDS,
    MERCHANT_RISK_WINDOWS,
    NO_MERCHANT_HISTORY,
    MerchantCounts,
    feature_vector,
    feature_vector_from,
)
from fraudstream.features.redis_client import (
    Command,
    PipelineScripts,
    RedisClient,
    execute_commands,
    redis_client,
)
from fraudstream.features.redis_cluster import PAUSE_AFTER_FAILURE_S, SomeCommandsFailed
from fraudstream.features.stores import (
    FeatureStoreError,
    FeatureStorePartlyUnavailable,
    ScoredTransaction,
    ScoreStoreError,
)
from fraudstream.features.transaction import Label, Transaction
from fraudstream.features.window_pass import RunningCardHistory
from fraudstream.features.windows import (
    MAX_CARD_EVENTS,
    RETENTION_SECONDS,
    STORED_CARD_EVENTS,
    CardEvent,
    merchant_retention_seconds,
)

log = logging.getLogger(__name__)


def _key_ttl_seconds(retention_seconds: float) -> int:
    """How long (wall clock) a key lives after its last write: a day past its retention."""
    return int(retention_seconds) + 86_400


#: Card and score keys live this long after their last write: past the longest window.
KEY_TTL_SECONDS = _key_ttl_seconds(RETENTION_SECONDS)
GENERATION_KEY = "fs:generation"

_CLAIM_GENERATION = """
local current = redis.call('GET', KEYS[1])
if current then
  return current
end
redis.call('SET', KEYS[1], ARGV[1])
return false
"""

_RECORD_CARD_EVENT = """
local times, events = KEYS[1], KEYS[2]
local txn_id, event_time, encoded = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local retention, ttl, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[7])
-- unpack() fails past a few thousand values: remove and read in chunks
local function forget(ids)
  for first = 1, #ids, 1000 do
    local chunk = {unpack(ids, first, math.min(first + 999, #ids))}
    redis.call('ZREM', times, unpack(chunk))
    redis.call('HDEL', events, unpack(chunk))
  end
end
if redis.call('ZADD', times, 'NX', event_time, txn_id) == 1 then
  redis.call('HSET', events, txn_id, encoded)
end
local newest = tonumber(redis.call('ZRANGE', times, -1, -1, 'WITHSCORES')[2])
forget(redis.call('ZRANGEBYSCORE', times, '-inf', string.format('(%.17g', newest - retention)))
local excess = redis.call('ZCARD', times) - cap
if excess > 0 then
  forget(redis.call('ZRANGE', times, 0, excess - 1))
end
redis.call('EXPIRE', times, ttl)
redis.call('EXPIRE', events, ttl)
if ARGV[6] == '0' then
  return ''
end
local ids = redis.call('ZRANGE', times, 0, -1)
local parts = {}
for first = 1, #ids, 1000 do
  local chunk = {unpack(ids, first, math.min(first + 999, #ids))}
  parts[#parts + 1] = table.concat(redis.call('HMGET', events, unpack(chunk)), ',')
end
return table.concat(parts, ',')
"""

_RECORD_MERCHANT_TXN = """
local txns, frauds, label_times = KEYS[1], KEYS[2], KEYS[3]
local txn_id, t = ARGV[1], tonumber(ARGV[2])
local count_window, delay = tonumber(ARGV[3]), tonumber(ARGV[4])
local retention, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local function at(x) return string.format('%.17g', x) end
local function before(x) return '(' .. at(x) end
local function earlier_than_me(start)
  local n = redis.call('ZCOUNT', txns, at(start), before(t))
  for _, other in ipairs(redis.call('ZRANGEBYSCORE', txns, ARGV[2], ARGV[2])) do
    if other < txn_id then n = n + 1 end
  end
  return n
end
-- unpack() fails past a few thousand values: work in chunks
local function chunks(ids, each)
  for first = 1, #ids, 1000 do
    each({unpack(ids, first, math.min(first + 999, #ids))})
  end
end
redis.call('ZADD', txns, 'NX', t, txn_id)
local newest = tonumber(redis.call('ZRANGE', txns, -1, -1, 'WITHSCORES')[2])
redis.call('ZREMRANGEBYSCORE', txns, '-inf', before(newest - retention))
chunks(redis.call('ZRANGEBYSCORE', frauds, '-inf', before(newest - retention)), function(ids)
  redis.call('ZREM', frauds, unpack(ids))
  redis.call('HDEL', label_times, unpack(ids))
end)
redis.call('EXPIRE', txns, ttl)
-- ARGV[7..]: the risk windows, shortest first; each ends `delay` before t
local window_end = t - delay
local reply = {earlier_than_me(t - count_window)}
local starts = {}
for i = 7, #ARGV do
  starts[#starts + 1] = window_end - tonumber(ARGV[i])
  reply[#reply + 1] = redis.call('ZCOUNT', txns, at(starts[#starts]), before(window_end))
end
local fraud_times, known = {}, {}
chunks(redis.call('ZRANGEBYSCORE', frauds, at(starts[#starts]), before(window_end), 'WITHSCORES'),
  function(found)  -- txn_id, event_time, txn_id, event_time, ...
    local ids = {}
    for j = 1, #found, 2 do ids[#ids + 1] = found[j] end
    local labelled = redis.call('HMGET', label_times, unpack(ids))
    for j = 1, #ids do
      fraud_times[#fraud_times + 1] = tonumber(found[2 * j])
      known[#known + 1] = labelled[j] and tonumber(labelled[j]) < t
    end
  end)
for _, start in ipairs(starts) do
  local n = 0
  for j = 1, #fraud_times do
    if known[j] and fraud_times[j] >= start then n = n + 1 end
  end
  reply[#reply + 1] = n
end
return reply
"""


class RedisGate:
    """Shared by a worker's stores: after a failure, fail fast for `PAUSE_AFTER_FAILURE_S`.

    On a Redis Cluster each master has its own pause (features/redis_cluster.py): a batch
    some masters failed (`SomeCommandsFailed`) does not close this store-wide gate.
    """

    def __init__(self) -> None:
        self._closed_until = 0.0
        self._last_error = ""

    def check(self) -> None:
        """Raise `FeatureStoreError` (with the last failure) while Redis is left alone."""
        if time.monotonic() < self._closed_until:
            raise FeatureStoreError(
                f"feature store unavailable: {self._last_error} (less than "
                f"{PAUSE_AFTER_FAILURE_S:g} s ago; Redis not asked again yet)"
            )

    def failed(self, error: Exception) -> None:
        self._closed_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
        self._last_error = str(error)


def _card_keys(card_id: str) -> list[str]:
    return [f"fs:{{card:{card_id}}}:times", f"fs:{{card:{card_id}}}:events"]


def _merchant_keys(merchant_id: str) -> list[str]:
    """The merchant's transactions, fraud-labelled transactions and their label times."""
    tag = f"fs:{{merchant:{merchant_id}}}"
    return [f"{tag}:txns", f"{tag}:fraud_txns", f"{tag}:fraud_label_times"]


def transaction_keys(txn: Transaction) -> list[str]:
    """Every key recording `txn` writes: its card's, its merchant's and its own (three tags,
    so on a Redis Cluster up to three masters)."""
    return [*_card_keys(txn.card_id), *_merchant_keys(txn.merchant_id), _txn_seen_key(txn.txn_id)]


def _txn_seen_key(txn_id: str) -> str:
    return f"fs:{{txn:{txn_id}}}:seen"


def _seen_value(txn: Transaction) -> str:
    return f"{txn.digest()} @{txn.event_time!r} {txn.merchant_id}"


def _parse_seen(value: bytes | str) -> tuple[str, float | None, str]:
    """(content digest, event time, merchant id) of a `_seen_value`.

    The event time is None in a value written before the merchant risk windows were
    delayed (`"<digest> <merchant id>"`, no `@`): its label cannot be placed in time.
    """
    digest, rest = (value.decode() if isinstance(value, bytes) else value).split(" ", 1)
    if not rest.startswith("@"):
        return digest, None, rest
    event_time, merchant_id = rest[1:].split(" ", 1)
    return digest, float(event_time), merchant_id


def _txn_score_key(txn_id: str) -> str:
    return f"fs:{{txn:{txn_id}}}:score"


def encode_event(event: CardEvent) -> bytes:
    """A `CardEvent` as the compact JSON array the card script stores (orjson: in C)."""
    return orjson.dumps(
        [event.txn_id, event.event_time, event.amount, event.merchant_id, event.country,
         event.lat, event.lon, event.night, event.weekend]
    )  # fmt: skip


def decode_events(joined: str | bytes) -> list[CardEvent]:
    """The comma-joined encoded events one script reply carries (one bulk string: cheap)."""
    if not joined:
        return []
    raw = joined.encode() if isinstance(joined, str) else joined
    return [CardEvent(*fields) for fields in orjson.loads(b"[" + raw + b"]")]


class CardCache:
    """Card windows a worker owns, so Redis need not send a card's history on every event.

    Cards are partitioned, so while a worker owns a card no one else writes its window:
    the copy in memory stays equal to Redis's. The owner must `clear()` when partitions
    are revoked (another worker may write the card next); a cold card is read from Redis
    once. Least recently used cards leave first beyond `max_cards` (see `trim`).
    """

    def __init__(self, max_cards: int = 50_000) -> None:
        self._cards: OrderedDict[str, RunningCardHistory] = OrderedDict()
        self.max_cards = max_cards

    def __contains__(self, card_id: str) -> bool:
        return card_id in self._cards

    def __len__(self) -> int:
        return len(self._cards)

    def get(self, card_id: str) -> RunningCardHistory | None:
        history = self._cards.get(card_id)
        if history is not None:
            self._cards.move_to_end(card_id)
        return history

    def put(self, card_id: str, history: RunningCardHistory) -> None:
        self._cards[card_id] = history
        self._cards.move_to_end(card_id)

    def trim(self) -> None:
        """Forget the least recently used cards beyond `max_cards`.

        Called between micro-batches, never within one: a batch relies on every card it
        found in memory staying there until it is done.
        """
        while len(self._cards) > self.max_cards:
            self._cards.popitem(last=False)

    def clear(self) -> None:
        self._cards.clear()


class RedisFeatureStore:
    """Records transactions and labels in Redis and returns point-in-time feature vectors.

    Every batch also reads the generation token (`fs:generation`, set by the first writer).
    When it has vanished or changed since the last batch, Redis lost the windows (restarted
    empty): the store counts a reset in `resets` and, until `partial_history_until` (event
    time), features miss the events recorded before it.

    `label_delay_s` is the label delay the merchant risk windows end before a transaction;
    merchant keys and each transaction's `seen` key live that much longer than card keys.
    """

    def __init__(
        self,
        client: RedisClient,
        cache: CardCache | None = None,
        gate: RedisGate | None = None,
        label_delay_s: float = DEFAULT_LABEL_DELAY_S,
    ) -> None:
        self._client = client
        self.label_delay_s = label_delay_s
        self._merchant_retention = merchant_retention_seconds(label_delay_s)
        self._merchant_ttl = _key_ttl_seconds(self._merchant_retention)
        # The scripts' fixed arguments as the text hiredis would send for them, made once:
        # formatting the same numbers for every transaction cost ~2 % of deciding one.
        self._card_limits = (str(RETENTION_SECONDS), str(KEY_TTL_SECONDS))
        self._stored_card_events = str(STORED_CARD_EVENTS)
        self._merchant_windows = tuple(
            str(value)
            for value in (MERCHANT_COUNT_WINDOW_SECONDS, label_delay_s, self._merchant_retention,
                          self._merchant_ttl, *MERCHANT_RISK_WINDOW_SECONDS)
        )  # fmt: skip
        self.cache = cache
        self.gate = gate if gate is not None else RedisGate()
        self._scripts = PipelineScripts(
            client, [_RECORD_CARD_EVENT, _RECORD_MERCHANT_TXN, _CLAIM_GENERATION]
        )
        self._proposed_generation = uuid.uuid4().hex
        # The transactions of the last `claim` whose `seen` key it left in place (by
        # identity): recording them right after need not write that key again.
        self._seen_in_place: dict[int, Transaction] = {}
        self.generation: str | None = None
        self.resets = 0
        self.partial_history_until: float | None = None

    @classmethod
    def from_url(
        cls, url: str, cache: CardCache | None = None, label_delay_s: float = DEFAULT_LABEL_DELAY_S
    ) -> RedisFeatureStore:
        return cls(redis_client(url), cache, label_delay_s=label_delay_s)

    async def close(self) -> None:
        """Close the client (shared with a `RedisScoreStore` made by `redis_stores`)."""
        await self._client.aclose()

    def forget_cached_cards(self) -> None:
        """Empty the card cache: call when partitions are revoked or reassigned."""
        if self.cache is not None:
            self.cache.clear()

    async def record_and_featurize(
        self, transactions: Sequence[Transaction]
    ) -> list[NDArray[np.float64]]:
        """Record a micro-batch (in order) and return each transaction's features.

        Idempotent: recording a transaction again returns the same vector it got the first
        time, as long as no earlier-in-time event arrived in between.
        """
        self.gate.check()
        wanted = self._histories_wanted(transactions)
        events = [CardEvent.from_transaction(txn) for txn in transactions]
        in_place, self._seen_in_place = self._seen_in_place, {}
        # The `seen` keys the claim did not leave in place; their replies follow the two
        # per transaction.
        unseen = [index for index, txn in enumerate(transactions)
                  if in_place.get(id(txn)) is not txn]  # fmt: skip
        seen_writes: list[Command] = [
            ("SET", _txn_seen_key(transactions[index].txn_id), _seen_value(transactions[index]),
             "EX", self._merchant_ttl)
            for index in unseen
        ]  # fmt: skip

        def commands(shas: list[str]) -> list[Command]:
            record_card, record_merchant, claim_generation = shas
            queued: list[Command] = [
                ("EVALSHA", claim_generation, 1, GENERATION_KEY, self._proposed_generation)
            ]
            for txn, event, want in zip(transactions, events, wanted, strict=True):
                event_time = str(txn.event_time)  # as hiredis would format it, once
                queued += (
                    ("EVALSHA", record_card, 2, *_card_keys(txn.card_id), txn.txn_id,
                     event_time, encode_event(event), *self._card_limits,
                     "1" if want else "0", self._stored_card_events),
                    ("EVALSHA", record_merchant, 3, *_merchant_keys(txn.merchant_id),
                     txn.txn_id, event_time, *self._merchant_windows),
                )  # fmt: skip
            return queued + seen_writes

        try:
            generation, *replies = await self._scripts.run(commands)
        except SomeCommandsFailed as partial:
            return self._partly_served(transactions, events, unseen, partial)
        except aioredis.RedisError as error:
            self.gate.failed(error)
            raise FeatureStoreError(f"feature store unavailable: {error}") from error
        self._follow_generation(generation, transactions)
        vectors = [
            self._featurize(
                txn, event, replies[2 * index], _merchant_counts(replies[2 * index + 1])
            )
            for index, (txn, event) in enumerate(zip(transactions, events, strict=True))
        ]
        if self.cache is not None:
            self.cache.trim()
        return vectors

    def _partly_served(
        self, transactions: Sequence[Transaction], events: Sequence[CardEvent],
        unseen: Sequence[int], partial: SomeCommandsFailed,
    ) -> list[NDArray[np.float64]]:  # fmt: skip
        """Raise `FeatureStorePartlyUnavailable` with the vectors of the transactions all of
        whose commands succeeded (a Redis Cluster master failed; see the module doc).

        A card whose script succeeded still enters the card cache, which must stay equal to
        Redis; the batch's generation is not followed when its master failed.
        """
        generation, *replies = partial.replies
        if not isinstance(generation, Exception):
            self._follow_generation(generation, transactions)
        seen_replies = zip(unseen, replies[2 * len(transactions) :], strict=True)
        seen_failed = {index for index, reply in seen_replies if isinstance(reply, Exception)}
        vectors: list[NDArray[np.float64] | None] = []
        for index, (txn, event) in enumerate(zip(transactions, events, strict=True)):
            card, merchant = replies[2 * index : 2 * index + 2]
            if isinstance(card, Exception):
                vectors.append(None)
                continue
            served = not isinstance(merchant, Exception) and index not in seen_failed
            # Featurized either way: a card whose script succeeded enters the cache.
            vector = self._featurize(txn, event, card, _merchant_counts(merchant) if served
                                     else NO_MERCHANT_HISTORY)  # fmt: skip
            vectors.append(vector if served else None)
        if self.cache is not None:
            self.cache.trim()
        raise FeatureStorePartlyUnavailable(
            f"feature store partly unavailable ({sum(v is None for v in vectors)} of "
            f"{len(vectors)} transactions): {partial}", vectors,
        ) from partial  # fmt: skip

    def _follow_generation(self, stored: bytes | None, transactions: Sequence[Transaction]) -> None:
        """Notice a Redis that lost the windows since the last batch (see the class doc)."""
        current = self._proposed_generation if stored is None else stored.decode()
        if stored is None:
            self._proposed_generation = uuid.uuid4().hex  # a later reset needs a new token
        if self.generation is not None and current != self.generation:
            self.resets += 1
            newest = max(txn.event_time for txn in transactions)
            self.partial_history_until = newest + RETENTION_SECONDS
            log.error(
                "Redis lost the feature windows (restarted empty?): features miss the events "
                "before this batch until event time %.0f", self.partial_history_until,
            )  # fmt: skip
        self.generation = current

    def _histories_wanted(self, transactions: Sequence[Transaction]) -> list[bool]:
        """Which events ask Redis for their card's history: only where memory has none.

        That is the first event of a card this worker does not hold in its cache (every
        event without a cache); every event is written either way.
        """
        if self.cache is None:
            return [True] * len(transactions)
        wanted, cold = [], set()
        for txn in transactions:
            want = txn.card_id not in self.cache and txn.card_id not in cold
            wanted.append(want)
            if want:
                cold.add(txn.card_id)
        return wanted

    def _featurize(
        self, txn: Transaction, event: CardEvent, encoded_events: str | bytes,
        merchant: MerchantCounts,
    ) -> NDArray[np.float64]:  # fmt: skip
        """The features of `txn` from its card's events in the cache or the script's reply;
        records `txn` in the cache as `event`, the card event Redis recorded."""
        if self.cache is None:
            # Sorted by (event_time, txn_id) already: the script reads them in ZRANGE order.
            prior = decode_events(encoded_events)
            me = (txn.event_time, txn.txn_id)
            while prior and prior[-1].key >= me:
                prior.pop()
            return feature_vector(txn, prior[-MAX_CARD_EVENTS:], merchant)
        history = self.cache.get(txn.card_id)
        if history is None:
            history = RunningCardHistory(decode_events(encoded_events))
            self.cache.put(txn.card_id, history)
        # Before `txn` enters the running windows: the pass shares their sets.
        vector = feature_vector_from(txn, history.pass_before(txn.event_time, txn.txn_id),
                                     merchant)  # fmt: skip
        history.add(event)
        return vector

    async def claim(self, transactions: Sequence[Transaction]) -> list[bool]:
        """Claim each `txn_id` for its content (`SET NX`), then read who holds the ones
        already held: a second round trip only for a batch with a redelivery or a reuse.

        A `txn_id` twice in one batch is compared too (its second `SET NX` finds the first).
        Recording these same transactions next (`record_and_featurize`) does not write again
        the `seen` keys this left holding their content: a fifth of a batch's commands.
        """
        self._seen_in_place = {}
        self.gate.check()
        values = [_seen_value(txn) for txn in transactions]
        keys = [_txn_seen_key(txn.txn_id) for txn in transactions]
        claimed = await self._replies([
            ("SET", key, value, "NX", "EX", self._merchant_ttl)
            for key, value in zip(keys, values, strict=True)
        ])  # fmt: skip
        # None: held already. An error (its master failed): nothing to compare with.
        held = [index for index, reply in enumerate(claimed) if reply is None]
        holders = await self._replies([("GET", keys[index]) for index in held]) if held else []
        # In place: set by this claim, or held already with this content.
        in_place = [reply is not None and not isinstance(reply, Exception) for reply in claimed]
        conflicting = [False] * len(transactions)
        for index, holder in zip(held, holders, strict=True):
            if holder is not None and not isinstance(holder, Exception):
                conflicting[index] = _parse_seen(holder)[0] != _parse_seen(values[index])[0]
                in_place[index] = not conflicting[index]
        self._seen_in_place = {
            id(txn): txn for txn, placed in zip(transactions, in_place, strict=True) if placed
        }
        return conflicting

    async def _replies(self, commands: Sequence[Command]) -> list[Any]:
        """`execute_commands`' replies; on a cluster with a failed master, its commands'
        replies are their errors. Redis unreachable raises `FeatureStoreError`."""
        try:
            return await execute_commands(self._client, commands)
        except SomeCommandsFailed as partial:
            return list(partial.replies)
        except aioredis.RedisError as error:
            self.gate.failed(error)
            raise FeatureStoreError(f"feature store unavailable: {error}") from error

    async def record_labels(self, labels: Sequence[Label]) -> int:
        """Count fraud labels towards their merchant's risk; returns how many were matched.

        A fraud is kept under its transaction's event time, with the label's `label_time`.
        A label whose transaction was never seen (or has expired, or was recorded before
        its event time was kept) cannot be placed and is skipped. The first label of a
        transaction stands.
        """
        frauds = [label for label in labels if label.is_fraud]
        if not frauds:
            return 0
        self.gate.check()
        try:
            seen = await execute_commands(
                self._client, [("GET", _txn_seen_key(label.txn_id)) for label in frauds]
            )
            writes: list[Command] = []
            matched = 0
            for label, seen_value in zip(frauds, seen, strict=True):
                if seen_value is None:
                    continue
                _, event_time, merchant_id = _parse_seen(seen_value)
                if event_time is None:
                    continue
                matched += 1
                _, fraud_txns, label_times = _merchant_keys(merchant_id)
                writes += (
                    ("ZADD", fraud_txns, "NX", event_time, label.txn_id),
                    ("HSETNX", label_times, label.txn_id, label.label_time),
                    ("EXPIRE", fraud_txns, self._merchant_ttl),
                    ("EXPIRE", label_times, self._merchant_ttl),
                )
            if writes:
                await execute_commands(self._client, writes)
        except SomeCommandsFailed as partial:  # one master of a cluster: the rest stays open
            raise FeatureStoreError(f"feature store partly unavailable: {partial}") from partial
        except aioredis.RedisError as error:
            self.gate.failed(error)
            raise FeatureStoreError(f"feature store unavailable: {error}") from error
        return matched


def _merchant_counts(reply: Sequence[int]) -> MerchantCounts:
    """The merchant script's reply: the 1-day count, then per risk window its delayed
    transactions, then their frauds known by then."""
    windows = len(MERCHANT_RISK_WINDOWS)
    return MerchantCounts(
        txn_count_1d=int(reply[0]),
        delayed_txns=tuple(int(count) for count in reply[1 : 1 + windows]),
        delayed_frauds=tuple(int(count) for count in reply[1 + windows :]),
    )


class RedisScoreStore:
    """Each decision's score under `fs:{txn:<id>}:score`, kept as long as the windows."""

    def __init__(self, client: RedisClient, gate: RedisGate | None = None) -> None:
        self._client = client
        self.gate = gate if gate is not None else RedisGate()

    @classmethod
    def from_url(cls, url: str) -> RedisScoreStore:
        return cls(redis_client(url))

    async def close(self) -> None:
        """Close the client (shared with a `RedisFeatureStore` made by `redis_stores`)."""
        await self._client.aclose()

    async def record_scores(self, scored: Sequence[ScoredTransaction]) -> None:
        """Remember (txn_id, event_time, score) so a late label can be joined to its score."""
        self.gate.check()
        try:
            await execute_commands(self._client, [
                ("SET", _txn_score_key(txn_id), f"{event_time!r},{score!r}", "EX", KEY_TTL_SECONDS)
                for txn_id, event_time, score in scored
            ])  # fmt: skip
        except SomeCommandsFailed as partial:  # one master of a cluster: the rest stays open
            raise ScoreStoreError(f"score store partly unavailable: {partial}") from partial
        except aioredis.RedisError as error:
            self.gate.failed(error)
            raise ScoreStoreError(f"score store unavailable: {error}") from error

    async def scores_for(self, txn_ids: Sequence[str]) -> list[tuple[float, float] | None]:
        """(event_time, score) recorded for each transaction, None where unknown or expired."""
        if not txn_ids:
            return []
        try:
            replies = await execute_commands(
                self._client, [("GET", _txn_score_key(txn_id)) for txn_id in txn_ids]
            )
        except aioredis.RedisError as error:
            raise ScoreStoreError(f"score store unavailable: {error}") from error
        found: list[tuple[float, float] | None] = []
        for reply in replies:
            if reply is None:
                found.append(None)
                continue
            event_time, score = (reply.decode() if isinstance(reply, bytes) else reply).split(",")
            found.append((float(event_time), float(score)))
        return found


def redis_stores(
    url: str, cache: CardCache | None = None, label_delay_s: float = DEFAULT_LABEL_DELAY_S
) -> tuple[RedisFeatureStore, RedisScoreStore]:
    """The worker's feature store and score store on one Redis client (one pool), the
    merchant risk windows ending `label_delay_s` before each transaction.

    Closing either closes the client of both; a failure in either pauses both (`RedisGate`),
    except on a Redis Cluster, where the failed master alone is paused.
    """
    client, gate = redis_client(url), RedisGate()
    return RedisFeatureStore(client, cache, gate, label_delay_s), RedisScoreStore(client, gate)
