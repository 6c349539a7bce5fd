"""One fault against one real worker, and what it cost: records lost, decided twice, time.

`run_fault` is one row of `make chaos` (bench/chaos.py) and of the chaos tests: fresh
topics on the given services, one `fraudstream worker` process, transactions produced at
`ChaosOptions.rate` for `seconds`, the fault injected a third of the way in, then a drain
until the group's lag is 0 (or `drain_s` passes, or the worker is gone). The topics are
then read back and every record accounted for (stream/tools/ledger.py). The servers and
their faults are stream/tools/faults.py's.

Faults (`FAULTS`):
- `worker_kill`: the worker SIGKILLed and started again at once, as a supervisor would;
- `redis_stop`: Redis SIGSTOPped for `fault_s`, then SIGCONTed;
- `redis_kill`: Redis SIGKILLed, started empty on its port `fault_s` later;
- `broker_restart`: the broker SIGKILLed, started again `broker_down_s` later. The
  embedded Tansu keeps its log in memory, so the restarted one is empty: the harness
  re-creates the topics (a real Kafka would still have them), production pauses and the
  worker is held (SIGSTOP) across the restart (stream/tools/faults.py says why), and the
  acknowledged records the new broker no longer holds are the broker's loss, counted apart;
- `xgboost_hang`: XGBoost scoring blocks for `fault_s` (`ChaosOptions.hang_worker`);
- `hostile_mix`: a hostile mix (stream/sim/hostile.py) among the valid stream.

Recovery is measured from the broker's timestamps: seconds from the end of the fault until
every record produced before it had its decision or dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from fraudstream.features.pseudonyms import IdPseudonyms, new_id_hash_key
from fraudstream.models.signing import SigningKey
from fraudstream.stream.tools.faults import ChaosServices
from fraudstream.stream.tools.ledger import account, committed_offsets, group_lag, read_topic
from fraudstream.stream.tools.loadtest_traffic import (
    build_step_records,
    counter_total,
    produce_at_rate,
    read_metrics,
)
from fraudstream.stream.tools.services import create_topics
from fraudstream.stream.tools.workers import (
    REPLAYED_HISTORY,
    WorkerProcess,
    start_group,
    stop_workers,
    worker_env,
)

#: Each fault's name and what it does, for reports ({} fields from `ChaosOptions`).
FAULTS: dict[str, str] = {
    "worker_kill": "worker SIGKILL mid-stream, restarted at once (as a supervisor would)",
    "redis_stop": "Redis SIGSTOP {fault_s:g} s, then SIGCONT",
    "redis_kill": "Redis SIGKILL, restarted empty {fault_s:g} s later on the same port",
    "broker_restart": "broker SIGKILL, restarted {broker_down_s:g} s later (memory log lost)",
    "xgboost_hang": "XGBoost scoring blocks for {fault_s:g} s",
    "hostile_mix": "{hostile:,} hostile records (hypothesis) mixed into the valid stream",
}
WORKER_MODULE = ("fraudstream.stream.cli",)
#: A record to send: its kind ("valid" or a hostile kind), key and value (None: tombstone).
ChaosRecord = tuple[str, bytes | None, bytes | None]
#: How often the drain checks the group's lag and the worker.
POLL_S = 1.0


@dataclass(frozen=True)
class ChaosOptions:
    """How big a row is; `hang_worker` is `python -m` arguments of a worker entry point
    taking `--hang-while FILE` before `worker` (needed by the `xgboost_hang` fault)."""

    rate: float = 250.0
    seconds: float = 60.0
    fault_s: float = 10.0
    broker_down_s: float = 3.0
    hostile: int = 10_000
    drain_s: float = 60.0
    partitions: int = 1
    session_timeout_s: float = 6.0
    seed: int = 2026
    hang_worker: tuple[str, ...] = ()

    def describe(self, fault: str) -> str:
        return FAULTS[fault].format(**self.__dict__)


def chaos_records(fault: str, options: ChaosOptions) -> list[ChaosRecord]:
    """(kind, key, value) in send order: the valid stream, with the hostile mix for its row."""
    stream = build_step_records([options.rate], options.seconds, options.seed)[0]
    valid: list[ChaosRecord] = [("valid", key, value) for _, key, value in stream]
    if fault != "hostile_mix":
        return valid
    from fraudstream.features.transaction import parse_transaction
    from fraudstream.stream.sim.hostile import hostile_records

    template = parse_transaction(stream[0][2]).to_dict()
    ids = [txn_id for txn_id, _, _ in stream]
    hostile = iter(hostile_records(options.hostile, template, ids, options.seed))
    total = len(valid) + options.hostile
    slots = set(random.Random(options.seed).sample(range(total), options.hostile))
    ordinary = iter(valid)
    mixed: list[ChaosRecord] = []
    for slot in range(total):
        if slot in slots:
            kind, value = next(hostile)
            mixed.append((kind, f"h{slot}".encode(), value))
        else:
            mixed.append(next(ordinary))
    return mixed + [(kind, b"h", value) for kind, value in hostile]


class ChaosRow:
    """One fault's run: see the module docstring. `run()` returns the row's figures."""

    def __init__(
        self, fault: str, services: ChaosServices, registry: Path, signing_key: SigningKey,
        options: ChaosOptions, run_dir: Path,
    ) -> None:  # fmt: skip
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {sorted(FAULTS)}")
        if fault == "xgboost_hang" and not options.hang_worker:
            raise ValueError("the xgboost_hang fault needs ChaosOptions.hang_worker")
        self.fault, self.services, self.options, self.run_dir = fault, services, options, run_dir
        run_id = uuid.uuid4().hex[:8]
        self.group = f"chaos-{fault}-{run_id}"
        self.topics = {name: f"{name}.chaos-{run_id}"
                       for name in ("transactions", "decisions", "labels", "dlq")}  # fmt: skip
        self.hang_flag = run_dir / "xgboost-hangs"
        self.registry = registry
        # One id hash key for every worker start of the row, as a group would share.
        self.signing_key, self.id_hash_key = signing_key, new_id_hash_key()
        self.worker: WorkerProcess | None = None
        self.worker_exit: int | None = None
        self._paused, self._resume = threading.Event(), threading.Event()

    @property
    def bootstrap(self) -> str:
        return self.services.broker.bootstrap

    def _start_worker(self, label: str) -> WorkerProcess:
        module = list(WORKER_MODULE)
        if self.fault == "xgboost_hang":
            module = [*self.options.hang_worker, "--hang-while", str(self.hang_flag)]
        env = worker_env(
            self.services.broker.url,
            self.services.redis_url,
            self.signing_key,
            self.id_hash_key,
            max_event_skew_s=REPLAYED_HISTORY,  # generated history, sent at many times its pace
            app_id=self.group,
            registry=str(self.registry.resolve()),
            partitions=str(self.options.partitions),
            **{f"topic_{name}": topic for name, topic in self.topics.items()},
        )
        return start_group([*module, "worker"], "worker", 1, env, self.run_dir / label,
                           session_timeout_s=self.options.session_timeout_s,
                           ready_timeout_s=90.0)[0]  # fmt: skip

    def run(self) -> dict[str, Any]:
        records = chaos_records(self.fault, self.options)
        create_topics(self.bootstrap, self.topics.values(), self.options.partitions)
        self.worker = self._start_worker("first")
        # The broker's row pauses production across the restart (see `restart_broker`).
        split = len(records) // 3 if self.fault == "broker_restart" else len(records)
        report: dict[str, Any] = {"acked": [], "failures": 0}
        producer = threading.Thread(target=self._produce, daemon=True,
                                    args=([records[:split], records[split:]], report))  # fmt: skip
        started = time.time()
        producer.start()
        try:
            fault_start, fault_end = self._inject(started, len(records) / self.options.rate,
                                                  producer)  # fmt: skip
            producer.join()
            self._drain(time.monotonic() + self.options.drain_s)
            figures = self._figures(records, report, started, fault_start, fault_end)
            stop_workers([self.worker])
            # -9: it ignored SIGTERM (stop_workers' deadline) and was killed.
            figures["worker_rc_after_stop"] = self.worker.process.returncode
            return figures
        finally:
            self.hang_flag.unlink(missing_ok=True)
            self._resume.set()
            producer.join(30.0)
            stop_workers([self.worker])

    def _produce(self, segments: list[list[ChaosRecord]],
                 report: dict[str, Any]) -> None:  # fmt: skip
        """Send the segments at the rate; between two, wait for the fault to allow it."""
        try:
            for index, segment in enumerate(segment for segment in segments if segment):
                if index:
                    self._paused.set()
                    self._resume.wait()
                sent = asyncio.run(produce_at_rate(
                    self.bootstrap, self.topics["transactions"],
                    [(key, value) for _, key, value in segment], self.options.rate))  # fmt: skip
                report["acked"] += sent["acked"]
                report["failures"] += sent["failures"]
                report.setdefault("error", sent["first_failure"])
        except Exception as error:  # reported in the row: the run goes on to account
            report["error"] = repr(error)
        finally:
            self._paused.set()

    def _inject(self, started: float, production_s: float,
                producer: threading.Thread) -> tuple[float, float]:  # fmt: skip
        """Wait a third of the production, do the fault; its (start, end), wall clock."""
        if self.fault == "hostile_mix":
            producer.join()
            return started, time.time()
        if self.fault == "broker_restart":
            self._paused.wait()
            fault_start = time.time()
            # The worker, a producer too, is held across the restart for the reason the
            # producer pauses: what it sent before the empty broker had its topics again
            # would be dropped or stored in a second offset sequence (see `restart_broker`).
            assert self.worker is not None
            os.kill(self.worker.process.pid, signal.SIGSTOP)
            try:
                self.services.restart_broker(
                    self.options.broker_down_s, list(self.topics.values()), self.options.partitions
                )
            finally:
                os.kill(self.worker.process.pid, signal.SIGCONT)  # fmt: skip
            self._resume.set()
            return fault_start, time.time()
        time.sleep(max(0.0, started + production_s / 3 - time.time()))
        options, services, fault_start = self.options, self.services, time.time()
        if self.fault == "worker_kill":
            assert self.worker is not None
            self.worker.process.kill()
            self.worker.process.wait()
            fault_end = time.time()
            self.worker = self._start_worker("restarted")
            return fault_start, fault_end
        timed_faults: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "redis_stop": (partial(services.signal_redis, signal.SIGSTOP),
                           partial(services.signal_redis, signal.SIGCONT)),
            "redis_kill": (services.kill_redis, services.start_redis_again),
            "xgboost_hang": (self.hang_flag.touch, self.hang_flag.unlink),
        }  # fmt: skip
        begin, end = timed_faults[self.fault]
        begin()
        time.sleep(options.fault_s)
        end()
        return fault_start, time.time()

    def _drain(self, deadline: float) -> None:
        """Until the group's lag is 0, the worker has exited, or `deadline` (monotonic)."""
        assert self.worker is not None
        while time.monotonic() < deadline:
            if self.worker.process.poll() is not None:
                self.worker_exit = self.worker.process.returncode
                return
            with contextlib.suppress(Exception):  # the broker may be busy or restarting
                if group_lag(self.bootstrap, self.group, self.topics["transactions"],
                             self.options.partitions) == 0:  # fmt: skip
                    return
            time.sleep(POLL_S)

    def _figures(
        self, records: list[ChaosRecord], report: dict[str, Any],
        started: float, fault_start: float, fault_end: float,
    ) -> dict[str, Any]:  # fmt: skip
        assert self.worker is not None
        inputs = read_topic(self.bootstrap, self.topics["transactions"])
        ledger = account(inputs, read_topic(self.bootstrap, self.topics["decisions"]),
                         read_topic(self.bootstrap, self.topics["dlq"]),
                         IdPseudonyms(self.id_hash_key),
                         committed_offsets(self.bootstrap, self.group, self.topics["transactions"],
                                           self.options.partitions))  # fmt: skip
        alive = self.worker.process.poll() is None
        counted = worker_counters(self.worker, REPORTED_COUNTERS) if alive else {}
        recovery = ledger.recovery_s(fault_end)
        figures: dict[str, Any] = {
            "fault": self.fault, "what": self.options.describe(self.fault), **ledger.summary(),
            "recovery_s": None if recovery is None else round(recovery, 1),
            "worker_alive": alive, "worker_exit": self.worker_exit,
            "produced": len(records), "producer_failures": report["failures"],
            "producer_error": report.get("error"),
            "fault_start_s": round(fault_start - started, 1),
            "fault_end_s": round(fault_end - started, 1),
            "run_dir": str(self.run_dir), **counted,
        }  # fmt: skip
        if self.fault == "broker_restart":
            figures["broker_lost_acked"] = broker_lost_acked(records, report, inputs, fault_start)
        if self.fault == "hostile_mix":
            figures["hostile_kinds"] = dict(Counter(kind for kind, _, _ in records))
        if not alive or ledger.lost:
            figures["worker_log_tail"] = self.worker.log_tail(2000)
        return figures


