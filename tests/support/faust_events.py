"""Faust apps that reach no broker, and consumed messages as Faust's Kafka consumer makes
them: for unit tests of the worker's hooks into Faust's per-record path."""

from __future__ import annotations

import faust
from faust.types import ConsumerMessage


def offline_app(name: str) -> faust.App:
    """A Faust app whose broker is nowhere (nothing here starts it)."""
    return faust.App(name, broker="kafka://127.0.0.1:1", store="memory://")


def consumer_message(
    offset: int, value: bytes | None, key: bytes | None = None, generation_id: int = 0
) -> ConsumerMessage:
    """A message of topic `txns`, partition 0, at `offset` (`value` None: a tombstone)."""
    return ConsumerMessage(
        topic="txns", partition=0, offset=offset, timestamp=0.0, timestamp_type=0, headers=[],
        key=key, value=value, checksum=None, generation_id=generation_id,
    )  # fmt: skip
