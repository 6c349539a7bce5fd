"""Overlapped delivery acks a batch only once it and every batch before it are confirmed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from fraudstream.stream.worker.delivery import OverlappedDelivery


class Recorder:
    def __init__(self) -> None:
        self.acked: list[str] = []
        self.delivery_seconds: list[float] = []

    async def ack(self, events: Sequence[str]) -> None:
        self.acked.extend(events)


def test_a_later_batch_confirmed_first_waits_for_the_earlier_one() -> None:
    async def run() -> None:
        recorder = Recorder()
        delivery = OverlappedDelivery(recorder.ack, recorder.delivery_seconds.append)
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        await delivery.submit(["a1", "a2"], [first])
        await delivery.submit(["b1"], [second])
        second.set_result(None)
        await asyncio.sleep(0.01)
        assert recorder.acked == [], "b must not be acked while a is unconfirmed"
        first.set_result(None)
        await delivery.drain()
        assert recorder.acked == ["a1", "a2", "b1"]
        assert len(recorder.delivery_seconds) == 2 and delivery.in_flight == 0

    asyncio.run(run())


def test_a_failed_delivery_acks_nothing_from_then_on_and_raises() -> None:
    async def run() -> None:
        recorder = Recorder()
        delivery = OverlappedDelivery(recorder.ack, recorder.delivery_seconds.append)
        loop = asyncio.get_running_loop()
        ok, broken, later = loop.create_future(), loop.create_future(), loop.create_future()
        await delivery.submit(["a"], [ok])
        await delivery.submit(["b"], [broken])
        await delivery.submit(["c"], [later])
        ok.set_result(None)
        broken.set_exception(ConnectionError("broker gone"))
        later.set_result(None)
        with pytest.raises(ConnectionError, match="broker gone"):
            await delivery.drain()  # b's own failure
        with pytest.raises(ConnectionError, match="broker gone"):
            await delivery.drain()  # c, confirmed, still refuses to ack past b
        assert recorder.acked == ["a"] and delivery.in_flight == 0

    asyncio.run(run())


def test_submit_waits_for_the_oldest_batch_beyond_the_in_flight_limit() -> None:
    async def run() -> None:
        recorder = Recorder()
        delivery = OverlappedDelivery(recorder.ack, recorder.delivery_seconds.append, 2)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(3)]
        await delivery.submit(["a"], [futures[0]])
        await delivery.submit(["b"], [futures[1]])
        third = asyncio.ensure_future(delivery.submit(["c"], [futures[2]]))
        await asyncio.sleep(0.01)
        assert not third.done(), "three batches in flight with a limit of two"
        futures[0].set_result(None)
        await asyncio.wait_for(third, 1.0)
        assert recorder.acked == ["a"] and delivery.in_flight == 2
        futures[1].set_result(None), futures[2].set_result(None)
        await delivery.drain()
        assert recorder.acked == ["a", "b", "c"]

    asyncio.run(run())
