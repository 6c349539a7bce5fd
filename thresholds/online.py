"""When and how far to move the live threshold pair: pure decisions, no I/O.

Labels arrive days after the decision and in small numbers, so the raw cost optimum on a
window of labelled decisions jumps around from one recalibration to the next. The guard
rails make the live pair follow the optimum without chasing its noise: no move until the
window holds enough frauds and legitimate transactions, each move goes only part of the way
(smoothing) and never further than `max_step`, the pair stays inside hard bounds a human
signed off, and moves too small to matter do not create a new version.

Example:
    >>> window = LabelledWindow()
    >>> window.add(decision_time=0.0, score=0.9, is_fraud=True)
    >>> state = ThresholdState(1, review=0.01, decline=0.9, reason="initial", figures={})
    >>> recalibrate(state, window).reason
    'only 1 labelled frauds, need 30'
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.thresholds.cost import CostModel, Outcome, evaluate_thresholds
from fraudstream.thresholds.optimise import Constraints, NoFeasibleThresholds, optimise_thresholds
from fraudstream.thresholds.pair import ThresholdPair


class LabelledWindow:
    """Recent decisions joined with their labels: (decision_time, score, is_fraud).

    Age is event time (seconds, as the stream carries it), never wall clock, so a replay
    recalibrates exactly as the live system would. Decisions may be added out of time order
    (labels arrive late and unordered); when more than `max_size` are held, the one with the
    oldest decision time goes first.

    `maturity_s` holds a labelled decision back until it is that old: fraud labels
    (chargebacks) arrive later than legitimate ones, so the newest labelled decisions are
    short of frauds, and an optimum computed on them would raise the review threshold and
    miss fraud. `evict(now)` releases what has matured.
    """

    def __init__(
        self, max_size: int = 20_000, max_age_s: float = 7 * 86400, maturity_s: float = 0.0
    ) -> None:
        if max_size < 1 or not max_age_s > 0 or maturity_s < 0:
            raise ValueError(
                f"need max_size >= 1, max_age_s > 0 and maturity_s >= 0, got {max_size}, "
                f"{max_age_s}, {maturity_s}"
            )
        self.max_size = max_size
        self.max_age_s = max_age_s
        self.maturity_s = maturity_s
        self._maturing: list[tuple[float, int, float, bool]] = []
        #: Labelled decisions that ever entered the window (matured): a monotone counter.
        self.released = 0
        self._heap: list[tuple[float, int, float, bool]] = []
        self._arrival = itertools.count()  # tie-break: equal times leave in arrival order
        self.frauds = 0
        self.legits = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, decision_time: float, score: float, is_fraud: bool) -> None:
        """Hold one labelled decision; raises ValueError on a score outside [0, 1]."""
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"score must be within [0, 1], got {score!r}")
        entry = (float(decision_time), next(self._arrival), score, bool(is_fraud))
        if self.maturity_s > 0:
            heapq.heappush(self._maturing, entry)
        else:
            self._hold(entry)

    def _hold(self, entry: tuple[float, int, float, bool]) -> None:
        self.released += 1
        heapq.heappush(self._heap, entry)
        self._count(entry[3], +1)
        if len(self._heap) > self.max_size:
            self._pop_oldest()

    def evict(self, now: float) -> int:
        """Release decisions matured by `now`, then drop those older than `max_age_s`.

        Returns how many were dropped.
        """
        while self._maturing and self._maturing[0][0] <= now - self.maturity_s:
            self._hold(heapq.heappop(self._maturing))
        cutoff = now - self.max_age_s
        dropped = 0
        while self._heap and self._heap[0][0] < cutoff:
            self._pop_oldest()
            dropped += 1
        return dropped

    def arrays(self) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Scores and labels of everything held, in no particular order."""
        scores = np.fromiter((entry[2] for entry in self._heap), np.float64, len(self._heap))
        is_fraud = np.fromiter((entry[3] for entry in self._heap), np.bool_, len(self._heap))
        return scores, is_fraud

    def _pop_oldest(self) -> None:
        self._count(heapq.heappop(self._heap)[3], -1)

    def _count(self, is_fraud: bool, delta: int) -> None:
        if is_fraud:
            self.frauds += delta
        else:
            self.legits += delta


@dataclass(frozen=True)
class GuardRails:
    """How cautiously the live pair follows the optimum (see the module docstring).

    A move of one threshold is `smoothing` of the way to its target, at least `min_change`
    (so repeated recalibration on a steady window arrives instead of creeping), at most
    `max_step` and never past the target. Hard bounds win over the step bound when the
    current pair lies outside them. Review bounds must sit at or below decline bounds, so
    clamping review to decline keeps review inside its own bounds.
    """

    min_frauds: int = 30
    min_legits: int = 1000
    max_step: float = 0.05
    smoothing: float = 0.5
    review_bounds: tuple[float, float] = (0.0005, 0.5)
    decline_bounds: tuple[float, float] = (0.05, 0.99)
    min_change: float = 0.0005

    def __post_init__(self) -> None:
        (review_lo, review_hi), (decline_lo, decline_hi) = self.review_bounds, self.decline_bounds
        problems = []
        if not 0.0 < self.smoothing <= 1.0:
            problems.append(f"smoothing must lie in (0, 1], got {self.smoothing}")
        if not 0.0 <= self.min_change <= self.max_step:
            problems.append(f"need 0 <= min_change <= max_step, got {self.min_change}")
        if not (0.0 <= review_lo <= review_hi and 0.0 <= decline_lo <= decline_hi):
            problems.append("each bound pair must be (low, high) with 0 <= low <= high")
        if not (review_lo <= decline_lo and review_hi <= decline_hi):
            problems.append("review_bounds must not lie above decline_bounds")
        if problems:
            raise ValueError("invalid guard rails: " + "; ".join(problems))