#: Worker counters a row reports (the last worker's; name in the row: Prometheus name).
REPORTED_COUNTERS = {
    "redis_resets": "fraudstream_feature_store_resets_total",
    "partial_history": "fraudstream_partial_history_decisions_total",
    "broker_lost_logs": "fraudstream_broker_lost_log_total",
}


def worker_counters(worker: WorkerProcess, counters: dict[str, str]) -> dict[str, float]:
    """Each counter of `counters` summed over its labels, read from the worker's /metrics."""
    url = worker.metrics_url()
    exposition = read_metrics([url] if url is not None else [])
    return {field: counter_total(exposition, name) for field, name in counters.items()}


def broker_lost_acked(
    records: list[ChaosRecord], report: dict[str, Any],
    held: Sequence[Any], before: float,
) -> int:  # fmt: skip
    """Records the broker acknowledged before `before` (its stop) that it no longer holds."""
    kept = Counter(hashlib.sha256(record.value or b"").digest() for record in held)
    lost = 0
    for (_, _, value), acked in zip(records, report["acked"], strict=False):
        if acked is not None and acked < before:
            digest = hashlib.sha256(value or b"").digest()
            if kept[digest]:
                kept[digest] -= 1
            else:
                lost += 1
    return lost


def run_fault(
    fault: str, services: ChaosServices, registry: Path, signing_key: SigningKey,
    options: ChaosOptions, run_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    """One row (`registry` signed with `signing_key`): see the module docstring and `ChaosRow`."""
    return ChaosRow(fault, services, registry, signing_key, options, run_dir).run()
