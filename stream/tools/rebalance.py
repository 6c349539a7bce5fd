"""Workers joining and leaving a consumer group under load, and the pause each change cost.

`run_rebalance` is issue 13 §2's scenario against real services: fresh topics of
`RebalanceOptions.partitions` partitions, one worker, transactions produced at a steady
`rate` (the chaos producer, stream/tools/chaos.py's), and on a fixed schedule (`SCHEDULE`,
one step every `spacing_s`) a second and a third worker join, one leaves on SIGTERM and
one is SIGKILLed; production ends one step after the last, then the group drains. The
topics are read back and every record accounted for (stream/tools/ledger.py).

The pause an event caused is measured from the broker's timestamps, from the event's
start until `window_s` after it took effect (a joiner reported its partitions, a stopped
worker exited, a killed one was reaped), against the steady window of `window_s` before
the first event:
- *max lag*: the most records produced but not yet decided nor dead-lettered at any
  instant of the window (sampled every `LAG_STEP_S`): the group's backlog as a client sees
  it, which a committed-offset lag overstates by up to a commit interval;
- *e2e p99*: of the `end_to_end` latency the decisions made in the window carry.

Duplicates (txn_ids decided more than once) are listed with their input partition, the
broker time of each decision, and the last event before the second one. Most come from
the kill (what the dead worker decided after its last commit): a worker giving up
partitions in a rebalance first finishes and commits what it has in flight
(stream/worker/faust_app.py `commit_before_revoke`), but a SIGTERMed worker can still
repeat its batch in flight (bench/RESULTS.md). Each copy has the same windows: the feature
store is idempotent by txn_id.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from fraudstream.features.pseudonyms import IdPseudonyms, new_id_hash_key
from fraudstream.models.signing import SigningKey
from fraudstream.stream.latency import latency_percentiles
from fraudstream.stream.tools.chaos import POLL_S, WORKER_MODULE
from fraudstream.stream.tools.faults import ChaosServices
from fraudstream.stream.tools.ledger import (
    Ledger,
    TopicRecord,
    account,
    committed_offsets,
    group_lag,
    read_topic,
)
from fraudstream.stream.tools.loadtest_traffic import build_step_records, produce_at_rate
from fraudstream.stream.tools.services import create_topics
from fraudstream.stream.tools.workers import (
    REPLAYED_HISTORY,
    WorkerProcess,
    start_group,
    stop_workers,
    worker_env,
)

#: (action, worker) per step: w1 runs from the start; step i happens at i × spacing_s.
SCHEDULE: tuple[tuple[str, str], ...] = (
    ("join", "w2"), ("join", "w3"), ("sigterm", "w1"), ("sigkill", "w2"),
)  # fmt: skip
#: Resolution of the backlog curve a window's max lag is read from.
LAG_STEP_S = 0.25


@dataclass(frozen=True)
class RebalanceOptions:
    """How big a run is: `rate`/s for `(len(SCHEDULE) + 1) × spacing_s` seconds."""

    rate: float = 200.0
    spacing_s: float = 15.0
    window_s: float = 10.0
    partitions: int = 8
    session_timeout_s: float = 6.0
    drain_s: float = 90.0
    seed: int = 2026
    #: Event-time span of the replayed stream. One day, so a record redelivered after the
    #: kill is late by at most the allowed lateness (features/windows.py): at the real
    #: pace it would be seconds late; 60 days replayed in a minute would make it days late.
    days: float = 1.0

    @property
    def production_s(self) -> float:
        return (len(SCHEDULE) + 1) * self.spacing_s

    def records(self) -> list[tuple[str, bytes, bytes]]:
        """(txn_id, card key, JSON value) of the replay, in send order."""
        return build_step_records([self.rate], self.production_s, self.seed, self.days)[0]


@dataclass
class _Event:
    action: str
    worker: str
    started: float  # wall clock
    done: float = 0.0
    partitions: list[int] | None = None  # the target's, just before the action

    @property
    def name(self) -> str:
        """How the report names the event, e.g. "sigkill w2"."""
        return f"{self.action} {self.worker}"


class RebalanceRun:
    """One run: see the module docstring. `run()` returns the report."""

    def __init__(
        self, services: ChaosServices, registry: Path, signing_key: SigningKey,
        options: RebalanceOptions, run_dir: Path,
    ) -> None:  # fmt: skip
        self.services, self.options, self.run_dir = services, options, run_dir
        run_id = uuid.uuid4().hex[:8]
        self.group = f"rebalance-{run_id}"
        self.topics = {name: f"{name}.rebalance-{run_id}"
                       for name in ("transactions", "decisions", "labels", "dlq")}  # fmt: skip
        self.id_hash_key = new_id_hash_key()  # one for the whole group
        self.env = worker_env(
            services.broker.url, services.redis_url, signing_key, self.id_hash_key,
            max_event_skew_s=REPLAYED_HISTORY, app_id=self.group,
            registry=str(registry.resolve()), partitions=str(options.partitions),
            **{f"topic_{name}": topic for name, topic in self.topics.items()},
        )  # fmt: skip
        self.workers: dict[str, WorkerProcess] = {}
        self.events: list[_Event] = []

    @property
    def bootstrap(self) -> str:
        return self.services.broker.bootstrap

    def _start(self, name: str) -> WorkerProcess:
        worker = start_group([*WORKER_MODULE, "worker"], "worker", 1, self.env,
                             self.run_dir / name,
                             session_timeout_s=self.options.session_timeout_s,
                             ready_timeout_s=120.0)[0]  # fmt: skip
        self.workers[name] = worker
        return worker

    def run(self) -> dict[str, Any]:
        options = self.options
        records = options.records()
        create_topics(self.bootstrap, self.topics.values(), options.partitions)
        self._start("w1")
        sent: dict[str, Any] = {}
        producer = threading.Thread(target=self._produce, args=(records, sent), daemon=True)
        started = time.time()
        producer.start()
        try:
            for step, (action, name) in enumerate(SCHEDULE, start=1):
                time.sleep(max(0.0, started + step * options.spacing_s - time.time()))
                self.events.append(self._act(action, name))
            producer.join()
            self._drain(time.monotonic() + options.drain_s)
            return self._report(started, sent)
        finally:
            producer.join(30.0)
            stop_workers(list(self.workers.values()))

    def _produce(self, records: list[tuple[str, bytes, bytes]], sent: dict[str, Any]) -> None:
        """The replay at the steady rate; its report (send times, failures) into `sent`."""
        pairs = [(key, value) for _, key, value in records]
        sent.update(asyncio.run(produce_at_rate(self.bootstrap, self.topics["transactions"],
                                                pairs, self.options.rate)))  # fmt: skip

    def _act(self, action: str, name: str) -> _Event:
        target = self.workers.get(name)
        event = _Event(action, name, time.time(),
                       partitions=target.partitions() if target else None)  # fmt: skip
        if action == "join":
            self._start(name)
        elif action == "sigterm":
            assert target is not None, f"{name} never started"
            stop_workers([target])  # SIGTERM, then SIGKILL past its deadline
        else:
            assert target is not None, f"{name} never started"
            target.process.kill()
            target.process.wait()
        event.done = time.time()
        return event

    def _alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers.values() if w.process.poll() is None]

    def _drain(self, deadline: float) -> None:
        """Until the group's lag is 0, the deadline passes, or no worker is left."""
        while time.monotonic() < deadline and self._alive():
            if group_lag(self.bootstrap, self.group, self.topics["transactions"],
                         self.options.partitions) == 0:  # fmt: skip
                return
            time.sleep(POLL_S)

    def _report(self, started: float, sent: dict[str, Any]) -> dict[str, Any]:
        inputs = read_topic(self.bootstrap, self.topics["transactions"])
        decisions = read_topic(self.bootstrap, self.topics["decisions"])
        ledger = account(inputs, decisions, read_topic(self.bootstrap, self.topics["dlq"]),
                         IdPseudonyms(self.id_hash_key),
                         committed_offsets(self.bootstrap, self.group,
                                           self.topics["transactions"],
                                           self.options.partitions))  # fmt: skip
        timed = decision_latencies(decisions)
        first = self.events[0].started
        steady = window_figures(ledger, timed, first - self.options.window_s, first)
        duplicates = attribute(duplicate_records(inputs, decisions), self.events)
        return {
            **ledger.summary(),
            "options": asdict(self.options),
            "produced": len(sent.get("sent", [])),
            "producer_failures": sent.get("failures"),
            "produced_tps": round(len(sent.get("sent", [])) / sent["seconds"], 1)
            if sent.get("seconds") else None,
            "steady": steady,
            "events": [self._event_figures(event, started, ledger, timed, duplicates)
                       for event in self.events],
            "duplicate_records": duplicates,
            "partitions_at_end": {name: worker.partitions()
                                  for name, worker in self.workers.items()
                                  if worker.process.poll() is None},
            "topics": self.topics,
            "group": self.group,
            "run_dir": str(self.run_dir),
        }  # fmt: skip

    def _event_figures(
        self, event: _Event, started: float, ledger: Ledger,
        timed: Sequence[tuple[float, float]], duplicates: Sequence[dict[str, Any]],
    ) -> dict[str, Any]:  # fmt: skip
        end = event.done + self.options.window_s
        return {
            "event": event.name,
            "at_s": round(event.started - started, 2),
            "took_s": round(event.done - event.started, 2),
            "partitions": event.partitions,
            "window_s": [round(event.started - started, 2), round(end - started, 2)],
            "started_at": event.started,
            **window_figures(ledger, timed, event.started, end),
            "duplicates": sum(duplicate["after_event"] == event.name for duplicate in duplicates),
        }


