"""A worker killed mid-stream and restarted: every transaction decided, no window doubled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from fraudstream.stream.tools.workers import start_workers, stop_workers
from tests.support.worker_runs import (
    assert_features_match_offline,
    collect,
    produce,
    setup_run,
)

pytestmark = pytest.mark.integration


def count_records(broker: EmbeddedBroker, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    partitions = [TopicPartition(topic, p) for p in range(4)]
    total = sum(consumer.end_offsets(partitions).values())
    consumer.close()
    return total


def test_killed_worker_restarts_and_no_window_counts_a_transaction_twice(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path, tmp_path: Path
) -> None:
    env, topics = setup_run(broker, redis_server, trained_registry, tmp_path)
    # One day of event time: no redelivery can be later than the allowed lateness
    # (features/windows.py), so every copy of a decision must see its complete history.
    txns = generate_stream(GeneratorConfig(transactions=4000, seed=23, days=1.0)).transactions
    workers = start_workers(1, env, tmp_path / "first", session_timeout_s=2.0)
    try:
        produce(broker, topics["transactions"], txns, [])
        deadline = time.monotonic() + 60
        while count_records(broker, topics["decisions"]) < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers[0].process.kill()  # mid-stream, without committing its offsets
        workers[0].process.wait()
        assert count_records(broker, topics["decisions"]) < len(txns), "killed too late"
        workers = start_workers(1, env, tmp_path / "second", session_timeout_s=2.0)
        decisions = collect(broker, topics["decisions"], len(txns))
    finally:
        stop_workers(workers)
    assert {d["txn_id"] for d in decisions} == {t.txn_id for t in txns}
    # Redelivered transactions are decided again, with the same windows: the feature
    # store did not count them twice.
    assert_features_match_offline(txns, decisions, every_copy=True)
