"""Faust (faust-streaming) runs on the embedded Tansu broker: forward, split, exactly once.

The module is also the worker program: ``python -m tests.stream.worker.test_faust_on_tansu ...``
starts a minimal forwarding app in its own process, the way ``fraudstream worker`` will.
A subprocess rather than an in-process app because ``faust.Worker`` owns its event loop,
installs signal handlers (main thread only) and closes the loop on exit; a process is also
what a second group member really is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fraudstream.stream.tools.services import EmbeddedBroker

REPO_ROOT = Path(__file__).resolve().parents[3]
PARTITIONS = 4

#: Faust settings that make a worker quick and reliable on Tansu (docs/notes-faust-on-tansu.md).
FAUST_ON_TANSU: dict[str, Any] = {
    "topic_partitions": PARTITIONS,  # for topics Faust declares itself (e.g. the assignor's)
    "topic_replication_factor": 1,
    "web_enabled": False,  # else every worker wants port 6066
    "consumer_auto_offset_reset": "earliest",  # records produced before the join are read
    "broker_max_poll_records": 500,
    "broker_commit_interval": 0.5,
    # Tansu holds each JoinGroup for about half the session timeout (1 s at least), so the
    # session timeout *is* the join/rebalance latency: 2 s -> ~1 s joins. Heartbeats must
    # be well inside it so a member sees a rebalance before the others' joins return.
    "broker_session_timeout": 2.0,
    "broker_heartbeat_interval": 0.3,
    "broker_rebalance_timeout": 10.0,
}


# --------------------------------------------------------------------------------------------
# The worker program (runs in the child process)
# --------------------------------------------------------------------------------------------
def build_forwarder_app(
    broker_url: str, app_id: str, source: str, sink: str, worker_name: str, status_path: Path
) -> Any:
    """A Faust app with one agent: JSON from ``source`` to ``sink``, tagged with the worker.

    The settings are the ones found to make Faust quick and reliable on Tansu; see
    docs/notes-faust-on-tansu.md.
    """
    import faust

    app = faust.App(
        app_id,
        broker=broker_url,
        store="memory://",
        datadir=str(status_path.parent / f"{worker_name}-data"),
        **FAUST_ON_TANSU,
    )
    source_topic = app.topic(source, key_type=bytes, value_serializer="json")
    sink_topic = app.topic(sink, key_type=bytes, value_serializer="json")

    @app.agent(source_topic)
    async def forward(stream: Any) -> None:
        async for event in stream.events():
            value = dict(event.value)
            value["worker"] = worker_name
            value["partition"] = event.message.partition
            await sink_topic.send(key=event.key, value=value)

    @app.on_rebalance_complete.connect
    async def report_assignment(sender: Any, **kwargs: Any) -> None:
        # Written atomically so the test never reads half a file.
        partitions = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == source)
        tmp = status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"partitions": partitions, "time": time.time()}))
        tmp.replace(status_path)

    return app


def _worker_main(argv: list[str]) -> None:
    import faust

    parser = argparse.ArgumentParser(description="minimal Faust forwarder for tests")
    for name in ("broker_url", "app_id", "source", "sink", "worker_name", "status_path"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    app = build_forwarder_app(
        args.broker_url, args.app_id, args.source, args.sink, args.worker_name,
        Path(args.status_path),
    )  # fmt: skip
    faust.Worker(app, loglevel="info", redirect_stdouts=False).execute_from_commandline()


# --------------------------------------------------------------------------------------------
# Test side
# --------------------------------------------------------------------------------------------
@dataclass
class ForwarderProcess:
    name: str
    proc: subprocess.Popen[bytes]
    status_path: Path
    log_path: Path

    def assignment(self) -> list[int] | None:
        try:
            return list(json.loads(self.status_path.read_text())["partitions"])
        except (OSError, ValueError, KeyError):
            return None

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return "<no log>"

    def stop(self, timeout: float = 20.0) -> float:
        """SIGTERM and wait; returns the seconds shutdown took (SIGKILL after ``timeout``)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - started


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; return the seconds it took, or fail naming ``what``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def forwarders(tmp_path: Path) -> Iterator[Callable[..., ForwarderProcess]]:
    """Factory starting forwarder worker processes; all are stopped at teardown."""
    started: list[ForwarderProcess] = []

    def start(broker_url: str, app_id: str, source: str, sink: str) -> ForwarderProcess:
        name = f"w{len(started) + 1}"
        status_path = tmp_path / f"{name}.status.json"
        log_path = tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.stream.worker.test_faust_on_tansu",
                 broker_url, app_id, source, sink, name, str(status_path)],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        worker = ForwarderProcess(name, proc, status_path, log_path)
        started.append(worker)
        return worker

    yield start
    # SIGTERM all first: a member leaving makes the others rejoin, and a worker shutting
    # down in the middle of that join waits for it (one more join delay each).
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
    for worker in started:
        worker.stop()


def produce_transactions(
    bootstrap: str, topic: str, count: int, per_second: float | None = None
) -> set[str]:
    """Send ``count`` JSON records keyed by card id, optionally paced; return their ids."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    ids = set()
    started = time.monotonic()
    for i in range(count):
        if per_second and i % 100 == 0:
            time.sleep(max(0.0, started + i / per_second - time.monotonic()))
        txn_id = f"t{i:05d}"
        ids.add(txn_id)
        value = {"txn_id": txn_id, "card_id": f"c{i % 97}", "amount": 1.0 + i}
        producer.send(topic, key=f"c{i % 97}".encode(), value=json.dumps(value).encode())
    producer.flush(timeout=30)
    producer.close()
    return ids


def collect_output(bootstrap: str, topic: str, expected: int, timeout: float) -> list[dict]:
    """Read ``topic`` from the start until ``expected`` ids arrived or ``timeout`` passed.

    Then keeps reading briefly so a duplicate arriving just after the last record is seen.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=200,
    )
    records: list[dict] = []
    deadline = time.monotonic() + timeout
    grace_until: float | None = None
    try:
        while time.monotonic() < (grace_until or deadline):
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(json.loads(r.value) for r in batch)
            # Distinct ids: duplicates from a rebalance must not end the wait for the rest.
            if grace_until is None and len({r["txn_id"] for r in records}) >= expected:
                grace_until = time.monotonic() + 1.0
    finally:
        consumer.close()
    return records


