"""`GuardedScorer.call`: inline under a SIGALRM watchdog on the main thread, on the model's
own thread elsewhere; either way bounded by the timeout, never raising. The worker's event
loop is uvloop's (stream/worker/faust_app.py `run_on_uvloop`): the inline cases run on both."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import uvloop
from numpy.typing import NDArray

from fraudstream.models.guarded import GuardedScorer
from fraudstream.models.names import ModelName


class Probe:
    """A scorer that records the thread it ran on and does what it is told."""

    name = ModelName.ISOLATION_FOREST

    def __init__(self) -> None:
        self.threads: list[str] = []

    def score_batch(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        self.threads.append(threading.current_thread().name)
        return np.zeros(len(features))

    def score_one(self, features: NDArray[np.float64]) -> float:
        return 0.0


def spin(seconds: float) -> str:
    """Python bytecode for `seconds`: what a stuck compiled model looks like."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass
    return "finished"


def swallow_everything(seconds: float) -> str:
    """A model whose own error handling catches `Exception` must still stop in time."""
    try:
        return spin(seconds)
    except Exception:
        return "swallowed"


LoopFactory = Callable[[], asyncio.AbstractEventLoop]
EVENT_LOOPS = pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)


def call(
    guarded: GuardedScorer, function: Any, *args: Any,
    new_loop: LoopFactory = asyncio.new_event_loop,
) -> tuple[Any, str | None, float]:  # fmt: skip
    async def run() -> tuple[Any, str | None]:
        return await guarded.call(function, *args)

    started = time.perf_counter()
    with asyncio.Runner(loop_factory=new_loop) as runner:
        result, reason = runner.run(run())
    return result, reason, time.perf_counter() - started


@EVENT_LOOPS
def test_on_the_main_thread_the_model_runs_inline_and_no_thread_is_made(
    new_loop: LoopFactory,
) -> None:
    probe = Probe()
    guarded = GuardedScorer(probe, timeout_s=0.5)
    scores, reason, _ = call(guarded, probe.score_batch, np.ones((3, 2)), new_loop=new_loop)
    assert reason is None and list(scores) == [0.0, 0.0, 0.0]
    assert probe.threads == ["MainThread"]
    assert not any(t.name.startswith("model-") for t in threading.enumerate())
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0), "no alarm left behind"


@EVENT_LOOPS
def test_inline_model_past_its_timeout_is_interrupted_and_falls_back(
    new_loop: LoopFactory,
) -> None:
    guarded = GuardedScorer(Probe(), timeout_s=0.05)
    for stuck in (spin, time.sleep, swallow_everything):
        result, reason, elapsed = call(guarded, stuck, 2.0, new_loop=new_loop)
        assert (result, reason) == (None, "timeout after 50 ms"), stuck.__name__
        assert elapsed < 0.5, f"{stuck.__name__} ran {elapsed:.2f} s past a 50 ms budget"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    # the next call is not hit by a stale alarm
    assert call(guarded, spin, 0.01, new_loop=new_loop)[:2] == ("finished", None)


def test_the_deadline_holds_after_another_user_replaced_the_alarm_handler() -> None:
    guarded = GuardedScorer(Probe(), timeout_s=0.05)
    assert call(guarded, spin, 0.01)[:2] == ("finished", None)  # the watchdog's handler is in
    previous = signal.signal(signal.SIGALRM, lambda *_: None)  # another user of SIGALRM
    try:
        result, reason, elapsed = call(guarded, spin, 2.0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert (result, reason) == (None, "timeout after 50 ms")
    assert elapsed < 0.5


def test_a_model_error_is_a_reason_not_an_exception() -> None:
    def broken(_features: object) -> None:
        raise ValueError("bad tree")

    result, reason, _ = call(GuardedScorer(Probe(), timeout_s=0.5), broken, None)
    assert (result, reason) == (None, "error: ValueError: bad tree")


def test_off_the_main_thread_the_model_runs_on_its_own_thread_under_the_timeout() -> None:
    probe = Probe()
    guarded = GuardedScorer(probe, timeout_s=0.05)
    outcomes: list[tuple[Any, str | None, float]] = []

    def from_a_thread() -> None:
        outcomes.append(call(guarded, probe.score_batch, np.ones((2, 2))))
        outcomes.append(call(guarded, time.sleep, 0.3))

    caller = threading.Thread(target=from_a_thread, name="caller")
    caller.start()
    caller.join()
    guarded.close()
    (scores, reason, _), (slept, late_reason, elapsed) = outcomes
    assert reason is None and list(scores) == [0.0, 0.0]
    assert probe.threads[0].startswith(f"model-{ModelName.ISOLATION_FOREST}")
    assert (slept, late_reason) == (None, "timeout after 50 ms")
    assert elapsed < 0.25
