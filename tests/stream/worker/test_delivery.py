"""Overlapped delivery acks a batch only once it and every batch before it are confirmed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from fraudstream.stream.worker import delivery as delivery_module
from fraudstream.stream.worker.delivery import (
    DeliveryFailed,
    Outgoing,
    OverlappedDelivery,
    confirm_with_retries,
    send_all,
)

RECORD = Outgoing("decisions", b"card", b"{}")


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
        await delivery.submit(["a1", "a2"], [(RECORD, first)])
        await delivery.submit(["b1"], [(RECORD, second)])
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
        await delivery.submit(["a"], [(RECORD, ok)])
        await delivery.submit(["b"], [(RECORD, broken)])
        await delivery.submit(["c"], [(RECORD, later)])
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
        await delivery.submit(["a"], [(RECORD, futures[0])])
        await delivery.submit(["b"], [(RECORD, futures[1])])
        third = asyncio.ensure_future(delivery.submit(["c"], [(RECORD, futures[2])]))
        await asyncio.sleep(0.01)
        assert not third.done(), "three batches in flight with a limit of two"
        futures[0].set_result(None)
        await asyncio.wait_for(third, 1.0)
        assert recorder.acked == ["a"] and delivery.in_flight == 2
        futures[1].set_result(None), futures[2].set_result(None)
        await delivery.drain()
        assert recorder.acked == ["a", "b", "c"]

    asyncio.run(run())


class FlakyBroker:
    """Refuses each record's first `refusals` sends, then confirms; counts every send."""

    def __init__(self, refusals: int, at_hand_over: bool = False) -> None:
        self.refusals, self.at_hand_over = refusals, at_hand_over
        self.sends: list[bytes] = []

    async def send(self, record: Outgoing) -> asyncio.Future[None]:
        self.sends.append(record.value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.sends.count(record.value) <= self.refusals:
            if self.at_hand_over:
                raise ConnectionError("not connected")
            done.set_exception(ConnectionError("leader moved"))
        else:
            done.set_result(None)
        return done


@pytest.fixture
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery_module, "FIRST_RETRY_PAUSE_S", 0.001)


@pytest.mark.parametrize("at_hand_over", [False, True])
def test_refused_records_are_sent_again_until_confirmed(no_pause: None, at_hand_over: bool) -> None:
    async def run() -> list[bytes]:
        broker = FlakyBroker(refusals=2, at_hand_over=at_hand_over)
        records = [Outgoing("decisions", None, b"1"), Outgoing("decisions", None, b"2")]
        await confirm_with_retries(broker.send, await send_all(broker.send, records), 10.0)
        return broker.sends

    assert sorted(asyncio.run(run())) == [b"1", b"1", b"1", b"2", b"2", b"2"]


def test_a_record_still_refused_at_the_deadline_fails_the_batch_unacked(no_pause: None) -> None:
    async def run() -> None:
        broker = FlakyBroker(refusals=10**6)
        recorder = Recorder()
        delivery = OverlappedDelivery(
            recorder.ack, recorder.delivery_seconds.append,
            confirm=lambda handed: confirm_with_retries(broker.send, handed, 0.05),
        )  # fmt: skip
        await delivery.submit(["a"], await send_all(broker.send, [RECORD]))
        with pytest.raises(DeliveryFailed, match="unconfirmed after 0.05 s.*leader moved"):
            await delivery.drain()
        assert recorder.acked == [] and len(broker.sends) > 1

    asyncio.run(run())
