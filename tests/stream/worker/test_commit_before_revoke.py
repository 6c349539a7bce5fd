"""Faust's revoke is preceded by finishing and committing the records in flight
(stream/worker/faust_app.py); the effect on a real group is in
tests/stream/tools/test_rebalance.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer

from fraudstream.stream.worker.faust_app import commit_before_revoke


class RecordingConsumer:
    """What `commit_before_revoke` calls on Faust's consumer and app, in order."""

    def __init__(self, stopping: bool) -> None:
        self.calls: list[str] = []
        flow_control = SimpleNamespace(
            suspend=lambda: self.calls.append("suspend taking records"),
            clear=lambda: self.calls.append("drop buffered records"),
        )
        self.app = SimpleNamespace(should_stop=stopping, flow_control=flow_control)

    def stop_flow(self) -> None:
        self.calls.append("stop flow")

    def assignment(self) -> set[int]:
        return {1, 2}

    def pause_partitions(self, partitions: set[int]) -> None:
        self.calls.append(f"pause {sorted(partitions)}")

    async def wait_empty(self) -> None:
        self.calls.append("wait for the records in flight, commit")


@pytest.mark.parametrize(("stopping", "expected"), [
    (False, ["stop flow", "suspend taking records", "pause [1, 2]", "drop buffered records",
             "wait for the records in flight, commit", "revoke {1}"]),
    (True, ["revoke {1}"]),
])  # fmt: skip
def test_records_in_flight_are_finished_and_committed_before_faust_forgets_the_partitions(
    monkeypatch: pytest.MonkeyPatch, stopping: bool, expected: list[str]
) -> None:
    async def faust_revoke(self: Any, revoked: Any) -> None:
        self.calls.append(f"revoke {revoked}")  # where Faust drops their acked offsets

    monkeypatch.setattr(Consumer, "on_partitions_revoked", faust_revoke)
    commit_before_revoke()
    consumer = RecordingConsumer(stopping)
    asyncio.run(Consumer.on_partitions_revoked(consumer, {1}))  # type: ignore[arg-type]
    assert consumer.calls == expected
