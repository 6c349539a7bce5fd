"""Faust's aiokafka consumer runs on the app's event loop, not on a thread of its own, and
Faust's calls into it run at once (stream/worker/faust_app.py `consume_on_the_app_loop`),
against the real broker."""

from __future__ import annotations

import asyncio
import threading
import uuid

import faust
from faust.types import TP

from fraudstream.stream.tools.services import EmbeddedBroker
from fraudstream.stream.worker.faust_app import ConsumerOnTheAppLoop, consume_on_the_app_loop
from tests.support.faust_events import offline_app


def test_the_consumer_starts_answers_and_stops_on_the_app_loop(broker: EmbeddedBroker) -> None:
    topic = f"on-loop-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic], partitions=1)
    consume_on_the_app_loop()

    async def lifecycle() -> tuple[int | None, int, bool]:
        app = faust.App(f"on-loop-{uuid.uuid4().hex[:8]}", broker=f"kafka://{broker.bootstrap}",
                        store="memory://")  # fmt: skip
        consumer = app.consumer._thread
        assert isinstance(consumer, ConsumerOnTheAppLoop)
        assert consumer.thread_loop is asyncio.get_running_loop()
        bystander = asyncio.ensure_future(asyncio.sleep(3600))  # an app task of the same loop
        threads = threading.active_count()
        await consumer.start()
        try:
            # a call as Faust makes them (`call_thread`), answered on this loop
            ends = await consumer.earliest_offsets(TP(topic, 0))
            started_threads = threading.active_count() - threads
        finally:
            await consumer.stop()
        survived = not bystander.done()
        bystander.cancel()
        return ends.get(TP(topic, 0)), started_threads, survived and consumer._serving.done()

    earliest, started_threads, stopped_cleanly = asyncio.run(lifecycle())
    assert earliest == 0
    assert started_threads == 0
    assert stopped_cleanly  # its service ended and left the app's own tasks alone


def test_an_app_made_after_it_gets_the_consumer_on_its_loop() -> None:
    consume_on_the_app_loop()
    consume_on_the_app_loop()  # twice is once
    app = offline_app("on-loop-offline")
    assert isinstance(app.consumer._thread, ConsumerOnTheAppLoop)
    assert app.consumer._thread.thread_loop is app.consumer.loop
