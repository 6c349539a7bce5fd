"""What became of every record of a run: decided, dead-lettered, or lost.

The README promises at-least-once: a crash may repeat a decision, never lose one. The
benches that test it (bench/bench_overload.py, the chaos runs of stream/tools/chaos.py)
read the topics back once the run is over and account for each record the transactions
topic holds:

- *decided*: it parses as a transaction and the decisions topic holds its `txn_id`;
- *dead-lettered*: otherwise, a dead letter holds its bytes (matched by `raw_hmac_sha256`,
  keyed with the run's id hash key, one
  letter per record: ten identical tombstones need ten letters);
- *lost*: neither. Lost records below the consumer group's committed offset were
  *skipped* (the group moved past them); the others were never reached (no live worker).

Also counted: `txn_id`s decided more than once (`duplicates`), degraded and stand-in
decisions. `accounted_at` keeps, per record, when its first decision or letter was
produced (the broker timestamps), which is what a recovery time is measured with.
`committed_offsets` and `group_lag` read the consumer group's progress.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.features.transaction import InvalidTransaction, parse_transaction
from fraudstream.stream.transport import PLAINTEXT, KafkaSecurity, kafka_client_options

#: Largest record the readers accept: above the producers' 1 MiB request limit.
MAX_RECORD_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """One record as the broker holds it; `timestamp` in epoch seconds (its create time)."""

    partition: int
    offset: int
    timestamp: float
    value: bytes | None


def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 120.0, security: KafkaSecurity = PLAINTEXT
) -> list[TopicRecord]:
    """Every record the broker holds on `topic` now, all partitions, in offset order.

    Reads until each partition's position reaches the high-water mark its fetches report.
    Not `end_offsets`: Tansu 0.6 answers ListOffsets(latest) with the base offset of the
    last batch, not the end of the log, which would leave that batch out.
    Raises TimeoutError past `timeout_s`.
    """
    return asyncio.run(asyncio.wait_for(_read_topic(bootstrap, topic, security), timeout_s))


async def _read_topic(bootstrap: str, topic: str, security: KafkaSecurity) -> list[TopicRecord]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=MAX_RECORD_BYTES,
        fetch_max_bytes=8 * MAX_RECORD_BYTES, **kafka_client_options(security),
    )  # fmt: skip
    await consumer.start()
    try:
        await consumer.topics()  # metadata, so the topic's partitions are known
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[TopicRecord] = []
        while not await _caught_up(consumer, partitions):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records += [TopicRecord(r.partition, r.offset, r.timestamp / 1000.0, r.value)
                            for r in batch]  # fmt: skip
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> bool:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


async def _high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)  # at most the last batch away (see read_topic)
        while any(consumer.highwater(tp) is None for tp in tps):
            await consumer.getmany(timeout_ms=200)
        return {tp.partition: int(consumer.highwater(tp)) for tp in tps}
    finally:
        await consumer.stop()


def high_watermarks(bootstrap: str, topic: str, partitions: int, timeout_s: float = 30.0
                    ) -> dict[int, int]:  # fmt: skip
    """The end of each partition's log, as fetches report it (see `read_topic`)."""
    return asyncio.run(asyncio.wait_for(_high_watermarks(bootstrap, topic, partitions),
                                        timeout_s))  # fmt: skip


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (0 where none is)."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fraudstream-ledger")
    try:
        offsets = admin.list_group_offsets({group: tps}).get(group, {})
    finally:
        admin.close()
    return {tp.partition: max(0, offsets[tp].offset) if tp in offsets else 0 for tp in tps}


