"""Baseline workers that show what the stream plumbing alone costs, for the load test.

The pipeline's throughput only means something next to the ceiling set by Faust itself
(DESIGN.md §10: ≈ 5,300–6,000 events/s consume-only, ≈ 2,500–3,000 with one send per
event). Both baselines run with exactly the real worker's stream settings (the one Faust app
factory in stream/worker/faust_app.py), so the ratio isolates the pipeline's cost:

* ``noop`` takes micro-batches from the transactions topic and does nothing with them;
* ``passthrough`` forwards each record to the decisions topic as a minimal decision
  (``txn_id`` and ``latency_ms.end_to_end`` from the message timestamp), so the load tester
  measures it exactly as it measures the pipeline.

Each process reports its partitions and a running count of processed records in a status
file (atomically replaced every `STATUS_INTERVAL_S`): the load tester needs the count to
measure ``noop``, which produces nothing. :func:`raw_aiokafka_consume_rate` gives the
bare-client ceiling (≈ 158,000/s in DESIGN.md §10) for reference.

Run as ``python -m fraudstream.stream.tools.baselines NAME --status-file P --datadir D
--session-timeout S``
with the same ``FRAUDSTREAM_*`` environment as a worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.workers import WorkerProcess, start_group
from fraudstream.stream.transport import PLAINTEXT, KafkaSecurity, kafka_client_options
from fraudstream.stream.worker.faust_app import (
    BATCH_MAX,
    ack_all,
    consume_as_the_worker,
    natural_batches,
    new_faust_app,
    owned_partitions,
    raw_topic,
    run_faust_worker,
    write_status,
)

BASELINES = ("noop", "passthrough")
#: How often a baseline rewrites its status file; the load tester waits at least this long.
STATUS_INTERVAL_S = 0.2


def create_baseline_app(
    name: str,
    settings: Settings,
    kafka_url: str,
    *,
    datadir: Path,
    status_file: Path,
    session_timeout_s: float = 6.0,
) -> Any:
    """A Faust app with the real worker's stream settings and a ``noop``/``passthrough`` agent."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    app = new_faust_app(settings, kafka_url, datadir=datadir, session_timeout_s=session_timeout_s)
    transactions = raw_topic(app, settings.topic_transactions)
    decisions = raw_topic(app, settings.topic_decisions)
    state: dict[str, Any] = {"partitions": None, "processed": 0}

    def report() -> None:
        if state["partitions"] is not None:  # `partitions` present means "ready" to the tester
            write_status(status_file, state)

    @app.agent(transactions, name=f"baseline_{name}")
    async def baseline(stream: Any) -> None:
        async for events in natural_batches(stream, BATCH_MAX):
            if name == "passthrough":
                for event in events:
                    await decisions.send(key=event.key, value=_minimal_decision(event), force=True)
            await ack_all(stream, events)
            state["processed"] += len(events)

    @app.timer(STATUS_INTERVAL_S)
    async def report_progress() -> None:
        report()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def report_assignment(sender: Any, **kwargs: Any) -> None:
        state["partitions"] = owned_partitions(app, settings.topic_transactions)
        report()

    return app


def _minimal_decision(event: Any) -> bytes:
    """What the load tester reads from a decision: the txn_id and the worker's own latency."""
    produced_at = event.message.timestamp or time.time()
    try:
        txn_id = json.loads(event.value).get("txn_id")
    except (ValueError, AttributeError):
        txn_id = None  # not a transaction; still forwarded so counts match the input
    end_to_end = round((time.time() - produced_at) * 1000.0, 3)
    return json.dumps(
        {"txn_id": txn_id, "latency_ms": {"end_to_end": end_to_end}}, separators=(",", ":")
    ).encode()


def start_baselines(
    name: str,
    count: int,
    env: dict[str, str],
    run_dir: Path,
    *,
    session_timeout_s: float = 6.0,
    ready_timeout_s: float = 60.0,
) -> list[WorkerProcess]:
    """Start `count` baseline processes in one consumer group; return once all are assigned."""
    return start_group(["fraudstream.stream.tools.baselines", name], name, count, env, run_dir,
                       session_timeout_s=session_timeout_s,
                       ready_timeout_s=ready_timeout_s)  # fmt: skip


def processed_count(processes: Sequence[WorkerProcess]) -> int:
    """Records processed by the whole group, as of each process's last status write."""
    total = 0
    for process in processes:
        # Mid-replace or not written yet: counts as nothing so far.
        with contextlib.suppress(OSError, ValueError):
            total += int(json.loads(process.status_file.read_text()).get("processed", 0))
    return total


def raw_aiokafka_consume_rate(
    bootstrap: str, topic: str, n: int, *, security: KafkaSecurity = PLAINTEXT
) -> float:
    """Records/s for one bare aiokafka consumer reading `n` records from `topic`'s start.

    The ceiling no Faust worker can beat on this broker; the topic is topped up with
    ~300-byte records first if it holds fewer than `n`.
    """
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    options = kafka_client_options(security)
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **options)
    partitions = [TopicPartition(topic, p) for p in probe.partitions_for_topic(topic) or {0}]
    held = sum(probe.end_offsets(partitions).values()) - sum(
        probe.beginning_offsets(partitions).values()
    )
    probe.close()
    if held < n:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=20, batch_size=262144, **options
        )
        filler = b"x" * 300
        for i in range(n - held):
            producer.send(topic, key=str(i % 1000).encode(), value=filler)
        producer.flush()
        producer.close()
    return asyncio.run(_consume_timed(bootstrap, topic, n, options))


async def _consume_timed(bootstrap: str, topic: str, n: int, options: dict[str, Any]) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
        **options,
    )  # fmt: skip
    await consumer.start()
    try:
        consumed, started = 0, time.perf_counter()  # connected in start(): not timed
        while consumed < n:
            batches = await consumer.getmany(timeout_ms=2000, max_records=10_000)
            if not batches:
                break  # fewer than n available: report the rate over what there was
            consumed += sum(len(records) for records in batches.values())
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    return consumed / seconds if seconds > 0 else 0.0


def main(argv: Sequence[str] | None = None) -> int:

    parser = argparse.ArgumentParser(
        prog="python -m fraudstream.stream.tools.baselines", description=__doc__
    )
    parser.add_argument("name", choices=BASELINES)
    parser.add_argument("--status-file", type=Path, required=True)
    parser.add_argument("--datadir", type=Path, default=Path(".fraudstream-baseline"))
    parser.add_argument("--session-timeout", type=float, default=6.0)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if settings.kafka_url is None:
        print("a baseline needs FRAUDSTREAM_KAFKA_URL", file=sys.stderr)
        return 2
    consume_as_the_worker(settings.fetch_max_wait_ms)
    app = create_baseline_app(
        args.name,
        settings,
        settings.kafka_url,
        datadir=args.datadir,
        status_file=args.status_file,
        session_timeout_s=args.session_timeout,
    )
    run_faust_worker(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
