"""Overlapped delivery acks a batch only once it and every batch before it are confirmed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaProducer

from fraudstream.stream.tools.services import EmbeddedBroker
from fraudstream.stream.worker import delivery as delivery_module
from fraudstream.stream.worker.delivery import (
    DeliveryFailed,
    Handed,
    Outgoing,
    OverlappedDelivery,
    batch_hand_over,
    confirm_with_retries,
    failed_confirmation,
)
from fraudstream.stream.worker.faust_app import key_partition

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
    """Refuses each record's first `refusals` sends, then confirms; counts every send.

    Like the worker's hand-over, it confirms a hand-over's records together: one refused
    record fails its whole batch.
    """

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.sends: list[bytes] = []

    async def hand_over(self, records: Sequence[Outgoing]) -> Handed:
        self.sends += [record.value for record in records]
        if any(self.sends.count(record.value) <= self.refusals for record in records):
            done = failed_confirmation(ConnectionError("leader moved"))
        else:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
        return [(record, done) for record in records]


@pytest.fixture
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery_module, "FIRST_RETRY_PAUSE_S", 0.001)


def test_refused_records_are_sent_again_until_confirmed(no_pause: None) -> None:
    async def run() -> list[bytes]:
        broker = FlakyBroker(refusals=2)
        records = [Outgoing("decisions", None, b"1"), Outgoing("decisions", None, b"2")]
        await confirm_with_retries(broker.hand_over, await broker.hand_over(records), 10.0)
        return broker.sends

    assert sorted(asyncio.run(run())) == [b"1", b"1", b"1", b"2", b"2", b"2"]


def test_a_record_still_refused_at_the_deadline_fails_the_batch_unacked(no_pause: None) -> None:
    async def run() -> None:
        broker = FlakyBroker(refusals=10**6)
        recorder = Recorder()
        delivery = OverlappedDelivery(
            recorder.ack, recorder.delivery_seconds.append,
            confirm=lambda handed: confirm_with_retries(broker.hand_over, handed, 0.05),
        )  # fmt: skip
        await delivery.submit(["a"], await broker.hand_over([RECORD]))
        with pytest.raises(DeliveryFailed, match="unconfirmed after 0.05 s.*leader moved"):
            await delivery.drain()
        assert recorder.acked == [] and len(broker.sends) > 1

    asyncio.run(run())


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of every record in `topic`, in partition order."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        consumer_timeout_ms=5000, group_id=None,
    )  # fmt: skip
    records = []
    try:
        for message in consumer:
            records.append((message.partition, message.key, message.value))
            if len(records) == expected:
                break
    finally:
        consumer.close()
    return records


@pytest.mark.integration
def test_the_batch_hand_over_delivers_every_record_in_order_where_its_key_belongs(
    broker: EmbeddedBroker,
) -> None:
    """Real Tansu: records go one broker batch per partition, a full batch continues in the
    next (a record larger than a batch goes alone), each record shares its batch's
    confirmation, and the order per partition holds."""
    topic = "delivery.batch-hand-over"
    broker.create_topics([topic], 2)
    records = [
        Outgoing(topic, f"card-{n % 7}".encode(), f"{n:04d}".encode() + b"x" * 300)
        for n in range(60)
    ]
    records[30] = Outgoing(topic, b"card-2", b"0030" + b"y" * 10_000)  # larger than a batch

    async def run() -> Handed:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, max_batch_size=4096)
        await producer.start()
        try:
            handed = await batch_hand_over(lambda: producer, key_partition)(records)
            await confirm_with_retries(lambda again: pytest.fail("nothing refused"), handed, 10.0)
            return handed
        finally:
            await producer.stop()

    handed = asyncio.run(run())
    assert sorted(record.value for record, _ in handed) == sorted(r.value for r in records)
    batches = {id(confirmation) for _, confirmation in handed}
    assert 2 < len(batches) < len(records), "records share confirmations; full batches split"

    stored = _consume_all(broker.bootstrap, topic, len(records))
    assert len(stored) == len(records)
    for partition in (0, 1):
        sent = [r for r in records if key_partition(r.key, [0, 1], [0, 1]) == partition]
        assert [(key, value) for p, key, value in stored if p == partition] == [
            (r.key, r.value) for r in sent
        ]


def test_a_producer_not_started_gives_failed_confirmations_and_nothing_is_asked_for_none() -> None:
    def not_started() -> AIOKafkaProducer:
        raise RuntimeError("Producer service not yet started")

    async def run() -> tuple[Handed, list[BaseException | None]]:
        hand_over = batch_hand_over(not_started, key_partition)
        nothing = await hand_over([])
        handed = await hand_over([RECORD, RECORD])
        results = await asyncio.gather(*(done for _, done in handed), return_exceptions=True)
        return nothing, [r if isinstance(r, BaseException) else None for r in results]

    nothing, errors = asyncio.run(run())
    assert nothing == []
    assert [str(error) for error in errors] == ["Producer service not yet started"] * 2


@pytest.mark.integration
def test_a_producer_that_refuses_at_hand_over_gives_failed_confirmations_not_an_error(
    broker: EmbeddedBroker,
) -> None:
    """A closed producer refuses `send_batch`: the records come back unconfirmed (to be
    sent again by `confirm_with_retries`), the hand-over itself does not raise."""
    topic = "delivery.refused-hand-over"
    broker.create_topics([topic], 1)

    async def run() -> list[BaseException | None]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        await producer.partitions_for(topic)  # metadata known, then the producer goes
        await producer.stop()
        handed = await batch_hand_over(lambda: producer, key_partition)(
            [Outgoing(topic, b"k", b"v1"), Outgoing(topic, b"k", b"v2")]
        )
        results = await asyncio.gather(*(done for _, done in handed), return_exceptions=True)
        return [result if isinstance(result, BaseException) else None for result in results]

    errors = asyncio.run(run())
    assert len(errors) == 2 and all(error is not None for error in errors)
