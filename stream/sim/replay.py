"""Replay transactions onto Kafka at a chosen pace, with their labels delayed alike.

The replay stands in for a card network: transactions go to the transactions topic keyed by
`card_id` (so one card's records stay in order on one partition), in `event_time` order,
either at a fixed rate or with the original inter-arrival times compressed by a speed-up.
Labels travel on their own topic with their chargeback delays compressed by the same factor,
so the online recalibration sees truth arrive as late, relatively, as it would in life.

Pacing is against a monotonic clock in slices of `SLICE_S`: every slice sends whatever is
due, so a fast rate costs one sleep per slice rather than one per record. Reading a stream
file is `fraudstream.stream.sim.streamfile.read_stream_file`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fraudstream.features.transaction import Label, Transaction
from fraudstream.stream.transport import PLAINTEXT, KafkaSecurity, kafka_client_options

#: Pacing granularity: records due within one slice are sent together.
SLICE_S = 0.005
#: Longest sleep between two checks, so progress is reported even across long gaps.
MAX_SLEEP_S = 0.1
#: Shortest interval between two `on_progress` calls.
PROGRESS_INTERVAL_S = 0.1
DEFAULT_RATE = 1000.0
#: Labels are days late, so they gather for longer than transactions before a send: the
#: embedded broker lists every stored batch of a partition on each fetch that finds data,
#: and a tenth as many label batches cut its CPU in `make demo` by about a quarter and
#: the p99 by about a quarter (three alternated runs each, bench/RESULTS.md, issue 9).
LABEL_LINGER_MS = 200
#: How long the transactions' producer lets records gather: 10 ms, not the load test's 20
#: (`PRODUCER_LINGER_MS`). A record waits for the linger before it is even sent, and the
#: demo's p50 sat on its 25 ms budget with 20 ms (22.3-27.1 ms in six runs); with 10 ms
#: it was 20.0 and 18.7 ms, p99 46.5 and 40.0, for ~1.6 x the broker's CPU and ~1.2 x the
#: worker's per 1,000 (smaller batches; bench/RESULTS.md, issue 9, eighteenth session).
#: The load test keeps 20 ms: its capacity figures and the §1 comparison are measured so.
REPLAY_LINGER_MS = 10
MALFORMED_KEY = b"malformed"

RecordKind = Literal["txn", "malformed", "label"]
#: Order among records due at the same instant: a label never precedes its transaction.
_KIND_ORDER: dict[str, int] = {"txn": 0, "malformed": 1, "label": 2}


class ReplayError(RuntimeError):
    """The broker refused some records; the message gives how many and the first error."""


@dataclass(frozen=True)
class ScheduledRecord:
    """One record to send `due_s` seconds after the replay starts; `index` into its list."""

    due_s: float
    kind: RecordKind
    index: int


@dataclass(frozen=True)
class ReplayProgress:
    produced: int
    labels_produced: int
    elapsed_s: float


@dataclass(frozen=True)
class ReplayReport:
    """What was sent; `produce_times` maps txn_id to wall-clock `time.time()` at send."""

    produced: int
    labels_produced: int
    malformed_produced: int
    seconds: float
    achieved_tps: float
    produce_times: dict[str, float] = field(repr=False)


def plan_schedule(
    transactions: Sequence[Transaction],
    labels: Sequence[Label],
    *,
    rate: float | None = None,
    speedup: float | None = None,
    extra_count: int = 0,
) -> list[ScheduledRecord]:
    """The merged send schedule, in order; `transactions` must be sorted by `event_time`.

    With `rate`, transaction i is due at i / rate and the time scale is the original span
    divided by the replay's duration N / rate; with `speedup`, transactions are due at
    (event_time - first) / speedup. A label is due at (label_time - first) / scale, but
    never before its own transaction and never after the last one: labels that would fall
    later are sent right after the last transaction instead of being dropped, so every
    replayed transaction's label reaches the topic. `extra_count` malformed records are
    spread evenly among the transactions.
    """
    rate, speedup = _pace(rate, speedup)
    if not transactions:
        return [ScheduledRecord(0.0, "malformed", j) for j in range(extra_count)]
    first = transactions[0].event_time
    if rate is not None:
        txn_due = [i / rate for i in range(len(transactions))]
        span = transactions[-1].event_time - first
        scale = span / (len(transactions) / rate) if span > 0 else 0.0
    else:
        assert speedup is not None
        scale = speedup
        txn_due = [(t.event_time - first) / speedup for t in transactions]
    last_due = txn_due[-1]
    due_of_txn = {t.txn_id: due for t, due in zip(transactions, txn_due, strict=True)}
    schedule = [ScheduledRecord(due, "txn", i) for i, due in enumerate(txn_due)]
    for i, label in enumerate(labels):
        own = due_of_txn.get(label.txn_id, 0.0)
        # A zero scale (all transactions at one instant) sends every label at the end.
        due = (label.label_time - first) / scale if scale > 0 else last_due
        schedule.append(ScheduledRecord(min(max(due, own), last_due), "label", i))
    for j in range(extra_count):
        after = min(len(transactions) - 1, (j + 1) * len(transactions) // (extra_count + 1))
        schedule.append(ScheduledRecord(txn_due[after], "malformed", j))
    schedule.sort(key=lambda r: (r.due_s, _KIND_ORDER[r.kind], r.index))
    return schedule


def _pace(rate: float | None, speedup: float | None) -> tuple[float | None, float | None]:
    if rate is not None and speedup is not None:
        raise ValueError("give either rate or speedup, not both")
    if rate is None and speedup is None:
        rate = DEFAULT_RATE
    for name, value in (("rate", rate), ("speedup", speedup)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    return rate, speedup


def _compact_json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def _messages(
    schedule: Sequence[ScheduledRecord], transactions: Sequence[Transaction],
    labels: Sequence[Label], extra_records: Sequence[bytes], topic: str, labels_topic: str,
) -> list[tuple[str, bytes, bytes]]:  # fmt: skip
    """(topic, key, value) of each scheduled record, encoded before the clock starts."""
    messages = []
    for record in schedule:
        if record.kind == "txn":
            txn = transactions[record.index]
            messages.append((topic, txn.card_id.encode(), _compact_json(txn.to_dict())))
        elif record.kind == "label":
            label = labels[record.index]
            messages.append((labels_topic, label.txn_id.encode(), _compact_json(label.to_dict())))
        else:
            messages.append((topic, MALFORMED_KEY, extra_records[record.index]))
    return messages


def replay(
    bootstrap: str,
    transactions: Sequence[Transaction],
    labels: Sequence[Label],
    *,
    topic: str,
    labels_topic: str,
    rate: float | None = None,
    speedup: float | None = None,
    limit: int | None = None,
    on_progress: Callable[[ReplayProgress], None] | None = None,
    extra_records: Sequence[bytes] = (),
    security: KafkaSecurity = PLAINTEXT,
) -> ReplayReport:
    """Produce `transactions` (the first `limit` in event-time order) and their labels.

    Give one of `rate` (transactions per second; default 1000) or `speedup` (factor by
    which original inter-arrival times shrink). Labels of transactions not replayed are
    skipped; labels due after the last transaction are sent right after it (see
    `plan_schedule`). `extra_records` are sent verbatim with key b"malformed", spread evenly
    through the stream, to exercise the dead-letter path. `on_progress` is called at most
    every `PROGRESS_INTERVAL_S` and once at the end. `security` is how to reach the broker.
    Blocks until the producer is flushed; raises `ReplayError` if the broker refused any
    record.
    """
    ordered = sorted(transactions, key=lambda t: t.event_time)
    if limit is not None:
        ordered = ordered[: max(0, limit)]
    replayed = {t.txn_id for t in ordered}
    own_labels = [label for label in labels if label.txn_id in replayed]
    schedule = plan_schedule(
        ordered, own_labels, rate=rate, speedup=speedup, extra_count=len(extra_records)
    )

    messages = _messages(schedule, ordered, own_labels, extra_records, topic, labels_topic)
    sender = _PacedSender(schedule, messages, [t.txn_id for t in ordered], on_progress)
    failures = asyncio.run(sender.run(bootstrap, security))
    counts, seconds = sender.counts, sender.seconds
    if on_progress is not None:
        on_progress(ReplayProgress(counts["txn"], counts["label"], seconds))
    if failures:
        raise ReplayError(
            f"{len(failures)} record(s) were not accepted by {bootstrap}; first: {failures[0]!r}"
        )
    return ReplayReport(
        produced=counts["txn"],
        labels_produced=counts["label"],
        malformed_produced=counts["malformed"],
        seconds=seconds,
        achieved_tps=counts["txn"] / seconds if seconds > 0 else 0.0,
        produce_times=sender.produce_times,
    )


class _PacedSender:
    """Sends `messages` when their `schedule` entries fall due, on one asyncio loop.

    aiokafka rather than kafka-python: less than half the CPU per record on the embedded
    broker, and the demo's producer shares the cores with the workers it feeds.
    """

    def __init__(
        self,
        schedule: Sequence[ScheduledRecord],
        messages: Sequence[tuple[str, bytes, bytes]],
        txn_ids: Sequence[str],
        on_progress: Callable[[ReplayProgress], None] | None,
    ) -> None:
        self.schedule, self.messages, self.txn_ids = schedule, messages, txn_ids
        self.on_progress = on_progress
        self.counts = {"txn": 0, "label": 0, "malformed": 0}
        self.produce_times: dict[str, float] = {}
        self.seconds = 0.0

    async def run(self, bootstrap: str, security: KafkaSecurity) -> list[BaseException]:
        """Send everything, flush, close; the delivery errors (empty when all landed)."""
        from aiokafka import AIOKafkaProducer

        producers = {
            kind: AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                linger_ms=linger_ms,
                acks=1,
                **kafka_client_options(security),
            )
            for kind, linger_ms in (("txn", REPLAY_LINGER_MS), ("label", LABEL_LINGER_MS))
        }
        started = time.monotonic()
        try:
            for producer in producers.values():
                await producer.start()
            started = time.monotonic()
            deliveries = await self._send_all(producers, started)
            for producer in producers.values():
                await producer.flush()
        finally:
            for producer in producers.values():
                await producer.stop()
            self.seconds = time.monotonic() - started
        return [error for f in deliveries if (error := f.exception()) is not None]

    async def _send_all(
        self, producers: dict[str, Any], started: float
    ) -> list[asyncio.Future[Any]]:
        """Send each record when due: labels through their own producer, the rest through
        the transactions' one."""
        deliveries: list[asyncio.Future[Any]] = []
        schedule, last_progress, position = self.schedule, started, 0
        while position < len(schedule):
            elapsed = time.monotonic() - started
            while position < len(schedule) and schedule[position].due_s <= elapsed:
                record = schedule[position]
                if record.kind == "txn":
                    self.produce_times[self.txn_ids[record.index]] = time.time()
                target, key, value = self.messages[position]
                producer = producers["label" if record.kind == "label" else "txn"]
                deliveries.append(await producer.send(target, value=value, key=key))
                self.counts[record.kind] += 1
                position += 1
            now = time.monotonic()
            if now - last_progress >= PROGRESS_INTERVAL_S:
                last_progress = now
                self._report(now - started)
            if position < len(schedule):
                wait = schedule[position].due_s - (now - started)
                if wait > 0:
                    await asyncio.sleep(min(max(wait, SLICE_S), MAX_SLEEP_S))
        return deliveries

    def _report(self, elapsed_s: float) -> None:
        if self.on_progress is not None:
            self.on_progress(ReplayProgress(self.counts["txn"], self.counts["label"], elapsed_s))
