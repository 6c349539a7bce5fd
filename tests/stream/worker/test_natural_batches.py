"""A batch is what the stream had queued, at most `max_batch`, with no clock and no ack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import faust
import pytest

from fraudstream.stream.worker.faust_app import _take_queued, natural_batches
from tests.support.faust_events import consumer_message, offline_app

#: Enough turns of the event loop for the stream to take a few queued records, and far
#: fewer than any clock-driven take would need: no wall time is waited for anywhere here.
LOOP_TURNS = 50


async def turns(count: int = LOOP_TURNS) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def flowing_app() -> faust.App:
    """An app that reaches no broker, its flow resumed (Faust starts it suspended until
    partitions are assigned)."""
    app = offline_app("natural-batches-test")
    app.flow_control.resume()
    return app


Scenario = Callable[[faust.ChannelT, list[list[int]]], Awaitable[None]]


async def run_batches(max_batch: int, scenario: Scenario) -> tuple[list[list[int]], bool]:
    """Run `scenario` against a Faust stream read with `natural_batches`; the batches' values
    and the stream's `enable_acks` after the loop ended."""
    app = flowing_app()
    channel = app.channel(maxsize=1000)
    stream = channel.stream()
    batches: list[list[int]] = []

    async def take(batched: AsyncIterator[list[faust.EventT]]) -> None:
        async for events in batched:
            assert stream.enable_acks is False  # the caller acks, as with noack_take
            batches.append([int(event.value) for event in events])

    async with stream:
        taking = asyncio.ensure_future(take(natural_batches(stream, max_batch)))
        await turns()
        await scenario(channel, batches)
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking
    return batches, stream.enable_acks


def test_records_queued_together_are_one_batch_and_a_later_record_the_next() -> None:
    async def scenario(channel: faust.ChannelT, got: list[list[int]]) -> None:
        for value in range(4):  # sending does not turn the loop: all four are queued together
            await channel.send(value=value)
        await turns()
        await channel.send(value=4)
        await turns()

    batches, acks_after = asyncio.run(run_batches(10, scenario))
    assert batches == [[0, 1, 2, 3], [4]]
    assert acks_after is True  # restored when the loop ends


def test_no_batch_exceeds_max_batch_and_nothing_is_lost_or_reordered() -> None:
    async def scenario(channel: faust.ChannelT, got: list[list[int]]) -> None:
        for value in range(8):
            await channel.send(value=value)
        await turns(200)

    batches, _ = asyncio.run(run_batches(3, scenario))
    assert batches == [[0, 1, 2], [3, 4, 5], [6, 7]]


def test_an_idle_stream_hands_over_nothing_until_a_record_comes() -> None:
    async def scenario(channel: faust.ChannelT, got: list[list[int]]) -> None:
        await turns(500)
        assert got == []
        await channel.send(value=7)
        await turns()

    batches, _ = asyncio.run(run_batches(10, scenario))
    assert batches == [[7]]


@pytest.mark.parametrize("ending", ["stop", "crash"])
def test_a_stream_that_stops_or_crashes_ends_the_batches_while_idle(ending: str) -> None:
    async def main() -> list[list[int]]:
        app = flowing_app()
        stream = app.channel(maxsize=100).stream()
        batches: list[list[int]] = []

        async def take() -> None:
            async for events in natural_batches(stream, 10):
                batches.append([int(event.value) for event in events])

        async with stream:
            taking = asyncio.ensure_future(take())
            await stream.channel.send(value=1)
            await turns()
            assert not taking.done()  # idle, waiting for the next record
            if ending == "stop":
                await stream.stop()
            else:
                await stream.crash(RuntimeError("a processor broke"))
            await turns()
            assert taking.done() and taking.exception() is None
            return batches

    assert asyncio.run(main()) == [[1]]


def topic_event(app: faust.App, offset: int, generation_id: int) -> faust.EventT:
    """An event of the acked topic `txns`, as Faust's Kafka consumer and conductor queue it."""
    message = consumer_message(offset, str(offset).encode(), generation_id=generation_id)
    message.refcount = 1  # one subscribed stream
    return app.create_event(None, message.value, [], message)


async def take_queued_after_first(
    queued_generations: list[int], max_batch: int, *, flow_active: bool = True
) -> tuple[list[int], list[faust.EventT], faust.App, Any]:
    """Queue events of offsets 1.. (their generations given) behind a taken event of offset
    0, and take them with `_take_queued`: (batched offsets, queued events, app, stream)."""
    app = flowing_app()
    app.topics.acking_topics.add("txns")
    stream = app.channel(maxsize=100).stream()
    queued = [topic_event(app, offset, generation)
              for offset, generation in enumerate(queued_generations, start=1)]  # fmt: skip
    for event in queued:
        stream.channel.queue.put_nowait(event)
    if not flow_active:
        app.flow_control.suspend()
    events = [topic_event(app, 0, app.consumer_generation_id)]
    await _take_queued(stream, events, max_batch)
    return [event.message.offset for event in events], queued, app, stream


def test_queued_events_are_taken_in_order_and_tracked_as_unacked() -> None:
    batched, queued, app, stream = asyncio.run(take_queued_after_first([0, 0, 0], 10))
    assert batched == [0, 1, 2, 3]
    assert stream.channel.queue.empty()
    # A rebalance waits for these acks: each message must be known as unacked.
    assert {event.message for event in queued} <= app.consumer.unacked
    assert all(event.message.tracked and not event.message.acked for event in queued)
    assert stream.events_total == 3


def test_taking_stops_at_max_batch_and_leaves_the_rest_queued() -> None:
    batched, _, _, stream = asyncio.run(take_queued_after_first([0, 0, 0, 0], 3))
    assert batched == [0, 1, 2]
    assert stream.channel.queue.qsize() == 2


def test_an_event_of_an_earlier_consumer_generation_is_acked_not_batched() -> None:
    """A rebalance since it was fetched: its partition may have another owner now."""
    batched, queued, app, _ = asyncio.run(take_queued_after_first([0, -1, 0], 10))
    assert batched == [0, 1, 3]
    stale = queued[1].message
    assert stale.acked and stale.refcount == 0 and stale not in app.consumer.unacked


def test_events_queued_while_the_flow_is_suspended_are_acked_not_batched() -> None:
    batched, queued, _, _ = asyncio.run(take_queued_after_first([0, 0], 10, flow_active=False))
    assert batched == [0]
    assert all(event.message.acked for event in queued)


def test_an_error_thrown_into_the_queue_is_left_for_the_stream_to_raise() -> None:
    async def take() -> tuple[list[int], int]:
        app = flowing_app()
        stream = app.channel(maxsize=100).stream()
        stream.channel.queue.put_nowait(topic_event(app, 1, 0))
        stream.channel.queue._errors.append(RuntimeError("broken decoder"))
        events = [topic_event(app, 0, 0)]
        await _take_queued(stream, events, 10)
        return [event.message.offset for event in events], len(stream.channel.queue._errors)

    assert asyncio.run(take()) == ([0], 1)


def test_a_queued_value_that_is_no_event_fails_loudly_without_showing_it() -> None:
    async def take() -> None:
        app = flowing_app()
        stream = app.channel(maxsize=100).stream()
        stream.channel.queue.put_nowait(b"card 4111111111111111")
        await _take_queued(stream, [topic_event(app, 0, 0)], 10)

    with pytest.raises(RuntimeError, match="held a bytes") as raised:
        asyncio.run(take())
    assert "4111" not in str(raised.value)
