"""Running real workers in tests: topics per run, producing, collecting, comparing.

Shared by every worker test (tests/stream/worker/); waits are polls with a deadline.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from fraudstream.features.builder import build_features
from fraudstream.features.pseudonyms import new_id_hash_key
from fraudstream.features.transaction import Transaction
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from fraudstream.stream.tools.workers import REPLAYED_HISTORY, WorkerProcess, worker_env
from tests.support.redis_cluster import LocalRedisCluster, empty_redis_url
from tests.support.signing import TEST_SIGNING_KEY

#: Databases of the session's redis-server (tests/conftest.py).
REDIS_TEST_DATABASES = 64
#: One fresh Redis database per test, the streams reuse txn and card ids across seeds;
#: 0-15 are left to the tests that name theirs (test_runtime, test_loadtest).
REDIS_DATABASES = iter(range(16, REDIS_TEST_DATABASES))


MALFORMED = [b"{broken", b'{"txn_id": "only-an-id"}', b"\x00\xff", b'{"amount": "ten"}']


def setup_run(
    broker: EmbeddedBroker, redis: EmbeddedRedis | LocalRedisCluster, registry: Path,
    tmp_path: Path, **settings: str,
) -> tuple[dict[str, str], dict[str, str]]:  # fmt: skip
    """Fresh topics and an empty Redis (its own database, or the cluster flushed) for one run,
    and the environment of a worker deciding them (`settings` as `worker_env` takes them)."""
    run_id = uuid.uuid4().hex[:8]
    topics = {
        "transactions": f"tx-{run_id}",
        "decisions": f"dec-{run_id}",
        "labels": f"lab-{run_id}",
        "dlq": f"dlq-{run_id}",
    }
    broker.create_topics(topics.values(), partitions=4)
    env = worker_env(
        broker.url,
        empty_redis_url(redis, next(REDIS_DATABASES)),
        TEST_SIGNING_KEY,
        new_id_hash_key(),
        topic_transactions=topics["transactions"],
        topic_decisions=topics["decisions"],
        topic_labels=topics["labels"],
        topic_dlq=topics["dlq"],
        app_id=f"fraudstream-{run_id}",
        registry=str(registry),
        max_event_skew_s=REPLAYED_HISTORY,
        **settings,
    )
    return env, topics


def produce(
    broker: EmbeddedBroker, topic: str, txns: list[Transaction], extra: list[bytes]
) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    for txn in txns:
        producer.send(topic, key=txn.card_id.encode(), value=json.dumps(txn.to_dict()).encode())
    for raw in extra:
        producer.send(topic, key=b"malformed", value=raw)
    producer.flush()
    producer.close()


def collect(
    broker: EmbeddedBroker, topic: str, expected: int, timeout_s: float = 90.0
) -> list[dict]:
    """Every record on `topic` once `expected` distinct ones arrived (or the deadline passed)."""
    return [record for _, _, record in collect_messages(broker, topic, expected, timeout_s)]


def collect_messages(
    broker: EmbeddedBroker, topic: str, expected: int, timeout_s: float = 90.0
) -> list[tuple[bytes | None, bytes, dict]]:
    """`collect`, with each record's key and value bytes as consumed."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, consumer_timeout_ms=500
    )
    consumer.assign([TopicPartition(topic, p) for p in range(4)])
    consumer.seek_to_beginning()
    messages: list[tuple[bytes | None, bytes, dict]] = []
    deadline = time.monotonic() + timeout_s
    while distinct([m[2] for m in messages]) < expected and time.monotonic() < deadline:
        for message in consumer:
            messages.append((message.key, message.value, json.loads(message.value)))
    for message in consumer:  # anything beyond `expected` (duplicates) too
        messages.append((message.key, message.value, json.loads(message.value)))
    consumer.close()
    return messages


def distinct(records: list[dict]) -> int:
    """Records counted once per `txn_id` (dead letters, which have none, each once).

    A redelivery duplicates decisions; counting copies would stop a wait too early.
    """
    return len({record.get("txn_id", f"#{index}") for index, record in enumerate(records)})


def scrape(worker: WorkerProcess) -> str:
    """The worker's /metrics page (its URL is written beside its status file)."""
    url = worker.status_file.with_suffix(".metrics").read_text().strip()
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def stream_of(count: int, seed: int) -> list[Transaction]:
    return generate_stream(GeneratorConfig(transactions=count, seed=seed)).transactions


def assert_decided_exactly_once(txns: list[Transaction], decisions: list[dict]) -> None:
    counts = Counter(d["txn_id"] for d in decisions)
    assert set(counts) == {t.txn_id for t in txns}
    assert max(counts.values()) == 1


def wait_for_split(workers: list[WorkerProcess], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = [worker.partitions() or [] for worker in workers]
        if all(owned) and sorted(p for part in owned for p in part) == [0, 1, 2, 3]:
            return
        time.sleep(0.2)
    raise AssertionError(f"partitions never split across workers: {owned}")


def assert_features_match_offline(
    txns: list[Transaction], decisions: list[dict], every_copy: bool = False,
    only: set[str] | None = None,
) -> None:  # fmt: skip
    """Per-card windows stayed correct: online card features equal the offline builder's
    (for the txn_ids in `only`, when given; the windows are built from all of `txns`)."""
    offline = build_features(txns)
    names = list(offline.feature_names)
    by_id: dict[str, list[dict]] = {}
    for decision in decisions:
        by_id.setdefault(decision["txn_id"], []).append(decision)
    for row, txn in enumerate(offline.transactions):
        if only is not None and txn.txn_id not in only:
            continue
        copies = by_id[txn.txn_id] if every_copy else by_id[txn.txn_id][:1]
        for decision in copies:
            for name in ("count_1h", "count_1d", "count_30d", "total_amount_30d"):
                expected = offline.features[row, names.index(name)]
                column = names.index(name)  # decisions list features in FEATURE_NAMES order
                assert decision["features"][column] == pytest.approx(expected), (
                    txn.txn_id,
                    name,
                    decision["degraded"],
                    decision["fallbacks"],
                    len(copies),
                )


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.1)


def live_version(worker: WorkerProcess, info_metric: str) -> str | None:
    """The `version` label an `*_info` gauge of the worker sets to 1 (model or threshold)."""
    for family in text_string_to_metric_families(scrape(worker)):
        for sample in family.samples:
            if sample.name == info_metric and sample.value == 1:
                return str(sample.labels["version"])
    return None
