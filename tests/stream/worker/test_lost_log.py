"""The lost-log watch: what it takes for a lost log, and what it does then (issue 10 §3).

The real thing, a broker restarted without its storage under a running worker, is in
tests/stream/tools/test_chaos.py; here the decisions, on a stand-in for Faust's consumer.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, NoReturn

import pytest
from faust.types import TP as TopicPartition

from fraudstream.stream.settings import Settings
from fraudstream.stream.worker.lost_log import LostLog, LostLogWatch
from fraudstream.stream.worker.metrics import WorkerMetrics

TP = TopicPartition("transactions", 0)


class Consumer:
    """Faust's bookkeeping attributes and a `seek` that records where it was sent."""

    def __init__(self) -> None:
        self._gap: dict[Any, Any] = defaultdict(list)
        self._acked: dict[Any, list[int]] = defaultdict(list, {TP: [164, 165]})
        self._acked_index: dict[Any, set[int]] = defaultdict(set, {TP: {164, 165}})
        self._read_offset: dict[Any, int] = {TP: 166}
        self._committed_offset: dict[Any, int] = {TP: 102}
        self._unacked_messages: set[Any] = set()
        self.seeks: list[int] = []

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append(offset)


@dataclass(eq=False)
class Message:
    """What the watch reads of a Faust message; hashable like one (Faust keeps them in a set)."""

    timestamp: float
    tp: Any = TP
    acked: bool = False


def event(timestamp: float) -> Any:
    return SimpleNamespace(message=Message(timestamp))


def refuse(error: Exception) -> NoReturn:
    raise SystemExit(str(error))


def test_a_log_ending_before_the_position_or_shrinking_is_lost_a_growing_one_is_not() -> None:
    watch = LostLogWatch(Settings(), WorkerMetrics(), refuse)
    assert watch.lost(TP, 100, 120) is None
    assert watch.lost(TP, 120, 120) is None
    assert isinstance(watch.lost(TP, 166, 12), LostLog)  # ends before the position
    assert watch.lost(TP, 0, 12) is None
    assert watch.lost(TP, 0, 300) is None
    lost = watch.lost(TP, 5, 40)  # refilled past the position, but below what it held
    assert lost is not None and "or the 300 it held before" in str(lost)


def test_earliest_reads_again_from_the_start_and_never_acks_what_the_lost_log_gave() -> None:
    metrics = WorkerMetrics()
    watch, consumer = LostLogWatch(Settings(), metrics, refuse), Consumer()
    watch.taken([event(10.0), event(11.0)])
    lost = watch.lost(TP, 166, 12)
    assert lost is not None
    asyncio.run(watch.follow(consumer, TP, lost))
    assert consumer.seeks == [0]
    assert TP not in consumer._committed_offset and TP not in consumer._acked
    assert watch.is_stale(event(11.0)) and not watch.is_stale(event(11.5))
    asyncio.run(watch.after_rebalance(consumer, {TP}))  # the rejoin sought the old offset
    assert consumer.seeks == [0, 0]
    lost_total = metrics.registry.get_sample_value(
        "fraudstream_broker_lost_log_total", {"partition": "0"}
    )
    assert lost_total == 1


def test_stop_stops_the_worker_instead() -> None:
    watch = LostLogWatch(Settings(offset_reset_policy="stop"), WorkerMetrics(), refuse)
    lost = watch.lost(TP, 166, 12)
    assert lost is not None
    with pytest.raises(SystemExit, match="OFFSET_RESET_POLICY=stop"):
        asyncio.run(watch.follow(Consumer(), TP, lost))


def test_stale_events_are_released_unacked_so_a_rebalance_does_not_wait_for_them() -> None:
    watch, consumer = LostLogWatch(Settings(), WorkerMetrics(), refuse), Consumer()
    old, new = event(11.0), event(11.5)
    watch.taken([event(10.0), old])
    consumer._unacked_messages.update({old.message, new.message})
    lost = watch.lost(TP, 166, 12)
    assert lost is not None
    asyncio.run(watch.follow(consumer, TP, lost))
    assert watch.release_stale(consumer, [old, new]) == [new]
    # Faust's wait_empty (every rebalance, the stop) waits while a taken message is unacked.
    assert consumer._unacked_messages == {new.message}
    assert old.message.acked and not new.message.acked
    assert TP not in consumer._acked  # released, not acked: its offset is never committed
