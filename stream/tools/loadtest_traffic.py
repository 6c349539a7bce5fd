"""The traffic side of the load test: what is sent, how it is paced, when decisions return.

Kept apart from the orchestration in loadtest.py: the producer runs as its own
process (`PRODUCER_PROGRAM`), and the decision clock and stage scrapes are what a step
measures.

Both Kafka clients are aiokafka: they share two cores with the worker they measure, and
on the embedded Tansu broker aiokafka (C record batches) costs a third of kafka-python's
CPU per record to produce and a quarter to read, its 10 ms fetch polling included.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fraudstream.stream.settings import PRODUCER_LINGER_MS, Settings
from fraudstream.stream.tools.topic_reader import TopicReader
from fraudstream.stream.transport import PLAINTEXT, KafkaSecurity, kafka_client_options
from fraudstream.stream.worker.metrics import quantiles_from_exposition

#: Pacing granularity of the producer: records due within one slice are sent together.
SLICE_S = 0.005
#: A generated stream longer than this is cycled (fresh txn_ids, shifted event times).
CYCLE_TRANSACTIONS = 200_000
#: How long the decision clock may take to connect and find the end of the topic.
CLOCK_START_TIMEOUT_S = 30.0

PRODUCER_PROGRAM = (
    "import sys; from fraudstream.stream.tools.loadtest_traffic import produce_paced; "
    "produce_paced(*sys.argv[1:5], float(sys.argv[5]))"
)


def build_step_records(
    rates: Sequence[float], duration_s: float, seed: int, days: float | None = None
) -> list[list[tuple[str, bytes, bytes]]]:
    """(txn_id, card key, JSON value) per step: one generated stream sliced across steps.

    Every txn_id is unique in the run, so a decision belongs to exactly one step; a stream
    longer than `CYCLE_TRANSACTIONS` repeats with `-cN` ids and event times shifted by its
    span, so per-card windows still see time move forward. `days`: the event-time span of
    the generated stream (None: the generator's default).
    """
    from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream

    counts = [max(1, round(rate * duration_s)) for rate in rates]
    total = sum(counts)
    config = GeneratorConfig(transactions=max(100, min(total, CYCLE_TRANSACTIONS)), seed=seed)
    if days is not None:
        config = replace(config, days=days)
    base = generate_stream(config).transactions
    span = base[-1].event_time - base[0].event_time + 1.0
    flat = []
    for j in range(total):
        cycle, txn = divmod(j, len(base))[0], base[j % len(base)]
        if cycle:
            txn = replace(
                txn, txn_id=f"{txn.txn_id}-c{cycle}", event_time=txn.event_time + cycle * span
            )
        value = json.dumps(txn.to_dict(), separators=(",", ":")).encode()
        flat.append((txn.txn_id, txn.card_id.encode(), value))
    steps, start = [], 0
    for count in counts:
        steps.append(flat[start : start + count])
        start += count
    return steps


def produce_paced(
    bootstrap: str, topic: str, records_path: str, sent_path: str, rate: float
) -> None:
    """Producer process: send every line of `records_path` at `rate`/s, log send times.

    Record i is due i/rate s after the start (monotonic clock, `SLICE_S` slices); its
    wall-clock send time goes to `sent_path` with the elapsed seconds and any failures.
    The process inherits the load tester's environment, so the same `FRAUDSTREAM_KAFKA_*`
    security settings (never a password on the command line).
    """
    from fraudstream.stream.tools.cpu_usage import own_process_cpu_seconds

    security = Settings.from_env().kafka_security
    pairs = [line.split(b"\t", 1) for line in Path(records_path).read_bytes().splitlines()]
    report = asyncio.run(produce_at_rate(bootstrap, topic, pairs, rate, security=security))
    report["cpu_s"] = own_process_cpu_seconds()
    Path(sent_path).write_text(json.dumps(report))


async def produce_at_rate(
    bootstrap: str, topic: str, pairs: Sequence[Sequence[bytes | None]], rate: float, *,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, Any]:  # fmt: skip
    """The paced send loop of `produce_paced`; its report without the CPU figure.

    The report's `sent` and `acked` are per record: when it was handed to the producer,
    and when the broker acknowledged it (None: it failed), both wall clock.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=PRODUCER_LINGER_MS, acks=1,
        **kafka_client_options(security),
    )  # fmt: skip
    await producer.start()
    try:
        await producer.partitions_for(topic)  # metadata before the clock starts
        deliveries: list[asyncio.Future[Any]] = []
        sent = [0.0] * len(pairs)
        acked: list[float | None] = [None] * len(pairs)
        started, i = time.monotonic(), 0
        while i < len(pairs):
            due = min(len(pairs), int((time.monotonic() - started) * rate) + 1)
            while i < due:
                sent[i] = time.time()
                key, value = pairs[i]
                deliveries.append(await producer.send(topic, value=value, key=key))
                deliveries[-1].add_done_callback(partial(_stamp_ack, acked, i))
                i += 1
            if i < len(pairs):
                await asyncio.sleep(max(SLICE_S, i / rate - (time.monotonic() - started)))
        await producer.flush()
        seconds = time.monotonic() - started
    finally:
        await producer.stop()
    failures = [error for f in deliveries if (error := f.exception()) is not None]
    return {
        "seconds": seconds,
        "sent": sent,
        "acked": acked,
        "failures": len(failures),
        "first_failure": repr(failures[0]) if failures else None,
    }