def assert_exactly_once(records: list[dict], ids: set[str]) -> None:
    counts = Counter(r["txn_id"] for r in records)
    missing = ids - set(counts)
    duplicated = {k: n for k, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} records never arrived, e.g. {sorted(missing)[:5]}"
    assert not duplicated, f"{len(duplicated)} records arrived twice, e.g. {list(duplicated)[:5]}"
    assert set(counts) == ids


@pytest.fixture
def group_topics(broker: EmbeddedBroker) -> tuple[str, str, str]:
    """A fresh (app id, source topic, sink topic), topics created with 4 partitions.

    The broker is shared by the session, so every test gets its own consumer group.
    """
    app_id = f"fs-{uuid.uuid4().hex[:8]}"
    source, sink = f"{app_id}-in", f"{app_id}-out"
    broker.create_topics([source, sink], PARTITIONS)
    return app_id, source, sink


def wait_for_split(workers: list[ForwarderProcess], timeout: float) -> float:
    """Wait until ``workers`` own disjoint, non-empty partition sets covering the topic.

    Fails at once, with the worker's log, if a worker process dies meanwhile.
    """

    def split_complete() -> bool:
        for worker in workers:
            if worker.proc.poll() is not None:
                pytest.fail(f"worker {worker.name} exited:\n{worker.log_tail()}")
        owned = [worker.assignment() or [] for worker in workers]
        return all(owned) and sorted(sum(owned, [])) == list(range(PARTITIONS))

    return wait_until(split_complete, timeout, f"{len(workers)} worker(s) to own the partitions")


@pytest.mark.integration
def test_faust_agent_forwards_every_record_exactly_once(
    broker: EmbeddedBroker,
    forwarders: Callable[..., ForwarderProcess],
    group_topics: tuple[str, str, str],
) -> None:
    started = time.monotonic()
    worker = forwarders(broker.url, *group_topics)
    startup = wait_for_split([worker], 60)

    ids = produce_transactions(broker.bootstrap, group_topics[1], 2000)
    records = collect_output(broker.bootstrap, group_topics[2], len(ids), timeout=60)
    elapsed = time.monotonic() - started
    assert_exactly_once(records, ids)
    assert {r["worker"] for r in records} == {"w1"}
    shutdown = worker.stop()
    print(f"startup {startup:.2f} s, total {elapsed:.2f} s, shutdown {shutdown:.2f} s")
    assert worker.proc.returncode == 0, worker.log_tail()


@pytest.mark.integration
def test_two_faust_workers_split_partitions_and_process_each_record_once(
    broker: EmbeddedBroker,
    forwarders: Callable[..., ForwarderProcess],
    group_topics: tuple[str, str, str],
) -> None:
    first = forwarders(broker.url, *group_topics)
    wait_for_split([first], 60)
    second = forwarders(broker.url, *group_topics)
    rebalance = wait_for_split([first, second], 90)

    ids = produce_transactions(broker.bootstrap, group_topics[1], 2000)
    records = collect_output(broker.bootstrap, group_topics[2], len(ids), timeout=60)
    assert_exactly_once(records, ids)
    partitions = {w: {r["partition"] for r in records if r["worker"] == w} for w in ("w1", "w2")}
    assert partitions["w1"] and partitions["w2"], "both workers processed records"
    assert partitions["w1"].isdisjoint(partitions["w2"])
    assert sorted(partitions["w1"] | partitions["w2"]) == list(range(PARTITIONS))
    print(f"second worker joined in {rebalance:.2f} s; partitions {partitions}")


@pytest.mark.integration
def test_worker_joining_mid_stream_loses_nothing(
    broker: EmbeddedBroker,
    forwarders: Callable[..., ForwarderProcess],
    group_topics: tuple[str, str, str],
) -> None:
    """At-least-once across a rebalance: nothing is lost; duplicates may occur, and are shown.

    Seen on Tansu: 0 to ~300 duplicates of 6000 (records processed but not yet committed
    by the worker that lost the partition), which is why feature updates are idempotent.
    """
    first = forwarders(broker.url, *group_topics)
    wait_for_split([first], 60)
    second = forwarders(broker.url, *group_topics)
    # Paced over ~6 s so the second worker's join and the rebalance happen mid-stream.
    ids = produce_transactions(broker.bootstrap, group_topics[1], 6000, per_second=1000)
    records = collect_output(broker.bootstrap, group_topics[2], len(ids), timeout=60)

    counts = Counter(r["txn_id"] for r in records)
    assert ids <= set(counts), f"lost {len(ids - set(counts))} records across the rebalance"
    duplicates = sum(n - 1 for n in counts.values())
    by_worker = dict(Counter(r["worker"] for r in records))
    print(f"mid-stream join: {len(records)} outputs for {len(ids)} inputs, "
          f"{duplicates} duplicates, by worker {by_worker}")  # fmt: skip
    assert second.proc.poll() is None, second.log_tail()


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