@dataclass(frozen=True)
class ThresholdState:
    """One version of the live pair, with why it was chosen and the figures behind it.

    `pair` is what a worker decides with; this stored form adds the reason and figures.
    """

    version: int
    review: float
    decline: float
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.decline) and 0.0 <= self.review <= self.decline):
            raise ValueError(
                f"thresholds must satisfy 0 <= review <= decline, got {self.review}, {self.decline}"
            )

    @property
    def pair(self) -> ThresholdPair:
        """The pair as decisions name it: version 12 is ``v12``."""
        return ThresholdPair(f"v{self.version}", self.review, self.decline)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ThresholdState:
        return cls(
            version=int(raw["version"]),
            review=float(raw["review"]),
            decline=float(raw["decline"]),
            reason=str(raw["reason"]),
            figures=dict(raw.get("figures", {})),
        )


@dataclass(frozen=True)
class Recalibration:
    """The verdict: `state` is the new version when accepted, else the current one."""

    accepted: bool
    state: ThresholdState
    reason: str
    figures: dict[str, Any]


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def _move(old: float, target: float, rails: GuardRails) -> tuple[float, str]:
    """One threshold's next value and what limited the move ("" when it reached target)."""
    distance = abs(target - old)
    if distance <= rails.min_change:
        return old, ""
    step = max(rails.smoothing * distance, rails.min_change)
    limit = "smoothed"
    if step >= rails.max_step:
        step, limit = rails.max_step, "step-limited"
    if step >= distance:
        return target, ""
    return old + math.copysign(step, target - old), limit


def optimum_within_limits(
    scores: NDArray[np.float64],
    is_fraud: NDArray[np.bool_],
    cost: CostModel,
    constraints: Constraints,
) -> tuple[Outcome, str | None]:
    """The window's optimum, and why the recall floor yielded (None when it held).

    The FPR cap and the review capacity are operating facts (customers wrongly declined,
    analysts on shift); the recall floor is an aim. When no pair keeps the floor within
    them, the floor yields and the cheapest pair within the limits is the optimum. Raises
    NoFeasibleThresholds when the limits alone allow no pair (a negative FPR cap).
    """
    try:
        return optimise_thresholds(scores, is_fraud, cost, constraints).outcome, None
    except NoFeasibleThresholds as error:
        if constraints.min_recall is None:
            raise
        within_limits = replace(constraints, min_recall=None)
        return optimise_thresholds(scores, is_fraud, cost, within_limits).outcome, str(error)


def recalibrate(
    current: ThresholdState,
    window: LabelledWindow,
    cost: CostModel = CostModel(),
    constraints: Constraints = Constraints(),
    rails: GuardRails = GuardRails(),
) -> Recalibration:
    """Decide the next live pair from the labelled window (the caller evicts beforehand).

    The target is the exact cost optimum on the window (`optimum_within_limits`: the
    recall floor yields to the FPR cap and review capacity), clipped to the hard bounds
    with review <= decline; each threshold then moves toward it as the rails allow.
    Figures (JSON-able) give the labelled counts, the raw and bounded target, the window's
    expected cost per transaction at the current and new pair, and `recall_floor_yielded`
    (why) when the floor could not be kept.
    """
    figures: dict[str, Any] = {"frauds": window.frauds, "legits": window.legits}

    def keep(reason: str) -> Recalibration:
        return Recalibration(False, current, reason, figures)

    if window.frauds < rails.min_frauds:
        return keep(f"only {window.frauds} labelled frauds, need {rails.min_frauds}")
    if window.legits < rails.min_legits:
        return keep(f"only {window.legits} labelled legitimate, need {rails.min_legits}")
    scores, is_fraud = window.arrays()
    try:
        optimum, floor_yielded = optimum_within_limits(scores, is_fraud, cost, constraints)
    except NoFeasibleThresholds as error:
        return keep(f"no feasible thresholds on the window: {error}")
    if floor_yielded is not None:
        figures["recall_floor_yielded"] = floor_yielded
    target_decline = _clip(optimum.decline_threshold, rails.decline_bounds)
    target_review = min(_clip(optimum.review_threshold, rails.review_bounds), target_decline)
    figures.update(
        optimum_review=optimum.review_threshold,
        optimum_decline=optimum.decline_threshold,
        target_review=target_review,
        target_decline=target_decline,
        cost_per_txn_current=evaluate_thresholds(
            scores, is_fraud, current.review, current.decline, cost
        ).cost_per_txn,
    )

    decline, decline_limit = _move(current.decline, target_decline, rails)
    decline = _clip(decline, rails.decline_bounds)
    review, review_limit = _move(current.review, target_review, rails)
    review = min(_clip(review, rails.review_bounds), decline)
    # `_move` already refused moves below min_change; only review's clamp can shrink one.
    if (review, decline) == (current.review, current.decline):
        return keep(f"target within {rails.min_change} of current")

    new_outcome = evaluate_thresholds(scores, is_fraud, review, decline, cost)
    figures.update(
        cost_per_txn_new=new_outcome.cost_per_txn,
        recall_new=new_outcome.recall,
        fpr_new=new_outcome.fpr,
        review_rate_new=new_outcome.review_rate,
    )
    moves = [
        f"{name} {old:.4f}→{new:.4f} (target {target:.4f}{', ' + limit if limit else ''})"
        for name, old, new, target, limit in (
            ("review", current.review, review, target_review, review_limit),
            ("decline", current.decline, decline, target_decline, decline_limit),
        )
        if new != old
    ]
    reason = "moved " + ", ".join(moves)
    state = ThresholdState(current.version + 1, review, decline, reason, dict(figures))
    return Recalibration(True, state, reason, figures)
