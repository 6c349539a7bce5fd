"""Worker and baselines run on uvloop: their own event loop and Faust's consumer thread's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop
from mode.threads import ServiceThread

from fraudstream.stream.worker.faust_app import consume_as_the_worker


@pytest.fixture
def consuming_as_the_worker() -> Iterator[None]:
    consume_as_the_worker(fetch_max_wait_ms=10)
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(None)  # the rest of the test run keeps asyncio's own


@pytest.mark.usefixtures("consuming_as_the_worker")
def test_the_worker_and_faust_consumer_thread_loops_are_uvloop_ones() -> None:
    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop.run_until_complete(running_loop()), uvloop.Loop)
    finally:
        loop.close()
    # mode's ServiceThread (Faust's consumer thread) makes its loop with new_event_loop.
    consumer_thread = ServiceThread()
    try:
        assert isinstance(consumer_thread.thread_loop, uvloop.Loop)
    finally:
        consumer_thread.thread_loop.close()
