"""What one transaction costs Redis and the broker, measured on a real run, for the capacity plan.

`fraudstream capacity` (stream/tools/capacity.py) scales these figures up; nothing else can
tell it how many Redis commands a transaction takes or how many bytes a card's 30-day
window holds. The demo samples Redis before and after its run (`RedisCounters`), then
measures the keys the run wrote and reads its topics once (`run_footprint`):

- Redis: commands per transaction (INFO commandstats: a Lua script counts once, plus each
  command it calls), network bytes per transaction (INFO stats), and `MEMORY USAGE` of the
  run's keys by kind, following the layout of features/store.py (`fs:{card:<id>}:...`,
  `fs:{merchant:<id>}:...`, `fs:{txn:<id>}:...`). Card bytes are fitted as
  ``fixed + per_event × events`` over the run's cards (least squares), so a plan with
  another number of events per card can use them; keys of other runs in the same database
  are left out by id.
- Topics: records and value bytes (as produced: before compression, without the key, a
  22-character pseudonym, and the batch headers) on each topic, per transaction produced.

Key ``footprint`` of the demo's summary.json; every figure is positive and finite on a run
that decided anything (checked in tests/stream/tools/test_demo.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from redis.cluster import RedisCluster

from fraudstream.features.redis_cluster import blocking_client
from fraudstream.features.transaction import Transaction
from fraudstream.features.windows import RETENTION_SECONDS, merchant_retention_seconds
from fraudstream.stream.tools.ledger import read_topic
from fraudstream.stream.transport import PLAINTEXT, KafkaSecurity

#: Transactions whose own keys (`seen`, `score`) are measured: enough for a stable mean.
TXN_KEY_SAMPLE = 2_000
#: Longest time to read one of the run's topics once.
READ_TIMEOUT_S = 60.0
#: The tag of a feature-store key: kind and id (features/store.py's layout).
_KEY_TAG = re.compile(rb"^fs:\{(card|merchant|txn):(.*)\}:[a-z_]+$")


@dataclass(frozen=True)
class RedisCounters:
    """Server-wide counters read before and after a run: their difference is the run's."""

    calls: int
    net_input_bytes: int
    net_output_bytes: int
    used_memory: int

    @classmethod
    def read(cls, url: str) -> RedisCounters:
        """The counters of the Redis at `url`, summed over the masters of a cluster."""
        client = blocking_client(url, READ_TIMEOUT_S)
        try:
            commands, stats, memory = (
                _info_per_master(client, section) for section in ("commandstats", "stats", "memory")
            )
        finally:
            client.close()
        return cls(
            calls=sum(int(entry["calls"]) for master in commands for entry in master.values()),
            net_input_bytes=sum(int(master["total_net_input_bytes"]) for master in stats),
            net_output_bytes=sum(int(master["total_net_output_bytes"]) for master in stats),
            used_memory=sum(int(master["used_memory"]) for master in memory),
        )


def _info_per_master(client: redis.Redis | RedisCluster, section: str) -> list[dict[str, Any]]:
    if isinstance(client, RedisCluster):
        return list(client.info(section, target_nodes=RedisCluster.PRIMARIES).values())
    return [client.info(section)]


def run_footprint(
    redis_url: str, before: RedisCounters, transactions: Sequence[Transaction],
    bootstrap: str, topics: Mapping[str, str], *, label_delay_s: float,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, Any]:  # fmt: skip
    """Redis and topic figures of a finished run of `transactions` (see the module doc).

    `transactions` carry the ids as the workers stored them (pseudonyms, see
    features/pseudonyms.py). `topics` maps a role (``transactions``, ``decisions``,
    ``labels``, ``dlq``) to its topic.
    """
    count = max(len(transactions), 1)
    after = RedisCounters.read(redis_url)
    redis_figures = {
        "commands_per_txn": (after.calls - before.calls) / count,
        "net_input_bytes_per_txn": (after.net_input_bytes - before.net_input_bytes) / count,
        "net_output_bytes_per_txn": (after.net_output_bytes - before.net_output_bytes) / count,
        "used_memory_growth_per_txn": (after.used_memory - before.used_memory) / count,
        "card_retention_s": RETENTION_SECONDS,
        "merchant_retention_s": merchant_retention_seconds(label_delay_s),
        **_key_bytes(redis_url, transactions),
    }
    topic_figures = {}
    for role, topic in topics.items():
        stored = read_topic(bootstrap, topic, READ_TIMEOUT_S, security)
        records, size = len(stored), sum(len(record.value or b"") for record in stored)
        topic_figures[role] = {
            "topic": topic, "records": records, "bytes": size,
            "records_per_txn": records / count,
            "bytes_per_record": size / records if records else None,
        }  # fmt: skip
    return {"transactions": len(transactions), "redis": redis_figures, "topics": topic_figures}


