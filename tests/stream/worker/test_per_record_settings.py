"""The two settings Faust read for every consumed record are read once, same behaviour."""

from __future__ import annotations

import asyncio

import faust
import pytest

from fraudstream.stream.worker.faust_app import read_per_record_settings_once
from tests.support.faust_events import consumer_message, offline_app


def new_app() -> faust.App:
    app = offline_app("per-record-settings-test")
    read_per_record_settings_once(app)
    return app


def test_events_are_made_as_faust_makes_them() -> None:
    app = new_app()
    message = consumer_message(7, b"v", key=b"k")
    event = app.create_event(b"k", b"v", [], message)
    faust_made = faust.App.create_event(app, b"k", b"v", [], message)  # Faust's own method
    assert type(event) is type(faust_made) is app.conf.Event
    assert (event.app, event.key, event.value, event.headers, event.message) == (
        faust_made.app, faust_made.key, faust_made.value, faust_made.headers, message,
    )  # fmt: skip


def test_a_small_producer_buffer_is_not_waited_for_and_a_full_one_still_is() -> None:
    buffer = new_app().producer.buffer

    async def check() -> None:
        await asyncio.wait_for(buffer.wait_until_ebb(), timeout=1.0)  # empty: returns at once
        for _ in range(buffer.max_messages + 1):
            buffer.pending.put_nowait(object())
        # Over the limit: Faust's own wait, which flushes (and cannot, not running).
        with pytest.raises(RuntimeError, match="Producer not Running"):
            await buffer.wait_until_ebb()

    asyncio.run(check())
