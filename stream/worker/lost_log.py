"""Never skip silently what a broker that lost its log holds now (issue 10 §3).

A broker restarted without its storage (the embedded Tansu keeps everything in memory)
starts each partition again at offset 0, and it may have the group's old committed offset
again too (Faust commits what it acked before the restart). Left alone, a worker waits at
its old position while new records fill the offsets below it, and then skips them.

`LostLogWatch` notices a partition's log ending before the worker's position, or its
high-water mark going down, counts it, logs it loudly and follows
`FRAUDSTREAM_OFFSET_RESET_POLICY`: `earliest` reads the partition again from its start
(what the broker holds is decided, some of it twice), `stop` stops the worker unacked. The
rejoin that follows a broker restart puts the consumer back at the committed offset, so a
partition being re-read is sought to its start again after each rebalance for a while; and
events taken from the lost log but acked after the reset must not be acked (their offsets
would be committed over the new log's unread ones): the agent acks only what
`release_stale` gives back. The stale ones are released instead: marked done for Faust
without entering its commit bookkeeping, because Faust waits for every message it handed
out to be acked before it finishes a rebalance or a stop (`wait_empty`), and would wait for
them forever (it did in CI: the rejoin after the restart never completed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from fraudstream.stream.settings import Settings
from fraudstream.stream.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

#: How long after a lost log a rebalance still puts a re-read partition back to its start.
REREAD_AFTER_REBALANCE_S = 60.0


class LostLog(RuntimeError):
    """A partition's log ends before the worker's position: the broker lost records."""


class LostLogWatch:
    """Per owned partition: the highest high-water mark seen, and re-reads in progress.

    `stop(error)` is what the `stop` policy calls (it does not return).
    """

    def __init__(self, settings: Settings, metrics: WorkerMetrics, stop: Any) -> None:
        self.settings, self.metrics, self._stop = settings, metrics, stop
        self._highest: dict[Any, int] = {}
        self._rereading: dict[Any, float] = {}
        self._newest_taken: dict[Any, float] = {}
        self._lost_until: dict[Any, float] = {}

    def taken(self, events: Sequence[Any]) -> None:
        """Note the newest broker timestamp taken from each partition (see `is_stale`)."""
        newest = self._newest_taken
        for event in events:
            message = event.message
            if message.timestamp > newest.get(message.tp, float("-inf")):
                newest[message.tp] = message.timestamp

    def is_stale(self, event: Any) -> bool:
        """Whether `event` was taken from a log since lost: it was produced no later than
        the newest record taken before the reset (a later one comes from the new log)."""
        message = event.message
        lost_until = self._lost_until.get(message.tp)
        return lost_until is not None and message.timestamp <= lost_until

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
            f"FRAUDSTREAM_OFFSET_RESET_POLICY={self.settings.offset_reset_policy}"
        )

    async def follow(self, consumer: Any, tp: Any, error: LostLog) -> None:
        """Apply the policy to `tp` (see the module docstring)."""
        self.metrics.observe_lost_log(tp.partition)
        if self.settings.offset_reset_policy == "stop":
            self._stop(error)
        log.critical("%s: reading the partition again from its start", error)
        self._rereading[tp] = time.monotonic() + REREAD_AFTER_REBALANCE_S
        self._lost_until[tp] = self._newest_taken.get(tp, float("-inf"))
        await read_again_from_start(consumer, tp)

    async def after_rebalance(self, consumer: Any, assigned: set[Any]) -> None:
        """Put re-read partitions back to their start: the rejoin sought the old offset."""
        now = time.monotonic()
        for tp, until in list(self._rereading.items()):
            if until < now:
                del self._rereading[tp]
                self._lost_until.pop(tp, None)
            elif tp in assigned:
                await read_again_from_start(consumer, tp)
        self._highest = {tp: mark for tp, mark in self._highest.items() if tp in assigned}


async def read_again_from_start(consumer: Any, tp: Any) -> None:
    """Seek `tp` to offset 0, forgetting Faust's ack and commit bookkeeping for it as Faust
    does on a revoke, so its commits follow the new reading instead of the lost offsets."""
    for bookkeeping in (consumer._gap, consumer._acked, consumer._acked_index,
                        consumer._read_offset, consumer._committed_offset):  # fmt: skip
        bookkeeping.pop(tp, None)
    await consumer.seek(tp, 0)