def _key_bytes(url: str, transactions: Sequence[Transaction]) -> dict[str, Any]:
    """`MEMORY USAGE` of the run's card, merchant and sampled transaction keys."""
    cards = {txn.card_id for txn in transactions}
    merchants = {txn.merchant_id for txn in transactions}
    sampled = {txn.txn_id for txn in transactions[:TXN_KEY_SAMPLE]}
    wanted = {b"card": cards, b"merchant": merchants, b"txn": sampled}
    client = blocking_client(url, READ_TIMEOUT_S)
    try:
        keys = []
        for key in client.scan_iter(match="fs:{*", count=1000):
            match = _KEY_TAG.match(key)
            if match and match[2].decode() in wanted[match[1]]:
                keys.append((match[1].decode(), match[2].decode(), key))
        pipe = client.pipeline(transaction=False)
        for _, _, key in keys:
            pipe.memory_usage(key, samples=0)
            if key.endswith((b":times", b":txns")):
                pipe.zcard(key)
            elif key.endswith(b":seen"):
                pipe.ttl(key)
        replies = iter(pipe.execute())
    finally:
        client.close()
    bytes_by: dict[str, dict[str, int]] = {"card": {}, "merchant": {}, "txn": {}}
    events_by: dict[str, dict[str, int]] = {"card": {}, "merchant": {}}
    ttls: list[int] = []
    for kind, entity, key in keys:
        bytes_by[kind][entity] = bytes_by[kind].get(entity, 0) + int(next(replies) or 0)
        if key.endswith((b":times", b":txns")):
            events_by[kind][entity] = int(next(replies))
        elif key.endswith(b":seen"):
            ttls.append(int(next(replies)))
    card_ids = sorted(bytes_by["card"])
    card_bytes = np.array([bytes_by["card"][card] for card in card_ids], dtype=float)
    card_events = np.array([events_by["card"].get(card, 0) for card in card_ids], dtype=float)
    merchant_events = sum(events_by["merchant"].values())
    return {
        "cards": len(card_ids),
        "card_events": int(card_events.sum()),
        "card_bytes": int(card_bytes.sum()),
        **_card_fit(card_bytes, card_events),
        "merchants": len(bytes_by["merchant"]),
        "merchant_events": merchant_events,
        "merchant_bytes": sum(bytes_by["merchant"].values()),
        "merchant_bytes_per_event": (
            sum(bytes_by["merchant"].values()) / merchant_events if merchant_events else None
        ),
        "txns_sampled": len(bytes_by["txn"]),
        "txn_bytes_per_txn": (
            sum(bytes_by["txn"].values()) / len(bytes_by["txn"]) if bytes_by["txn"] else None
        ),
        "txn_key_ttl_s": max(ttls) if ttls else None,
    }


def _card_fit(card_bytes: np.ndarray, card_events: np.ndarray) -> dict[str, float | None]:
    """Bytes of one card as ``fixed + per_event × events`` (least squares over the cards).

    When the fit is undetermined (fewer than two distinct event counts) or its fixed part
    comes out negative (Redis switches a key to a bigger encoding past 128 entries, so
    bytes grow faster than linearly), all bytes are charged per event: fixed 0, mean bytes
    per event.
    """
    if card_events.sum() <= 0:
        return {"card_bytes_fixed": None, "card_bytes_per_event": None}
    if len(np.unique(card_events)) >= 2:
        per_event, fixed = np.polyfit(card_events, card_bytes, 1)
        if fixed >= 0:
            return {"card_bytes_fixed": float(fixed), "card_bytes_per_event": float(per_event)}
    return {"card_bytes_fixed": 0.0,
            "card_bytes_per_event": float(card_bytes.sum() / card_events.sum())}  # fmt: skip
