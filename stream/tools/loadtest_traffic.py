"""The traffic side of the load test: what is sent, how it is paced, when decisions return.

Kept apart from the orchestration in loadtest.py: the producer runs as its own
process (`PRODUCER_PROGRAM`), and the decision clock and stage scrapes are what a step
measures.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from fraudstream.stream.worker.metrics import quantiles_from_exposition

#: Pacing granularity of the producer: records due within one slice are sent together.
SLICE_S = 0.005
#: A generated stream longer than this is cycled (fresh txn_ids, shifted event times).
CYCLE_TRANSACTIONS = 200_000

PRODUCER_PROGRAM = (
    "import sys; from fraudstream.stream.tools.loadtest_traffic import produce_paced; "
    "produce_paced(*sys.argv[1:5], float(sys.argv[5]))"
)


def build_step_records(
    rates: Sequence[float], duration_s: float, seed: int
) -> list[list[tuple[str, bytes, bytes]]]:
    """(txn_id, card key, JSON value) per step: one generated stream sliced across steps.

    Every txn_id is unique in the run, so a decision belongs to exactly one step; a stream
    longer than `CYCLE_TRANSACTIONS` repeats with `-cN` ids and event times shifted by its
    span, so per-card windows still see time move forward.
    """
    from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream

    counts = [max(1, round(rate * duration_s)) for rate in rates]
    total = sum(counts)
    config = GeneratorConfig(transactions=max(100, min(total, CYCLE_TRANSACTIONS)), seed=seed)
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
    """
    from kafka import KafkaProducer

    from fraudstream.stream.tools.cpu_usage import own_process_cpu_seconds

    pairs = [line.split(b"\t", 1) for line in Path(records_path).read_bytes().splitlines()]
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    producer.partitions_for(topic)  # metadata before the clock starts
    failures: list[BaseException] = []
    sent = [0.0] * len(pairs)
    started, i = time.monotonic(), 0
    while i < len(pairs):
        due = min(len(pairs), int((time.monotonic() - started) * rate) + 1)
        while i < due:
            sent[i] = time.time()
            key, value = pairs[i]
            producer.send(topic, key=key, value=value).add_errback(failures.append)
            i += 1
        if i < len(pairs):
            time.sleep(max(SLICE_S, i / rate - (time.monotonic() - started)))
    producer.flush()
    seconds = time.monotonic() - started
    producer.close()
    report = {
        "seconds": seconds,
        "sent": sent,
        "failures": len(failures),
        "first_failure": repr(failures[0]) if failures else None,
        "cpu_s": own_process_cpu_seconds(),
    }
    Path(sent_path).write_text(json.dumps(report))


class DecisionClock:
    """First time (wall clock) each txn_id's decision was read from the decisions topic."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=10
        )
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumer.assign(assigned)
        self.consumer.seek_to_end()
        for tp in assigned:
            self.consumer.position(tp)  # resolve "end" now, before anything is produced
        self.seen: dict[str, float] = {}

    def poll(self, timeout_s: float) -> None:
        for records in self.consumer.poll(timeout_ms=int(timeout_s * 1000)).values():
            now = time.time()
            for record in records:
                self.seen.setdefault(json.loads(record.value).get("txn_id"), now)

    def close(self) -> None:
        self.consumer.close()


StageTotals = dict[str, tuple[float, float]]


def scrape_stage_totals(metrics_urls: Sequence[str]) -> StageTotals:
    """(observations, total ms) per pipeline stage, summed over the workers' /metrics."""
    if not metrics_urls:
        return {}
    pages = []
    for url in metrics_urls:
        with urllib.request.urlopen(url, timeout=5) as response:
            pages.append(response.read().decode())
    per_stage = quantiles_from_exposition(
        "\n".join(pages), "fraudstream_stage_latency_seconds", "stage"
    )
    return {
        stage: (figures["count"], figures["count"] * figures["mean"])
        for stage, figures in per_stage.items()
        if figures["count"]
    }


def stage_means_ms(before: StageTotals, after: StageTotals) -> dict[str, float]:
    """Mean ms per stage for the observations made between two scrapes."""
    means = {}
    for stage, (count, total) in after.items():
        count_before, total_before = before.get(stage, (0.0, 0.0))
        if count > count_before:
            means[stage] = (total - total_before) / (count - count_before)
    return means