def group_lag(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Records of `topic` past the group's committed offsets."""
    committed = committed_offsets(bootstrap, group, topic, partitions)
    ends = high_watermarks(bootstrap, topic, partitions)
    return sum(max(0, end - committed[partition]) for partition, end in ends.items())


@dataclass(frozen=True)
class Ledger:
    """Every input record accounted for; see the module docstring for the terms."""

    records_in: int
    decided: int
    dead_lettered: int
    lost: int
    lost_skipped: int
    duplicates: int
    decision_records: int
    degraded: int
    stand_in: int
    #: Per input record (topic order): its produce time, and when it was first decided or
    #: dead-lettered (None: lost).
    produced_at: list[float] = field(repr=False)
    accounted_at: list[float | None] = field(repr=False)
    #: The first few lost records, shortened, to show what was lost.
    lost_examples: list[str] = field(default_factory=list)

    def recovery_s(self, fault_end: float) -> float | None:
        """Seconds after `fault_end` until every record produced before it was accounted for.

        0 when none waited past it; None when one of them was lost. When the topic holds
        no record produced before `fault_end` (a broker that lost its log), until its first
        record was.
        """
        horizon = max(fault_end, min(self.produced_at, default=fault_end))
        due = [at for at, made in zip(self.accounted_at, self.produced_at, strict=True)
               if made <= horizon]  # fmt: skip
        if any(at is None for at in due):
            return None
        return max([0.0] + [at - fault_end for at in due if at is not None])

    def longest_wait_s(self) -> float | None:
        """The most seconds a record waited from its production to its decision or letter."""
        waits = [at - made for at, made in zip(self.accounted_at, self.produced_at, strict=True)
                 if at is not None]  # fmt: skip
        return max(waits, default=None)

    def summary(self) -> dict[str, object]:
        """The counts, without the per-record lists."""
        wait = self.longest_wait_s()
        return {
            "longest_wait_s": None if wait is None else round(wait, 1),
            "records_in": self.records_in, "decided": self.decided,
            "dead_lettered": self.dead_lettered, "lost": self.lost,
            "lost_skipped": self.lost_skipped, "duplicates": self.duplicates,
            "decision_records": self.decision_records, "degraded": self.degraded,
            "stand_in": self.stand_in, "lost_examples": self.lost_examples,
        }  # fmt: skip


def identity(value: bytes | None, ids: IdPseudonyms) -> tuple[str | None, str]:
    """A record's `txn_id` (None unless it parses as a transaction) and its keyed digest,
    as its dead letter would carry it."""
    try:
        txn_id: str | None = parse_transaction(value).txn_id
    except InvalidTransaction:
        txn_id = None
    return txn_id, ids.record_digest(value or b"")


def account(
    transactions: Sequence[TopicRecord], decisions: Sequence[TopicRecord],
    dead_letters: Sequence[TopicRecord], ids: IdPseudonyms,
    committed: Mapping[int, int] | None = None,
) -> Ledger:  # fmt: skip
    """The ledger of a run from its three topics read back; `ids` holds the run's id hash
    key (dead letters identify records by a digest keyed with it); `committed` maps
    partition to the group's committed offset (to tell skipped records from never reached
    ones)."""
    decided_at: dict[str, float] = {}
    per_id: Counter[str] = Counter()
    degraded = stand_in = 0
    for record in decisions:
        document = orjson.loads(record.value or b"{}")
        per_id[document["txn_id"]] += 1
        decided_at[document["txn_id"]] = min(
            record.timestamp, decided_at.get(document["txn_id"], record.timestamp)
        )
        degraded += bool(document.get("degraded"))
        stand_in += bool(document.get("stand_in"))
    letters: dict[str, list[float]] = defaultdict(list)
    for record in sorted(dead_letters, key=lambda r: r.timestamp):
        letters[orjson.loads(record.value or b"{}")["raw_hmac_sha256"]].append(record.timestamp)
    counts: Counter[str] = Counter()
    accounted_at: list[float | None] = []
    lost_examples: list[str] = []
    lost_skipped = 0
    for record in transactions:
        txn_id, digest = identity(record.value, ids)
        if txn_id is not None and txn_id in decided_at:
            counts["decided"] += 1
            accounted_at.append(decided_at[txn_id])
        elif letters.get(digest):
            counts["dead_lettered"] += 1
            accounted_at.append(letters[digest].pop(0))
        else:
            accounted_at.append(None)
            lost_skipped += record.offset < (committed or {}).get(record.partition, 0)
            if len(lost_examples) < 5:
                lost_examples.append(f"p{record.partition}@{record.offset}: {record.value!r:.120}")
    return Ledger(
        records_in=len(transactions), decided=counts["decided"],
        dead_lettered=counts["dead_lettered"], lost=accounted_at.count(None),
        lost_skipped=lost_skipped, duplicates=sum(1 for n in per_id.values() if n > 1),
        decision_records=len(decisions), degraded=degraded, stand_in=stand_in,
        produced_at=[record.timestamp for record in transactions], accounted_at=accounted_at,
        lost_examples=lost_examples,
    )  # fmt: skip
