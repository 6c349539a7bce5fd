"""Faust's revoke is preceded by a commit of what was acked (stream/worker/faust_app.py);
the effect on a real group is in tests/stream/tools/test_rebalance.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer

from fraudstream.stream.worker.faust_app import commit_before_revoke


class RecordingConsumer:
    def __init__(self, stopping: bool) -> None:
        self.app = SimpleNamespace(should_stop=stopping)
        self.calls: list[str] = []

    async def commit(self) -> bool:
        self.calls.append("commit")
        return True


@pytest.mark.parametrize(("stopping", "expected"), [(False, ["commit", "revoke {1}"]),
                                                    (True, ["revoke {1}"])])  # fmt: skip
def test_acked_offsets_are_committed_before_faust_forgets_the_revoked_partitions(
    monkeypatch: pytest.MonkeyPatch, stopping: bool, expected: list[str]
) -> None:
    async def faust_revoke(self: Any, revoked: Any) -> None:
        self.calls.append(f"revoke {revoked}")  # where Faust drops their acked offsets

    monkeypatch.setattr(Consumer, "on_partitions_revoked", faust_revoke)
    commit_before_revoke()
    consumer = RecordingConsumer(stopping)
    asyncio.run(Consumer.on_partitions_revoked(consumer, {1}))  # type: ignore[arg-type]
    assert consumer.calls == expected
