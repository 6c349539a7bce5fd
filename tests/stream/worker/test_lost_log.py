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

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets: the restarted broker holds a lost one."""
        self._committed_offset[TP] = 132
        await self.seek(TP, 132)

    def assignment(self) -> set[Any]:
        return {TP}


@dataclass(eq=False)
class Message:
    """What the watch reads of a Faust message; hashable like one (Faust keeps them in a set)."""

    offset: int
    tp: Any = TP
    acked: bool = False


def event(offset: int) -> Any:
    return SimpleNamespace(message=Message(offset))


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


def test_earliest_reads_again_from_the_start() -> None:
    metrics = WorkerMetrics()
    watch, consumer = LostLogWatch(Settings(), metrics, refuse), Consumer()
    lost = watch.lost(TP, 166, 12)
    assert lost is not None
    asyncio.run(watch.follow(consumer, TP, lost))
    assert consumer.seeks == [0]
    assert TP not in consumer._committed_offset and TP not in consumer._acked
    asyncio.run(consumer.perform_seek())  # as after the rejoin that follows the restart
    assert consumer.seeks == [0, 132, 0]
    assert TP not in consumer._committed_offset
    lost_total = metrics.registry.get_sample_value(
        "fraudstream_broker_lost_log_total", {"partition": "0"}
    )
    assert lost_total == 1


def test_what_the_lost_log_gave_is_never_acked_what_the_new_reading_gives_is() -> None:
    watch, consumer = LostLogWatch(Settings(), WorkerMetrics(), refuse), Consumer()
    decided, in_take_buffer = event(100), event(101)
    watch.taken([event(99), decided])
    consumer._unacked_messages.update({decided.message, in_take_buffer.message})
    lost = watch.lost(TP, 166, 12)
    assert lost is not None
    asyncio.run(watch.follow(consumer, TP, lost))
    # After the reset: the take buffer's event, two left in Faust's buffers, then the new
    # log from its start, whose offsets climb again.
    after_reset = [in_take_buffer, event(102), event(103), event(0), event(1), event(104)]
    watch.taken(after_reset)
    stale = [e.message.offset for e in [decided, *after_reset] if watch.is_stale(e)]
    assert stale == [100, 101, 102, 103]


def test_leftovers_are_consecutive_and_below_where_the_lost_log_ended() -> None:
    watch, consumer = LostLogWatch(Settings(), WorkerMetrics(), refuse), Consumer()
    watch.taken([event(10)])
    lost = watch.lost(TP, 12, 3)
    assert lost is not None and lost.old_end == 12
    asyncio.run(watch.follow(consumer, TP, lost))
    after_reset = [event(11), event(12), event(13)]  # 12: the new log, refilled past 11
    watch.taken(after_reset)
    assert [watch.is_stale(e) for e in after_reset] == [True, False, False]


def test_stop_stops_the_worker_instead() -> None:
    watch = LostLogWatch(Settings(offset_reset_policy="stop"), WorkerMetrics(), refuse)
    lost = watch.lost(TP, 166, 12)
    assert lost is not None
    with pytest.raises(SystemExit, match="OFFSET_RESET_POLICY=stop"):
        asyncio.run(watch.follow(Consumer(), TP, lost))


def test_stale_events_are_released_unacked_so_a_rebalance_does_not_wait_for_them() -> None:
    watch, consumer = LostLogWatch(Settings(), WorkerMetrics(), refuse), Consumer()
    old, new = event(11), event(0)
    watch.taken([event(10), old])
    consumer._unacked_messages.add(old.message)
    lost = watch.lost(TP, 166, 12)
    assert lost is not None
    asyncio.run(watch.follow(consumer, TP, lost))
    consumer._unacked_messages.add(new.message)
    watch.taken([new])
    assert watch.release_stale(consumer, [old, new]) == [new]
    # Faust's wait_empty (every rebalance, the stop) waits while a taken message is unacked.
    assert consumer._unacked_messages == {new.message}
    assert old.message.acked and not new.message.acked
    assert TP not in consumer._acked  # released, not acked: its offset is never committed
