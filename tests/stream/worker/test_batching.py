"""The coalescer decides everything queued since its last batch as one batch, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from fraudstream.stream.worker.batching import Coalescer
from fraudstream.stream.worker.delivery import Outgoing, OverlappedDelivery


def batches_taken(max_batch: int, first: list[int], later: list[list[int]]) -> list[list[int]]:
    """The batches a coalescer makes of `later` takes queued while `first` is decided."""

    async def run() -> list[list[int]]:
        batches: list[list[int]] = []
        release = asyncio.Event()

        async def process(batch: list[int]) -> None:
            batches.append(batch)
            await release.wait()  # the first batch is slow: the rest queue up meanwhile

        coalescer = Coalescer(process, max_batch=max_batch)
        await coalescer.put(first)
        await asyncio.sleep(0.01)
        for take in later:
            await coalescer.put(take)
        release.set()
        await coalescer.close()
        return batches

    return asyncio.run(run())


def test_items_queued_during_a_batch_are_decided_together_in_order() -> None:
    assert batches_taken(100, [1, 2], [[3], [4, 5], [6]]) == [[1, 2], [3, 4, 5, 6]]


def test_a_batch_stops_growing_at_max_batch() -> None:
    assert batches_taken(3, [0], [[1, 2], [3, 4], [5]]) == [[0], [1, 2, 3, 4], [5]]


def test_a_failed_batch_raises_in_the_next_put_and_takes_nothing_more() -> None:
    async def run() -> list[list[str]]:
        seen: list[list[str]] = []

        async def process(batch: list[str]) -> None:
            seen.append(batch)
            await asyncio.sleep(0.005)
            raise ConnectionError("redis and broker both gone")

        coalescer = Coalescer(process, max_batch=10, max_queued=1)
        await coalescer.put(["a"])
        await asyncio.sleep(0.02)
        with pytest.raises(ConnectionError, match="both gone"):
            await coalescer.put(["b"])
        with pytest.raises(ConnectionError):
            await coalescer.close()
        return seen

    assert asyncio.run(run()) == [["a"]]


def test_a_batch_that_fails_to_be_decided_is_never_acked_nor_anything_taken_after_it() -> None:
    """The score_transactions agent's wiring: decide, hand over, ack once confirmed."""

    async def run() -> list[str]:
        acked: list[str] = []

        async def ack(events: Sequence[str]) -> None:
            acked.extend(events)

        delivery = OverlappedDelivery(ack, lambda seconds: None)

        async def decide_and_hand_over(events: list[str]) -> None:
            if "bad" in events:
                raise RuntimeError("deciding failed")
            confirmed = asyncio.get_running_loop().create_future()
            confirmed.set_result(None)
            await delivery.submit(events, [(Outgoing("decisions", None, b"{}"), confirmed)])

        batches = Coalescer(decide_and_hand_over, max_batch=1)
        with pytest.raises(RuntimeError, match="deciding failed"):  # at a put or at close
            for take in (["a"], ["bad"], ["c"], ["d"]):
                await batches.put(take)
            await batches.close()
        with pytest.raises(RuntimeError, match="deciding failed"):
            await batches.close()  # the agent's `finally`: still refuses to go on
        await delivery.drain()
        return acked

    assert asyncio.run(run()) == ["a"]


def test_a_full_queue_makes_the_producer_wait() -> None:
    async def run() -> None:
        gate = asyncio.Event()

        async def process(batch: list[int]) -> None:
            await gate.wait()

        coalescer = Coalescer(process, max_batch=1, max_queued=1)
        await coalescer.put([1])  # taken by the task, which then blocks
        await asyncio.sleep(0.01)
        await coalescer.put([2])  # fills the queue
        blocked = asyncio.ensure_future(coalescer.put([3]))
        await asyncio.sleep(0.01)
        assert not blocked.done()
        gate.set()
        await asyncio.wait_for(blocked, 1.0)
        await coalescer.close()

    asyncio.run(run())