def decision_latencies(decisions: Sequence[TopicRecord]) -> list[tuple[float, float]]:
    """(broker time of the decision, its end-to-end ms) per decision record, in time order."""
    timed = [(record.timestamp, float(orjson.loads(record.value or b"{}")
                                      ["latency_ms"]["end_to_end"]))
             for record in decisions]  # fmt: skip
    return sorted(timed)


def backlog_at(ledger: Ledger, moments: Sequence[float]) -> list[int]:
    """Records produced by each moment and not yet decided or dead-lettered then."""
    produced = sorted(ledger.produced_at)
    accounted = sorted(at for at in ledger.accounted_at if at is not None)
    return [bisect_right(produced, t) - bisect_right(accounted, t) for t in moments]


def window_figures(
    ledger: Ledger, timed: Sequence[tuple[float, float]], start: float, end: float
) -> dict[str, Any]:
    """Max backlog and e2e p99 of the decisions made in [start, end)."""
    count = max(1, int((end - start) / LAG_STEP_S) + 1)
    moments = [start + i * (end - start) / (count - 1 or 1) for i in range(count)]
    latencies = [ms for at, ms in timed if start <= at < end]
    percentiles = latency_percentiles(latencies, ("p50", "p99", "max"))
    return {"max_lag": max(backlog_at(ledger, moments)), "decisions": len(latencies),
            "e2e_p50_ms": percentiles["p50"], "e2e_p99_ms": percentiles["p99"],
            "e2e_max_ms": percentiles["max"]}  # fmt: skip


