"""Natural batching: while one batch is being decided, the next one gathers.

Faust's `take` buffer stops filling while the agent body runs, and a short `within` keeps
the batches small (a handful of records at 600/s), so a worker behind its input kept
paying the per-batch cost (two Redis round trips, two model calls) on tiny batches
and never caught up (issue 9). `Coalescer` takes that wait off the agent: the agent only
queues what Faust hands it, and one task decides everything queued since its last batch
as one batch (up to `max_batch` records). Idle, a record waits only for `within`; behind,
batches grow by themselves and the fixed costs are shared.

Order is kept (one task, first in first out) and nothing is acked here: the `process`
callable owns delivery and acks (see delivery.py). A failure in `process` stops the task;
the next `put` (or `close`) raises it in the agent, which then acks nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

#: Take-batches that may wait in the queue before the agent itself waits (back-pressure).
MAX_QUEUED_TAKES = 8


class Coalescer(Generic[T]):
    """Queue items as they come; `process` each time everything queued, in order."""

    def __init__(
        self,
        process: Callable[[list[T]], Awaitable[None]],
        max_batch: int,
        max_queued: int = MAX_QUEUED_TAKES,
    ) -> None:
        self._process = process
        self.max_batch = max_batch
        self._queue: asyncio.Queue[Sequence[T]] = asyncio.Queue(max_queued)
        self._task: asyncio.Task[None] | None = None

    async def put(self, items: Sequence[T]) -> None:
        """Queue `items`; waits while the queue is full; raises if processing failed."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        self._raise_if_failed(self._task)
        if not self._queue.full():  # the usual case: no task and no wait for a put
            self._queue.put_nowait(items)
            return
        put = asyncio.ensure_future(self._queue.put(items))
        await asyncio.wait([put, self._task], return_when=asyncio.FIRST_COMPLETED)
        put.cancel()  # a no-op once it has put; else the task failed and raises next
        self._raise_if_failed(self._task)

    async def close(self) -> None:
        """Process what is queued, then stop; raises what stopped the processing, if anything."""
        if self._task is None:
            return
        if not self._task.done():
            emptied = asyncio.ensure_future(self._queue.join())
            await asyncio.wait([emptied, self._task], return_when=asyncio.FIRST_COMPLETED)
            emptied.cancel()
        self._raise_if_failed(self._task)
        self._task.cancel()

    @staticmethod
    def _raise_if_failed(task: asyncio.Task[None]) -> None:
        """Raise what stopped `task`, if it stopped: it only ends by failing."""
        if task.done():
            task.result()

    async def _run(self) -> None:
        while True:
            batch = list(await self._queue.get())
            taken = 1
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.extend(self._queue.get_nowait())
                taken += 1
            try:
                await self._process(batch)
            finally:
                for _ in range(taken):
                    self._queue.task_done()
