"""Each model under its own timeout, so one slow model never breaks the latency budget.

A `GuardedScorer` runs its scorer in a dedicated single-thread executor (XGBoost and
NumPy release the GIL, so the models overlap) and waits at most `timeout_s`. A model that
times out or raises yields no scores and a reason; the caller falls back (neutral weight
renormalisation or the card's last score, see `FallbackScores`) and records the reason.
A model stuck past its timeout keeps its thread busy, so later calls queue behind it and
time out too: the fallback holds until the model recovers.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from fraudstream.models.names import ModelName
from fraudstream.models.scorers import Scorer

T = TypeVar("T")


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
    """Runs `scorer.score_batch` off the event loop, bounded by `timeout_s`."""

    def __init__(self, scorer: Scorer, timeout_s: float) -> None:
        self.scorer = scorer
        self.name = scorer.name
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"model-{scorer.name}"
        )

    async def call(
        self, function: Callable[..., T], *args: Any, timeout_s: float | None = None
    ) -> tuple[T | None, str | None]:
        """`function(*args)` on the model's thread: (result, None) or (None, reason).

        Bounded by `timeout_s`, by default the model's whole budget.
        """
        loop = asyncio.get_running_loop()
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(self._executor, function, *args), limit
            )
        except TimeoutError:
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

    def close(self) -> None:
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
