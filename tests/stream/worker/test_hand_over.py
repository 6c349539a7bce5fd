"""The drainer's hand-over of a record runs at once, and as Faust's when it must wait."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import faust.transport.consumer as faust_consumer
import pytest
from mode import Service

from fraudstream.stream.worker.faust_app import eager_hand_over


class Drainer(Service):
    """Faust's consumer as its drainer sees it: a mode service with a `suspend_flow`."""

    wait_first = eager_hand_over(Service.wait_first)  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = faust_consumer.Event()  # whichever Event Faust's consumer uses
        self.handed: list[str] = []

    async def hand_over(self, record: str, until: asyncio.Future[None] | None = None) -> str:
        """Like Faust's `on_message`: it waits only when told to (a full buffer, a pause)."""
        try:
            if until is not None:
                await until
            self.handed.append(record)
            return record
        except asyncio.CancelledError:
            self.handed.append(f"abandoned {record}")
            raise


@pytest.fixture
def tasks_made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    made: list[Any] = []
    ensure_future = asyncio.ensure_future

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(args[0])
        return ensure_future(*args, **kwargs)

    monkeypatch.setattr(asyncio, "ensure_future", counting)
    return made


def test_a_hand_over_that_need_not_wait_runs_at_once_without_a_task(
    tasks_made: list[Any],
) -> None:
    async def run() -> Any:
        drainer = Drainer()
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # the unused suspend wait is closed
            result = await drainer.wait_first(drainer.hand_over("r1"), drainer.suspend_flow.wait())
        return drainer.handed, result

    handed, result = asyncio.run(run())
    assert handed == ["r1"]
    assert result.results == ["r1"] and not result.stopped
    assert tasks_made == []


def test_a_hand_over_that_waits_finishes_when_it_can(tasks_made: list[Any]) -> None:
    async def run() -> tuple[list[str], list[str]]:
        drainer = Drainer()
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(
            drainer.wait_first(drainer.hand_over("r1", until=room), drainer.suspend_flow.wait())
        )
        await asyncio.sleep(0.01)
        before = list(drainer.handed)
        assert not waiting.done()
        room.set_result(None)
        await asyncio.wait_for(waiting, 1.0)
        return before, drainer.handed

    before, after = asyncio.run(run())
    assert before == [] and after == ["r1"]
    assert len(tasks_made) > 2  # from the wait on, Faust's own wait_first


def test_suspending_the_flow_abandons_a_waiting_hand_over_as_faust_does() -> None:
    async def run() -> list[str]:
        drainer = Drainer()
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(
            drainer.wait_first(drainer.hand_over("r1", until=never), drainer.suspend_flow.wait())
        )
        await asyncio.sleep(0.01)
        drainer.suspend_flow.set()  # a rebalance begins
        await asyncio.wait_for(waiting, 1.0)
        await asyncio.sleep(0.01)
        return drainer.handed

    assert asyncio.run(run()) == ["abandoned r1"]


def test_a_suspended_flow_leaves_the_hand_over_to_faust(tasks_made: list[Any]) -> None:
    async def run() -> list[str]:
        drainer = Drainer()
        drainer.suspend_flow.set()
        await drainer.wait_first(drainer.hand_over("r1"), drainer.suspend_flow.wait())
        return drainer.handed

    asyncio.run(run())
    assert len(tasks_made) > 2


@pytest.mark.parametrize("waits_first", [False, True])
def test_a_failing_hand_over_raises_in_the_drainer(waits_first: bool) -> None:
    async def broken() -> None:
        if waits_first:
            await asyncio.sleep(0.001)
        raise ValueError("cannot decode")

    async def run() -> None:
        drainer = Drainer()
        await drainer.wait_first(broken(), drainer.suspend_flow.wait())

    with pytest.raises(ValueError, match="cannot decode"):
        asyncio.run(run())


def test_other_calls_go_to_faust_unchanged(tasks_made: list[Any]) -> None:
    async def run() -> list[Any]:
        drainer = Drainer()
        done = asyncio.Event()
        done.set()
        return (await drainer.wait_first(done.wait())).results

    assert asyncio.run(run()) == [True]
    assert tasks_made  # mode's own path
