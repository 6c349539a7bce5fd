"""CPU seconds per 1,000 transactions, per process role, for the demo and the load test.

On a laptop every process of a run shares the same few cores: a worker can miss its
budget because the broker or the measuring tool took the CPU. So runs report what each
role cost — `worker`, `broker`, `redis`, `producer`, `measurer` — from each process's own
CPU times (psutil, user + system, children excluded), never from machine-wide figures.
A role whose process is not ours (an external Kafka or Redis) is reported as None.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psutil

#: The roles every report lists, in this order.
ROLES = ("worker", "broker", "redis", "producer", "measurer")


@dataclass(frozen=True)
class CpuSource:
    """A process (or part of one) whose CPU time counts towards `role`.

    `only_thread` counts one thread of the process; `except_thread` counts all but one.
    The demo needs both: its follower thread measures, its other threads produce.
    """

    role: str
    pid: int
    only_thread: int | None = None
    except_thread: int | None = None


def run_sources(worker_pids: Iterable[int], service_pids: Mapping[str, int]) -> list[CpuSource]:
    """A run's workers and the servers it started (`ServiceUrls.pids`), each in its role."""
    return [CpuSource("worker", pid) for pid in worker_pids] + [
        CpuSource(role, pid) for role, pid in service_pids.items()
    ]


def cpu_seconds(source: CpuSource) -> float | None:
    """User + system CPU seconds `source` has used so far; None once it is gone."""
    try:
        process = psutil.Process(source.pid)
        if source.only_thread is None and source.except_thread is None:
            times = process.cpu_times()
            return float(times.user + times.system)
        threads = process.threads()
    except psutil.Error:
        return None
    if source.only_thread is not None:
        threads = [t for t in threads if t.id == source.only_thread]
    else:
        threads = [t for t in threads if t.id != source.except_thread]
    return float(sum(t.user_time + t.system_time for t in threads))


class CpuMeter:
    """CPU used by each role between `start()` and `per_1000()`.

    `per_1000` divides by the transactions handled meanwhile; `extra_seconds` adds CPU
    measured elsewhere (a producer process that reported its own times before exiting).
    """

    def __init__(self, sources: Iterable[CpuSource]) -> None:
        self.sources = list(sources)
        self._before: dict[CpuSource, float | None] = {}

    def start(self) -> None:
        self._before = {source: cpu_seconds(source) for source in self.sources}

    def seconds_by_role(
        self, extra_seconds: Mapping[str, float] | None = None
    ) -> dict[str, float | None]:
        """CPU seconds per role since `start()`; None for a role nothing measured."""
        used: dict[str, float | None] = dict.fromkeys(ROLES)
        for source in self.sources:
            before, after = self._before.get(source), cpu_seconds(source)
            if before is not None and after is not None:
                used[source.role] = (used[source.role] or 0.0) + max(0.0, after - before)
        for role, seconds in (extra_seconds or {}).items():
            used[role] = (used[role] or 0.0) + seconds
        return used

    def per_1000(
        self, transactions: int, extra_seconds: Mapping[str, float] | None = None
    ) -> dict[str, float | None]:
        """CPU seconds per 1,000 transactions by role (`cpu_s_per_1000_txn` in reports)."""
        return per_1000(self.seconds_by_role(extra_seconds), transactions)


def per_1000(seconds: Mapping[str, float | None], transactions: int) -> dict[str, float | None]:
    """Seconds by role scaled to 1,000 transactions (None stays None; no transactions: None)."""
    return {
        role: None if value is None or transactions <= 0 else round(value * 1000 / transactions, 4)
        for role, value in seconds.items()
    }


def load_average() -> dict[str, float]:
    """The machine's 1/5/15-minute load average beside its core count, for context."""
    one, five, fifteen = os.getloadavg()
    return {"1m": one, "5m": five, "15m": fifteen, "cores": float(os.cpu_count() or 1)}


def own_process_cpu_seconds() -> float:
    """This process's CPU seconds (user + system), for a child that reports its own cost."""
    times = os.times()
    return times.user + times.system