def duplicate_records(
    inputs: Sequence[TopicRecord], decisions: Sequence[TopicRecord]
) -> list[dict[str, Any]]:
    """Each txn_id decided more than once: its input partition and its decisions' times."""
    decided: dict[str, list[float]] = defaultdict(list)
    for record in decisions:
        decided[orjson.loads(record.value or b"{}")["txn_id"]].append(record.timestamp)
    twice = {txn_id: sorted(times) for txn_id, times in decided.items() if len(times) > 1}
    found = []
    for record in inputs:
        try:
            txn_id = orjson.loads(record.value or b"{}").get("txn_id")
        except orjson.JSONDecodeError:
            continue
        if txn_id in twice:
            found.append({"txn_id": txn_id, "partition": record.partition,
                          "offset": record.offset, "decided_at": twice.pop(txn_id)})  # fmt: skip
    return found


def attribute(duplicates: list[dict[str, Any]], events: Sequence[_Event]) -> list[dict[str, Any]]:
    """Each duplicate with the last event that started before its second decision
    (`after_event`, None: before any) and how long after that event's start it came."""
    for duplicate in duplicates:
        again = duplicate["decided_at"][1]
        before = [event for event in events if event.started <= again]
        duplicate["after_event"] = before[-1].name if before else None
        duplicate["after_s"] = round(again - before[-1].started, 2) if before else None
    return duplicates


def run_rebalance(
    services: ChaosServices, registry: Path, signing_key: SigningKey,
    options: RebalanceOptions, run_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    """One run (`registry` signed with `signing_key`); see the module docstring."""
    return RebalanceRun(services, registry, signing_key, options, run_dir).run()