def _stamp_ack(acked: list[float | None], index: int, delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled() and delivery.exception() is None:
        acked[index] = time.time()


_ID_PREFIXES = (b'{"txn_id":"', b'{"txn_id": "')


def decision_txn_id(value: bytes) -> str | None:
    """The top-level "txn_id" string of a decision record (None without one).

    The clock reads every decision, so the common case is a bytes scan: a record that
    opens with the key (orjson writes it first), holds no escape in the id, and names no
    other "txn_id" anywhere is answered without parsing. Anything else is parsed in full,
    so for any JSON object the answer is what `json.loads` would give.
    """
    for prefix in _ID_PREFIXES:
        if value.startswith(prefix):
            end = value.find(b'"', len(prefix))
            if (
                end > 0
                and value.find(b"\\", len(prefix), end) < 0
                and value.find(b'"txn_id"', end) < 0
            ):
                return value[len(prefix) : end].decode()
            break
    document = json.loads(value)
    txn_id = document.get("txn_id") if isinstance(document, dict) else None
    return txn_id if isinstance(txn_id, str) else None


class DecisionClock:
    """First time (wall clock) each txn_id's decision was read from the decisions topic.

    A `TopicReader` thread reads from the topic's end at construction and stamps each
    record as its fetch returns. `seen` grows from that thread: look up or count it, do not
    iterate it while reading.
    """

    def __init__(
        self, bootstrap: str, topic: str, partitions: int, *, security: KafkaSecurity = PLAINTEXT
    ) -> None:
        self.seen: dict[str, float] = {}
        self._reader = TopicReader(
            bootstrap, [topic], partitions, self._stamp, from_end=True, security=security
        )
        self._reader.start()
        self._reader.wait_ready(CLOCK_START_TIMEOUT_S)

    def _stamp(self, topic: str, value: bytes, read_at: float) -> None:
        if (txn_id := decision_txn_id(value)) is not None:
            self.seen.setdefault(txn_id, read_at)

    def poll(self, timeout_s: float) -> None:
        """Wait `timeout_s` while the thread reads; raise if it has stopped on an error."""
        self._reader.raise_error()
        time.sleep(timeout_s)
        self._reader.raise_error()

    def close(self) -> None:
        self._reader.stop()


StageTotals = dict[str, tuple[float, float]]
#: The pipeline's count of decisions made on the stand-in path (see stream/worker/pipeline.py).
STAND_IN_COUNTER = "fraudstream_stand_in_decisions_total"


@dataclass(frozen=True)
class WorkerScrape:
    """One read of every worker's /metrics: what a step compares before and after."""

    stages: StageTotals
    stand_ins: float


def read_metrics(metrics_urls: Sequence[str]) -> str:
    """The workers' /metrics pages, read once each, as one exposition."""
    pages = []
    for url in metrics_urls:
        with urllib.request.urlopen(url, timeout=5) as response:
            pages.append(response.read().decode())
    return "\n".join(pages)


def counter_total(exposition: str, sample_name: str) -> float:
    """A counter's samples (`..._total`) summed over labels and workers."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == sample_name
    )


def scrape_workers(metrics_urls: Sequence[str]) -> WorkerScrape:
    """Stage totals and stand-in count, summed over the workers' /metrics (read once each)."""
    exposition = read_metrics(metrics_urls)
    per_stage = quantiles_from_exposition(exposition, "fraudstream_stage_latency_seconds", "stage")
    stages = {
        stage: (figures["count"], figures["count"] * figures["mean"])
        for stage, figures in per_stage.items()
        if figures["count"]
    }
    return WorkerScrape(stages, counter_total(exposition, STAND_IN_COUNTER))


def stage_means_ms(before: StageTotals, after: StageTotals) -> dict[str, float]:
    """Mean ms per stage for the observations made between two scrapes."""
    means = {}
    for stage, (count, total) in after.items():
        count_before, total_before = before.get(stage, (0.0, 0.0))
        if count > count_before:
            means[stage] = (total - total_before) / (count - count_before)
    return means
