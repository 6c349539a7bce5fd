"""Each model under its own timeout, so one slow model never breaks the latency budget.

A `GuardedScorer` bounds each call of its scorer by `timeout_s`. A model that times out or
raises yields no scores and a reason; the caller falls back (neutral weight
renormalisation or the card's last score, see `FallbackScores`) and records the reason.

On the main thread (the worker's event loop) a call runs inline under a `SIGALRM`
watchdog: the alarm interrupts the model at its next Python bytecode. Our compiled models
are loops of short NumPy calls, so they stop within a fraction of a millisecond of the
deadline; a sleeping model is woken. Inline, a batch costs no thread hop and no GIL
hand-over: in `make demo` the worker's CPU per 1,000 fell by about a tenth and the model
stages from ~7 ms to ~0.5 ms a batch (issue 9). Elsewhere (a thread, or a platform
without `setitimer`) the call runs in the model's own single-thread executor and is waited
for at most `timeout_s`; a model stuck past its timeout keeps that thread busy, so later
calls queue behind it and time out too, until it recovers.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from fraudstream.models.names import ModelName
from fraudstream.models.scorers import Scorer

T = TypeVar("T")


class ModelOverran(BaseException):
    """Raised inside an inline model call when its watchdog alarm goes off.

    A `BaseException`, like `KeyboardInterrupt`: a model that catches `Exception` must not
    swallow its own deadline.
    """


class _Watchdog:
    """One `SIGALRM` deadline at a time around an inline call on the main thread.

    Only an armed watchdog raises: an alarm that lands after the call has returned (it
    fired just as the call ended) is ignored. The handler is checked before every call and
    installed again if another user of `SIGALRM` replaced it, so the deadline always holds.
    """

    armed = False

    @classmethod
    def usable(cls) -> bool:
        on_main_thread = threading.current_thread() is threading.main_thread()
        return on_main_thread and hasattr(signal, "setitimer")

    @classmethod
    def _on_alarm(cls, _signum: int, _frame: FrameType | None) -> None:
        if cls.armed:
            cls.armed = False
            raise ModelOverran

    @classmethod
    def call(cls, limit_s: float, function: Callable[..., T], *args: Any) -> T:
        # `!=`, not `is not`: each `cls._on_alarm` is a new bound method, equal to the last;
        # `is not` installed the handler again for every call (a system call, ~6 us).
        if signal.getsignal(signal.SIGALRM) != cls._on_alarm:
            signal.signal(signal.SIGALRM, cls._on_alarm)
        cls.armed = True
        signal.setitimer(signal.ITIMER_REAL, limit_s)
        try:
            return function(*args)
        finally:
            cls.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)


@dataclass(frozen=True)
class GuardedResult:
    """Scores for every row, or None with `fallback_reason` when the model fell back.

    `contributions` (n_rows, n_features) is there when the caller asked for explained
    scores and the model gives them (XGBoost).
    """

    model: ModelName
    scores: NDArray[np.float64] | None
    fallback_reason: str | None
    seconds: float
    contributions: NDArray[np.float64] | None = None


class GuardedScorer:
    """Runs `scorer.score_batch` bounded by `timeout_s` (see the module doc for how)."""

    def __init__(self, scorer: Scorer, timeout_s: float) -> None:
        self.scorer = scorer
        self.name = scorer.name
        self.timeout_s = timeout_s
        self._executor: ThreadPoolExecutor | None = None  # made for the first threaded call

    @staticmethod
    def runs_inline() -> bool:
        """Whether a call from here runs inline, under the watchdog (the module doc):
        calls of several models then gain nothing from running as concurrent tasks."""
        return _Watchdog.usable()

    async def call(
        self, function: Callable[..., T], *args: Any, timeout_s: float | None = None
    ) -> tuple[T | None, str | None]:
        """`function(*args)`: (result, None) or (None, reason).

        Bounded by `timeout_s`, by default the model's whole budget.
        """
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            if self.runs_inline():
                result = _Watchdog.call(limit, function, *args)
            else:
                result = await asyncio.wait_for(self._on_thread(function, *args), limit)
        except (TimeoutError, ModelOverran):
            return None, f"timeout after {limit * 1000:.0f} ms"
        except Exception as error:  # any model failure must degrade, never crash the worker
            return None, f"error: {type(error).__name__}: {error}"
        return result, None

    async def score_batch(
        self, features: NDArray[np.float64], explain: bool = False
    ) -> GuardedResult:
        """Scores (and, with `explain` on a scorer that has `score_explained`, their
        contributions) in one call on the model's thread, under one timeout."""
        started = time.perf_counter()
        score_explained = getattr(self.scorer, "score_explained", None) if explain else None
        if score_explained is not None:
            explained, reason = await self.call(score_explained, features)
            scores, contributions = explained if explained is not None else (None, None)
        else:
            scores, reason = await self.call(self.scorer.score_batch, features)
            contributions = None
        return GuardedResult(
            self.name,
            None if scores is None else np.asarray(scores, dtype=np.float64),
            reason,
            time.perf_counter() - started,
            contributions,
        )

    async def explain(
        self, features: NDArray[np.float64], timeout_s: float
    ) -> tuple[NDArray[np.float64] | None, str | None]:
        """Contributions of `features`' rows within `timeout_s`: (values, None) or (None, why).

        For what is left of the budget after scoring: a batch's scores and reasons share one
        deadline, and reasons are what gives way.
        """
        score_explained = getattr(self.scorer, "score_explained", None)
        if score_explained is None:
            return None, f"{self.name} gives no contributions"
        if timeout_s <= 0:
            return None, "scoring used the whole model budget"
        explained, reason = await self.call(score_explained, features, timeout_s=timeout_s)
        return (None, reason) if explained is None else (explained[1], None)

    def _on_thread(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"model-{self.name}"
            )
        return asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class FallbackScores:
    """The `last_score` policy: each card's most recent score per model, bounded in size.

    Cards are partitioned by key, so a worker sees all events of its cards and an
    in-process map suffices; a card not seen yet has no last score (the caller then drops
    the model's weight, as the `neutral` policy does).
    """

    def __init__(self, max_cards: int = 100_000) -> None:
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max_cards = max_cards

    def remember(self, model: str, card_ids: Sequence[str], scores: NDArray[np.float64]) -> None:
        for card_id, score in zip(card_ids, scores, strict=True):
            key = (model, card_id)
            self._last[key] = float(score)
            self._last.move_to_end(key)
        while len(self._last) > self._max_cards:
            self._last.popitem(last=False)

    def recall(self, model: str, card_id: str) -> float | None:
        return self._last.get((model, card_id))
