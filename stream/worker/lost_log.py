"""Never skip silently what a broker that lost its log holds now (issue 10 §3).

A broker restarted without its storage (the embedded Tansu keeps everything in memory)
starts each partition again at offset 0, and it may have the group's old committed offset
again too (Faust commits what it acked before the restart). Left alone, a worker waits at
its old position while new records fill the offsets below it, and then skips them.

`LostLogWatch` notices a partition's log ending before the worker's position, or its
high-water mark going down, counts it, logs it loudly and follows
`FRAUDSTREAM_OFFSET_RESET_POLICY`: `earliest` reads the partition again from its start
(what the broker holds is decided, some of it twice), `stop` stops the worker unacked.

Reading again from the start takes three more things, each found by a lost trial:
- Faust seeks to the committed offsets after every rebalance (and while one is in
  progress), and the restarted broker may hold one from the lost reading: for a while, a
  re-read partition goes back to its start after each of those seeks (132 records lost).
- Records read from the lost log must never be acked after the reset: their offsets would
  be committed over the new log's unread ones. That is those the agent had in hand, and
  those still in Faust's buffers (`Leftovers`; 107 records lost to three of them).
- Nor may they stay pending: Faust waits for every message it handed out to be acked
  before it finishes a rebalance or a stop (`wait_empty`); in CI the rejoin after the
  restart never completed. `release_stale` marks them done without an ack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakSet

from fraudstream.stream.settings import Settings
from fraudstream.stream.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

#: How long after a lost log a rebalance still puts a re-read partition back to its start.
REREAD_AFTER_REBALANCE_S = 60.0


@dataclass
class Leftovers:
    """Records of a lost log that Faust fetched before the reset but had not handed to the
    agent yet: they come out of its buffers after the reset, before the new reading does.

    They continue the old reading one offset at a time, from just `after` the newest
    offset the agent had in hand and `below` where the lost log ended; the first record
    that does not (the new reading starts again from the log's start) ends them.
    """

    after: int
    below: int

    def continue_with(self, offset: int) -> bool:
        """Whether the record at `offset` is still a leftover (then it is the newest)."""
        if offset != self.after + 1 or offset >= self.below:
            return False
        self.after = offset
        return True


class LostLog(RuntimeError):
    """A partition's log ends before the worker's position: the broker lost records.

    `old_end`: where the lost log ended, as far as this worker saw it.
    """

    def __init__(self, message: str, old_end: int) -> None:
        super().__init__(message)
        self.old_end = old_end


class LostLogWatch:
    """Per owned partition: the highest high-water mark seen, and re-reads in progress.

    `stop(error)` is what the `stop` policy calls (it does not return).
    """

    def __init__(self, settings: Settings, metrics: WorkerMetrics, stop: Any) -> None:
        self.settings, self.metrics, self._stop = settings, metrics, stop
        self._highest: dict[Any, int] = {}
        self._rereading: dict[Any, float] = {}
        self._newest_taken: dict[Any, int] = {}
        self._leftovers: dict[Any, Leftovers] = {}
        self._stale: WeakSet[Any] = WeakSet()
        self._faust_seeks_followed = False  # one watch per worker, so one consumer

    def taken(self, events: Sequence[Any]) -> None:
        """Sort the events the agent takes: those of a lost log still coming out of Faust's
        buffers after the reset are stale (see `Leftovers`)."""
        for event in events:
            message = event.message
            tp, offset = message.tp, message.offset
            leftovers = self._leftovers.get(tp)
            if leftovers is not None and message not in self._stale:
                if leftovers.continue_with(offset):
                    self._stale.add(message)
                else:
                    del self._leftovers[tp]  # the reading from the start has begun
            self._newest_taken[tp] = offset

    def is_stale(self, event: Any) -> bool:
        """Whether `event` was read from a log the broker lost since."""
        return event.message in self._stale

    def release_stale(self, consumer: Any, events: Sequence[Any]) -> list[Any]:
        """The events that may be acked; the stale ones are released from `consumer` unacked.

        Setting `acked` is what Faust's own `_clean_unacked_messages` looks for; the offset
        never reaches `_acked`, so it is never committed.
        """
        fresh = []
        for event in events:
            if self.is_stale(event):
                event.message.acked = True
                consumer._unacked_messages.discard(event.message)
            else:
                fresh.append(event)
        return fresh

    def lost(self, tp: Any, position: int, highwater: int) -> LostLog | None:
        """Why `tp`'s log was lost, or None; remembers `highwater` for the next check."""
        highest = self._highest.get(tp, highwater)
        self._highest[tp] = max(highest, highwater)
        if highwater >= position and highwater >= highest:
            return None
        self._highest[tp] = highwater
        return LostLog(
            f"{tp.topic}[{tp.partition}] ends at offset {highwater}, before this worker's "
            f"position {position} or the {highest} it held before: the broker lost records "
            f"it had confirmed (restarted without its storage?); "
            f"FRAUDSTREAM_OFFSET_RESET_POLICY={self.settings.offset_reset_policy}",
            old_end=max(position, highest),
        )

    async def follow(self, consumer: Any, tp: Any, error: LostLog) -> None:
        """Apply the policy to `tp` (see the module docstring)."""
        self.metrics.observe_lost_log(tp.partition)
        if self.settings.offset_reset_policy == "stop":
            self._stop(error)
        log.critical("%s: reading the partition again from its start", error)
        self._rereading[tp] = time.monotonic() + REREAD_AFTER_REBALANCE_S
        in_hand = [message for message in consumer._unacked_messages if message.tp == tp]
        self._stale.update(in_hand)
        newest = max((message.offset for message in in_hand),
                     default=self._newest_taken.get(tp, -1))  # fmt: skip
        self._leftovers[tp] = Leftovers(after=newest, below=error.old_end)
        self._reread_after_faust_seeks(consumer)
        await read_again_from_start(consumer, tp)

    def after_rebalance(self, assigned: set[Any]) -> None:
        """Forget what belongs to partitions no longer owned, and re-reads that are over."""
        now = time.monotonic()
        self._rereading = {tp: until for tp, until in self._rereading.items() if until >= now}
        self._highest = {tp: mark for tp, mark in self._highest.items() if tp in assigned}

    def _reread_after_faust_seeks(self, consumer: Any) -> None:
        """Put re-read partitions back to their start each time Faust seeks to the committed
        offsets: after every rebalance (after `on_rebalance_complete`, so a handler of that
        signal is too early) and again and again while one is in progress. The restarted
        broker may hold a committed offset from the lost reading (a commit racing the
        detection): a trial lost the 132 records below one."""
        if self._faust_seeks_followed:
            return
        self._faust_seeks_followed = True
        seek_to_committed = consumer.perform_seek

        async def perform_seek() -> None:
            await seek_to_committed()
            now = time.monotonic()
            for tp, until in list(self._rereading.items()):
                if until >= now and tp in consumer.assignment():
                    await read_again_from_start(consumer, tp)

        consumer.perform_seek = perform_seek


async def read_again_from_start(consumer: Any, tp: Any) -> None:
    """Seek `tp` to offset 0, forgetting Faust's ack and commit bookkeeping for it as Faust
    does on a revoke, so its commits follow the new reading instead of the lost offsets."""
    for bookkeeping in (consumer._gap, consumer._acked, consumer._acked_index,
                        consumer._read_offset, consumer._committed_offset):  # fmt: skip
        bookkeeping.pop(tp, None)
    await consumer.seek(tp, 0)
