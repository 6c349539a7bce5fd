"""The embedded Tansu broker and redis-server are real, usable and leave nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.services import (
    EmbeddedBroker,
    EmbeddedRedis,
    ServiceStartError,
    embedded_services,
    kafka_bootstrap,
)


def _process_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once ``pid`` is gone or a zombie (dead, awaiting its reaper); polls to a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (ProcessLookupError, FileNotFoundError):
            return True
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return True
        time.sleep(0.02)
    return False


def test_kafka_bootstrap_converts_faust_url_to_client_form() -> None:
    assert kafka_bootstrap("kafka://127.0.0.1:9092") == "127.0.0.1:9092"
    assert kafka_bootstrap("kafka://a:1;b:2") == "a:1,b:2"


@pytest.mark.integration
def test_broker_creates_topics_with_four_partitions(broker: EmbeddedBroker) -> None:
    from kafka.admin import KafkaAdminClient

    created = broker.create_topics(["svc-a", "svc-b"], partitions=4)
    assert created == ["svc-a", "svc-b"]
    assert broker.create_topics(["svc-a"], partitions=4) == []  # idempotent

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics(["svc-a", "svc-b"])}
    finally:
        admin.close()
    assert {name: len(t["partitions"]) for name, t in described.items()} == {
        "svc-a": 4,
        "svc-b": 4,
    }
    assert broker.url == f"kafka://127.0.0.1:{broker.port}"
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"


@pytest.mark.integration
def test_thousand_keyed_records_round_trip_through_the_broker(broker: EmbeddedBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = "svc-roundtrip"
    broker.create_topics([topic], partitions=4)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    for i in range(1000):
        value = json.dumps({"txn_id": f"t{i}", "card_id": f"c{i % 37}"}).encode()
        producer.send(topic, key=f"c{i % 37}".encode(), value=value)
    producer.flush(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id="svc-roundtrip-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # Tansu holds a JoinGroup for ~half the session timeout; kafka-python's default
        # (45 s) would make this join take ~22 s.
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    seen: list[tuple[bytes, int, str]] = []
    deadline = time.monotonic() + 30
    try:
        while len(seen) < 1000 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                seen.extend((r.key, r.partition, json.loads(r.value)["txn_id"]) for r in records)
    finally:
        consumer.close()

    assert sorted(txn for _, _, txn in seen) == sorted(f"t{i}" for i in range(1000))
    partitions_by_key: dict[bytes, set[int]] = {}
    for key, partition, _ in seen:
        partitions_by_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_by_key.values()), "a key spans partitions"
    assert len(Counter(p for _, p, _ in seen)) == 4, "37 keys should reach all 4 partitions"


@pytest.mark.integration
def test_redis_answers_ping_set_get_and_lua(redis_server: EmbeddedRedis) -> None:
    import redis

    assert redis_server.unix_url is not None
    for url in (redis_server.url, redis_server.unix_url):
        client = redis.Redis.from_url(url)
        try:
            assert client.ping()
            client.set("svc:key", "value")
            assert client.get("svc:key") == b"value"
            script = "redis.call('INCRBY', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"
            client.delete("svc:counter")
            assert client.eval(script, 1, "svc:counter", 5) == b"5"
        finally:
            client.close()


@pytest.mark.integration
def test_stopping_services_leaves_no_process_alive() -> None:
    with embedded_services(Settings()) as urls:
        assert urls.started == ("kafka", "redis")
        assert urls.kafka_url.startswith("kafka://127.0.0.1:")
        assert urls.redis_unix_url is not None
        started_pids = list(urls.pids.values())
        assert set(urls.pids) == {"broker", "redis"} and len(set(started_pids)) == 2
    assert all(_process_gone(pid) for pid in started_pids)
    broker, redis_server = EmbeddedBroker().start(), EmbeddedRedis().start()
    pids = [broker.pid, redis_server.pid]
    workdir = redis_server.workdir
    broker.stop()
    redis_server.stop()
    assert all(pid is not None and _process_gone(pid) for pid in pids)
    assert not broker.is_running() and not redis_server.is_running()
    assert not workdir.exists(), "the temporary log/socket folder is removed"


@pytest.mark.integration
def test_services_are_stopped_when_the_block_raises() -> None:
    pids: list[int | None] = []
    server = EmbeddedRedis()
    with pytest.raises(KeyboardInterrupt), server:
        pids.append(server.pid)
        raise KeyboardInterrupt
    assert pids[0] is not None and _process_gone(pids[0])
    assert not server.is_running()


def test_external_urls_are_passed_through_without_starting_anything() -> None:
    settings = Settings(kafka_url="kafka://broker.example:9092", redis_url="redis://cache:6379/0")
    with embedded_services(settings) as urls:
        assert urls.started == ()
        assert urls.kafka_url == "kafka://broker.example:9092"
        assert urls.kafka_bootstrap == "broker.example:9092"
        assert urls.redis_url == "redis://cache:6379/0"
        assert urls.redis_unix_url is None
        assert urls.pids == {}


@pytest.mark.integration
def test_failed_startup_reports_the_server_log() -> None:
    # redis-server exits at once on an unknown option; the error must carry its log.
    server = EmbeddedRedis(startup_timeout=5)
    server._argv = lambda: [server.binary, "--no-such-option", "1"]  # type: ignore[method-assign]
    with pytest.raises(ServiceStartError, match="no-such-option"):
        server.start()
    assert not server.is_running()
    assert server.log_path.exists(), "a failed start keeps its log for diagnosis"
    server.stop()
    assert not server.workdir.exists()


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_killed_parent_does_not_leave_orphan_servers() -> None:
    program = (
        "import sys\n"
        "from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis\n"
        "b, r = EmbeddedBroker().start(), EmbeddedRedis().start()\n"
        "print(b.pid, r.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", program],
        cwd=Path(__file__).resolve().parents[3],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(pids) == 2 and not any(_process_gone(pid, timeout=0.1) for pid in pids)
    parent.kill()  # SIGKILL: no atexit, no finally, only the kernel's PDEATHSIG
    parent.wait()
    assert all(_process_gone(pid) for pid in pids)
