"""Tests for stream/sim/replay.py: the schedule arithmetic, and a real replay onto Tansu."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from fraudstream.features.transaction import Label, Transaction
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.sim.replay import (
    MALFORMED_KEY,
    ReplayProgress,
    ScheduledRecord,
    plan_schedule,
    replay,
)
from fraudstream.stream.tools.services import EmbeddedBroker

T0 = 1_767_225_600.0


def txn(i: int, event_time: float) -> Transaction:
    return Transaction(f"t{i}", f"c{i % 3}", "m1", 10.0, "EUR", "FR", "pos", event_time)


def test_rate_spaces_transactions_evenly_and_scales_label_delays_alike() -> None:
    # 5 transactions over 400 s replayed at 10/s: 0.5 s of replay, so 800 s of history per s.
    transactions = [txn(i, T0 + 100.0 * i) for i in range(5)]
    labels = [
        Label("t0", False, "legit", T0 + 160.0),  # 160 / 800 = 0.2 s
        Label("t1", True, "stolen_card", T0 + 101.0),  # 101 / 800 s
        Label("t3", True, "stolen_card", T0 + 300.5),  # 300.5 / 800 s
        Label("t4", False, "legit", T0 + 10_000.0),  # after the last txn: sent right after it
    ]
    schedule = plan_schedule(transactions, labels, rate=10.0)
    due = {(r.kind, r.index): r.due_s for r in schedule}
    assert [due["txn", i] for i in range(5)] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert due["label", 0] == pytest.approx(0.2)
    assert due["label", 1] == pytest.approx(101.0 / 800.0)
    assert due["label", 2] == pytest.approx(300.5 / 800.0)
    assert due["label", 3] == pytest.approx(0.4)
    assert schedule[-1].kind == "label" and schedule[-2] == ScheduledRecord(0.4, "txn", 4)
    assert [r.due_s for r in schedule] == sorted(r.due_s for r in schedule)


def test_label_is_never_due_before_its_transaction() -> None:
    # Dense early traffic: at a fixed rate t2 is due at 0.2 s, but its label maps to 0.0125 s.
    transactions = [txn(0, T0), txn(1, T0 + 1.0), txn(2, T0 + 2.0), txn(3, T0 + 400.0)]
    schedule = plan_schedule(transactions, [Label("t2", True, "x", T0 + 5.0)], rate=10.0)
    order = [(r.kind, r.index) for r in schedule]
    assert order.index(("label", 0)) == order.index(("txn", 2)) + 1


def test_speedup_compresses_original_gaps_and_labels_by_the_same_factor() -> None:
    transactions = [txn(0, T0), txn(1, T0 + 60.0), txn(2, T0 + 600.0)]
    labels = [Label("t1", True, "x", T0 + 300.0), Label("t2", False, "legit", T0 + 9e5)]
    schedule = plan_schedule(transactions, labels, speedup=60.0)
    due = {(r.kind, r.index): r.due_s for r in schedule}
    assert [due["txn", i] for i in range(3)] == pytest.approx([0.0, 1.0, 10.0])
    assert due["label", 0] == pytest.approx(5.0)
    assert due["label", 1] == pytest.approx(10.0)  # clipped to the last transaction


def test_malformed_records_are_spread_evenly_through_the_stream() -> None:
    transactions = [txn(i, T0 + i) for i in range(9)]
    schedule = plan_schedule(transactions, [], rate=100.0, extra_count=2)
    kinds = [r.kind for r in schedule]
    assert [i for i, kind in enumerate(kinds) if kind == "malformed"] == [4, 8]


def test_pace_is_either_rate_or_speedup() -> None:
    with pytest.raises(ValueError, match="not both"):
        plan_schedule([txn(0, T0)], [], rate=1.0, speedup=2.0)
    with pytest.raises(ValueError, match="rate must be > 0"):
        plan_schedule([txn(0, T0)], [], rate=0.0)


def read_all(bootstrap: str, topic: str, expected: int, timeout_ms: int = 10_000) -> list:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=timeout_ms,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        records = []
        for record in consumer:
            records.append(record)
            if len(records) >= expected:
                break
        # Anything beyond `expected` (a duplicate) would show up within a short extra poll.
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


@pytest.mark.integration
def test_replay_delivers_every_transaction_once_in_card_order(broker: EmbeddedBroker) -> None:
    topic, labels_topic = "replay-test-transactions", "replay-test-labels"
    broker.create_topics([topic, labels_topic], partitions=4)
    stream = generate_stream(GeneratorConfig(transactions=2000, seed=1))
    malformed = [b"{not json", b"", b"\xff\xfe", b'{"txn_id": 1}', b"[]"]
    progress: list[ReplayProgress] = []

    report = replay(
        broker.bootstrap,
        stream.transactions,
        stream.labels,
        topic=topic,
        labels_topic=labels_topic,
        rate=4000.0,
        on_progress=progress.append,
        extra_records=malformed,
    )

    assert (report.produced, report.labels_produced, report.malformed_produced) == (2000, 2000, 5)
    assert report.achieved_tps > 0 and report.seconds > 0
    assert set(report.produce_times) == {t.txn_id for t in stream.transactions}
    assert progress and progress[-1].produced == 2000

    records = read_all(broker.bootstrap, topic, expected=2005)
    bad = [r for r in records if r.key == MALFORMED_KEY]
    assert sorted(r.value for r in bad) == sorted(malformed)
    good = [r for r in records if r.key != MALFORMED_KEY]
    values = [json.loads(r.value) for r in good]
    counts = Counter(v["txn_id"] for v in values)
    assert set(counts) == {t.txn_id for t in stream.transactions}
    assert max(counts.values()) == 1
    assert all(r.key.decode() == v["card_id"] for r, v in zip(good, values, strict=True))

    per_card: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for r, v in zip(good, values, strict=True):
        per_card[v["card_id"]].append((r.partition, r.offset, v["event_time"]))
    for seen in per_card.values():
        assert len({partition for partition, _, _ in seen}) == 1
        by_offset = [event_time for _, _, event_time in sorted(seen)]
        assert by_offset == sorted(by_offset)

    labels = read_all(broker.bootstrap, labels_topic, expected=len(stream.labels))
    assert len(labels) == len(stream.labels)
    assert {r.key.decode() for r in labels} == {label.txn_id for label in stream.labels}
