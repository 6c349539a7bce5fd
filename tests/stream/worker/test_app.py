"""Faust workers on the real broker and Redis: nothing lost, nothing decided twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from fraudstream.stream.tools.workers import start_workers, stop_workers
from tests.support.promtool import PROMTOOL, promtool
from tests.support.redis_cluster import LocalRedisCluster
from tests.support.worker_runs import (
    MALFORMED,
    assert_decided_exactly_once,
    assert_features_match_offline,
    collect,
    produce,
    scrape,
    setup_run,
    stream_of,
    wait_for_split,
)

pytestmark = pytest.mark.integration


def test_every_transaction_decided_once_and_every_bad_record_dead_lettered(
    broker: EmbeddedBroker, any_redis: EmbeddedRedis | LocalRedisCluster,
    trained_registry: Path, tmp_path: Path,
) -> None:  # fmt: skip
    """On one Redis and on a Redis Cluster (`any_redis`) alike."""
    env, topics = setup_run(broker, any_redis, trained_registry, tmp_path)
    workers = start_workers(1, env, tmp_path, session_timeout_s=2.0)
    try:
        txns = stream_of(1500, seed=21)
        produce(broker, topics["transactions"], txns, MALFORMED)
        decisions = collect(broker, topics["decisions"], len(txns))
        dead = collect(broker, topics["dlq"], len(MALFORMED), timeout_s=20)
        exposition = scrape(workers[0])
    finally:
        stop_workers(workers)
    assert_decided_exactly_once(txns, decisions)
    assert_features_match_offline(txns, decisions)
    assert len(dead) == len(MALFORMED)
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    decided = sum(s.value for s in families["fraudstream_decisions"].samples
                  if s.name == "fraudstream_decisions_total")  # fmt: skip
    dead_lettered = sum(s.value for s in families["fraudstream_dead_letters"].samples
                        if s.name == "fraudstream_dead_letters_total")  # fmt: skip
    assert (decided, dead_lettered) == (len(txns), len(MALFORMED))
    assert all(letter["stage"] == "validate" and letter["error"] for letter in dead)
    if PROMTOOL is not None:  # the live page, Faust's sensor included, passes Prometheus' lint
        assert "faust_" in exposition
        promtool("check", "metrics", stdin=exposition)


def test_two_workers_share_partitions_and_decide_each_transaction_once(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path, tmp_path: Path
) -> None:
    env, topics = setup_run(broker, redis_server, trained_registry, tmp_path)
    workers = start_workers(2, env, tmp_path, session_timeout_s=2.0)
    try:
        wait_for_split(workers)
        txns = stream_of(2000, seed=22)
        produce(broker, topics["transactions"], txns, [])
        decisions = collect(broker, topics["decisions"], len(txns))
    finally:
        stop_workers(workers)
    assert_decided_exactly_once(txns, decisions)
    assert_features_match_offline(txns, decisions)


def test_tombstones_and_hostile_records_cost_one_dead_letter_each_on_the_real_broker(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path, tmp_path: Path
) -> None:
    env, topics = setup_run(broker, redis_server, trained_registry, tmp_path)
    txns = stream_of(300, seed=23)
    template = json.dumps({**txns[0].to_dict(), "amount": "AMOUNT"})
    hostile: list[bytes | None] = [
        None,  # a tombstone
        template.replace('"AMOUNT"', "1" + "0" * 400).encode(),
        template.replace('"AMOUNT"', "[" * 5_000 + "]" * 5_000).encode(),
        json.dumps({**txns[0].to_dict(), "txn_id": "\ud800"}).encode(),  # as "\\ud800"
        bytes(range(256)) * 3_516,  # 900 KB of binary: a 1.2 MB letter if copied whole
    ]
    workers = start_workers(1, env, tmp_path, session_timeout_s=2.0)
    try:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        for value in hostile:
            producer.send(topics["transactions"], key=b"hostile", value=value)
        producer.flush()
        producer.close()
        produce(broker, topics["transactions"], txns, [])
        decisions = collect(broker, topics["decisions"], len(txns))
        dead = collect(broker, topics["dlq"], len(hostile), timeout_s=20)
    finally:
        stop_workers(workers)
    assert_decided_exactly_once(txns, decisions)
    assert sorted(letter["raw_size"] for letter in dead) == sorted(
        len(value or b"") for value in hostile
    )
    assert all(letter["stage"] == "validate" for letter in dead)
    assert any(letter["error"] == "tombstone: null value" for letter in dead)
