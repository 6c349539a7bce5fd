"""A batch is what the stream had queued, at most `max_batch`, with no clock and no ack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import faust
import pytest

from fraudstream.stream.worker.faust_app import natural_batches

#: Enough turns of the event loop for the stream to take a few queued records, and far
#: fewer than any clock-driven take would need: no wall time is waited for anywhere here.
LOOP_TURNS = 50


async def turns(count: int = LOOP_TURNS) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


Scenario = Callable[[faust.ChannelT, list[list[int]]], Awaitable[None]]


async def run_batches(max_batch: int, scenario: Scenario) -> tuple[list[list[int]], bool]:
    """Run `scenario` against a Faust stream read with `natural_batches`; the batches' values
    and the stream's `enable_acks` after the loop ended."""
    app = faust.App("natural-batches-test", broker="kafka://127.0.0.1:1", store="memory://")
    app.flow_control.resume()  # Faust's flow starts suspended until partitions are assigned
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
