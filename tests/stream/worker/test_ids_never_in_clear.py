"""Issue 10 §6 on a real worker: no card or merchant id in clear anywhere it writes.

The transactions carry realistic card numbers and merchant ids, so a raw one is found by a
plain substring search wherever it lands: every Redis key and value, the decisions topic
(keys and values), the dead-letter topic, /metrics and the worker's log.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from kafka import KafkaProducer

from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.features.transaction import Transaction
from fraudstream.stream.settings import Settings, SettingsError
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from fraudstream.stream.tools.workers import start_workers, stop_workers
from fraudstream.stream.worker.metrics import WorkerMetrics
from fraudstream.stream.worker.runtime import WorkerRuntime
from tests.support.signing import TEST_SIGNING_KEY
from tests.support.worker_runs import (
    assert_decided_exactly_once,
    assert_features_match_offline,
    collect_messages,
    produce,
    scrape,
    setup_run,
    wait_until,
)

pytestmark = pytest.mark.integration


def with_real_looking_ids(txn: Transaction) -> Transaction:
    """`c01234` becomes the 16-digit card number 4000000000001234, `m0042` MID000000000042."""
    return replace(txn, card_id=f"4{int(txn.card_id[1:]):015d}",
                   merchant_id=f"MID{int(txn.merchant_id[1:]):012d}")  # fmt: skip


def redis_contents(url: str) -> bytes:
    """Every key of the database and every value under it, as one searchable blob."""
    client = redis.Redis.from_url(url)
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        parts.append(key)
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "hash":
            parts += [item for pair in client.hgetall(key).items() for item in pair]
        elif kind == "zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "list":
            parts += client.lrange(key, 0, -1)
        elif kind == "set":
            parts += list(client.smembers(key))
        else:
            raise AssertionError(f"{key!r} is a {kind}: teach this test to read it")
    client.close()
    return b"\n".join(parts)


def test_no_raw_card_or_merchant_id_reaches_redis_decisions_dead_letters_metrics_or_logs(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path, tmp_path: Path
) -> None:
    env, topics = setup_run(broker, redis_server, trained_registry, tmp_path)
    ids = IdPseudonyms(env["FRAUDSTREAM_ID_HASH_KEY"])
    stream = generate_stream(GeneratorConfig(transactions=800, seed=31))
    txns = [with_real_looking_ids(txn) for txn in stream.transactions]
    frauds = [label for label in stream.labels if label.is_fraud]
    assert frauds, "the stream needs fraud labels to write merchant fraud keys"
    card_number = "4111111111111111"
    bad = [  # a JSON record to mask, an id that error messages must not quote, and not JSON
        json.dumps({**txns[0].to_dict(), "txn_id": "bad-amount", "amount": -5}).encode(),
        json.dumps({**txns[1].to_dict(), "txn_id": "bad-card", "card_id": int(card_number)}
                   ).encode(),  # fmt: skip
        json.dumps({**txns[2].to_dict(), "txn_id": "bad-nan"}).replace("}", ', "x": NaN}'
                                                                       ).encode(),  # fmt: skip
    ]
    workers = start_workers(1, env, tmp_path, session_timeout_s=2.0)
    try:
        produce(broker, topics["transactions"], txns, bad)
        decisions = collect_messages(broker, topics["decisions"], len(txns))
        dead = collect_messages(broker, topics["dlq"], len(bad), timeout_s=20)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        for label in frauds:
            producer.send(topics["labels"], value=json.dumps(label.to_dict()).encode())
        producer.flush()
        producer.close()
        url = env["FRAUDSTREAM_REDIS_URL"]
        wait_until(lambda: b":fraud_txns" in redis_contents(url), "fraud labels in Redis")
        exposition = scrape(workers[0]).encode()
    finally:
        stop_workers(workers)
    stored, log = redis_contents(url), workers[0].log_file.read_bytes()

    raw_ids = {card_number} | {t.card_id for t in txns} | {t.merchant_id for t in txns}
    in_clear = re.compile("|".join(map(re.escape, raw_ids)).encode())
    for where, blob in [("redis", stored), ("metrics", exposition), ("worker log", log),
                        *(("decision", key + b" " + value) for key, value, _ in decisions),
                        *(("dead letter", value) for _, value, _ in dead)]:  # fmt: skip
        found = in_clear.search(blob or b"")
        assert found is None, f"{found.group().decode()} in clear in the {where}"

    # The pseudonyms are the run key's, and the features are those of the raw ids.
    cards = {t.txn_id: ids.card(t.card_id) for t in txns}
    assert all(key == cards[d["txn_id"]].encode() == d["card_id"].encode()
               for key, _, d in decisions)  # fmt: skip
    assert {f"fs:{{card:{card}}}:times".encode() for card in cards.values()} <= set(
        stored.split(b"\n")
    )
    assert_decided_exactly_once(txns, [d for _, _, d in decisions])
    assert_features_match_offline(txns, [d for _, _, d in decisions])

    letters = {json.loads(d["raw"] or "{}").get("txn_id", "withheld"): d for _, _, d in dead}
    assert json.loads(letters["bad-amount"]["raw"])["card_id"] == ids.card(txns[0].card_id)
    assert json.loads(letters["bad-card"]["raw"])["card_id"] == "***"
    assert "a value of type int" in letters["bad-card"]["error"]
    assert letters["withheld"]["raw_masking"] == "withheld"
    assert letters["withheld"]["raw_size"] == len(bad[2])


def test_a_worker_runtime_on_named_services_refuses_to_start_without_the_key() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0",  # never reached: refused first
                        signing_key=TEST_SIGNING_KEY)  # fmt: skip
    with pytest.raises(SettingsError, match="FRAUDSTREAM_ID_HASH_KEY is not set"):
        WorkerRuntime(settings, "redis://127.0.0.1:1/0", WorkerMetrics())
