"""A raw topic decodes records as Faust's own bytes schema did, without its codec registry
(stream/worker/faust_app.py `RawBytes`)."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import EventT

from fraudstream.stream.worker.faust_app import raw_topic
from tests.support.faust_events import consumer_message, offline_app


@pytest.mark.parametrize(
    ("key", "value"),
    [(b"card-1", b'{"txn_id": "t1"}'), (None, b"\xff not even UTF-8"), (b"card-2", None)],
    ids=["record", "no key, bytes that are not text", "tombstone"],
)
def test_events_carry_the_key_and_value_as_faust_bytes_schema_gave_them(
    key: bytes | None, value: bytes | None
) -> None:
    app = offline_app("raw-topic-test")
    topic = raw_topic(app, "txns")
    faust_bytes_topic = app.topic("txns", key_type=bytes, value_type=bytes,
                                  value_serializer="raw")  # fmt: skip
    message = consumer_message(3, value, key=key)

    async def both() -> tuple[EventT, EventT]:
        return await topic.decode(message), await faust_bytes_topic.decode(message)

    event, faust_event = asyncio.run(both())
    assert type(event) is type(faust_event)
    assert (event.key, event.value, event.headers, event.message) == (
        faust_event.key, faust_event.value, faust_event.headers, message,
    )  # fmt: skip
    assert (topic.key_type, topic.value_type) == (bytes, bytes)
