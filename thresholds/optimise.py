"""Find the cheapest (review, decline) threshold pair within the FPR, recall and review limits.

The search is exact over the candidate set (every distinct score, plus NEVER_FIRES) and
runs in O(n log n): one sort, cumulative counts, and a few vectorised passes over the pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fraudstream.thresholds.cost import (
    NEVER_FIRES,
    CostModel,
    Outcome,
    evaluate_thresholds,
    validate_labelled_scores,
)


@dataclass(frozen=True)
class Constraints:
    """Limits a threshold pair must meet: FPR counts declines only, recall counts reviews too.

    `max_review_rate` is the review capacity: the largest share of all transactions that may
    go to manual review (0.02 = 2 %), None for unlimited. Raises ValueError when it is
    negative or NaN.
    """

    max_fpr: float = 0.001
    min_recall: float | None = None
    max_review_rate: float | None = None

    def __post_init__(self) -> None:
        if self.max_review_rate is not None and not self.max_review_rate >= 0:
            raise ValueError(
                f"max_review_rate must be None (unlimited) or >= 0, got {self.max_review_rate!r}"
            )

    def with_margin(self, margin: float) -> Constraints:
        """These limits with `margin` (a share in [0, 1)) of the FPR cap and the capacity
        kept free: a pair chosen on one labelled sample then decides traffic it has not
        seen, where its FPR and review rate come out higher about as often as lower."""
        if not 0 <= margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        capacity = self.max_review_rate
        return Constraints(
            max_fpr=self.max_fpr * (1 - margin),
            min_recall=self.min_recall,
            max_review_rate=None if capacity is None else capacity * (1 - margin),
        )

    def describe(self) -> str:
        """The hard limits as a message names them: max_fpr, then max_review_rate if set."""
        capacity = self.max_review_rate
        return f"max_fpr {self.max_fpr}" + (
            "" if capacity is None else f" and max_review_rate {capacity}"
        )


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen pair with its figures, and how many (review, decline) pairs it beat."""

    outcome: Outcome
    candidates_checked: int


class NoFeasibleThresholds(ValueError):
    """No threshold pair meets the constraints; the message names the one that fails."""


def _at_or_above(counts_per_value: NDArray[np.intp]) -> NDArray[np.intp]:
    """Counts with score >= each candidate; the final entry (NEVER_FIRES) is 0."""
    suffix = np.cumsum(counts_per_value[::-1])[::-1]
    return np.append(suffix, 0)


def _most_reviews_allowed(capacity: float | None, transactions: int) -> int:
    """The largest review count k with k / transactions <= capacity, as Outcome divides."""
    if capacity is None or capacity >= 1:
        return transactions
    allowed = math.floor(capacity * transactions)
    while (allowed + 1) / transactions <= capacity:
        allowed += 1
    while allowed > 0 and allowed / transactions > capacity:
        allowed -= 1
    return allowed


def _window_argmin(values: NDArray[np.float64], starts: NDArray[np.intp]) -> NDArray[np.intp]:
    """For each end e, the index of min(values[starts[e] : e + 1]), the latest among ties.

    A sparse table answers each window as the better of two power-of-two blocks that cover
    it; block answers are built one doubling at a time, so memory stays O(n). Requires
    0 <= starts[e] <= e.
    """

    def better(left: NDArray[np.intp], right: NDArray[np.intp]) -> NDArray[np.intp]:
        take_right = values[right] < values[left]
        tied_later = (values[right] == values[left]) & (right > left)
        return np.where(take_right | tied_later, right, left)

    ends = np.arange(values.size)
    level = np.frexp(ends - starts + 1)[1] - 1  # floor(log2(window length)), exactly
    best = ends.copy()
    block = ends.copy()  # block[i]: best index of values[i : i + 2**j], here j = 0
    for j in range(int(level.max()) + 1):
        if j:
            half = 1 << (j - 1)
            block = better(block[:-half], block[half:])
        ask = np.flatnonzero(level == j)
        best[ask] = better(block[starts[ask]], block[ask - (1 << j) + 1])
    return best


def optimise_thresholds(
    scores: ArrayLike,
    is_fraud: ArrayLike,
    cost: CostModel = CostModel(),
    constraints: Constraints = Constraints(),
) -> ThresholdChoice:
    """Return the feasible pair with the lowest total cost on these labelled scores.

    Why the search is exact without trying all pairs: with N(t), F(t), L(t) the counts of
    all, fraud and legit scores >= t, the pair (r, d) with r <= d costs
        cost_fn * (F_total - F(r)) + cost_review * N(r)     = g(r), review side only
      + cost_fp * L(d) - cost_review * N(d)                 = h(d), decline side only,
    since reviews are N(r) - N(d). Recall depends only on r and FPR only on d; the review
    capacity bounds N(r) - N(d) <= K, and as N falls with the threshold, the reviews
    feasible with decline d are the candidates from lo(d) = the first r with
    N(r) <= N(d) + K up to d, with lo(d) nondecreasing in d (lo = 0 without a capacity).
    So for each d the best review is the minimum of g over feasible r in [lo(d), d]: a
    sliding-window minimum (`_window_argmin`) gives it for every d at once.

    Ties go to the higher decline threshold, then the higher review threshold (fewer
    declines and reviews). (NEVER_FIRES, NEVER_FIRES) meets any FPR cap >= 0 and any
    capacity, so only a recall floor (or a negative FPR cap) can leave no feasible pair.
    Raises NoFeasibleThresholds if no pair meets `constraints`, and ValueError on invalid
    inputs (see validate_labelled_scores).
    """
    score_array, label_array = validate_labelled_scores(scores, is_fraud)
    values, value_index = np.unique(score_array, return_inverse=True)
    candidates = np.append(values, NEVER_FIRES)
    everyone = _at_or_above(np.bincount(value_index, minlength=values.size))
    frauds = _at_or_above(np.bincount(value_index[label_array], minlength=values.size))
    legit = everyone - frauds
    fraud_total, legit_total = int(frauds[0]), int(legit[0])

    # Same conventions and divisions as Outcome, so both agree on feasibility.
    fpr = legit / legit_total if legit_total else np.zeros(candidates.size)
    recall = frauds / fraud_total if fraud_total else np.ones(candidates.size)
    decline_ok = fpr <= constraints.max_fpr
    review_ok = (
        np.ones(candidates.size, dtype=np.bool_)
        if constraints.min_recall is None
        else recall >= constraints.min_recall
    )
    # FPR is 0 at NEVER_FIRES, the last decline candidate, so if any decline is feasible
    # that one is.
    if not decline_ok.any():
        raise NoFeasibleThresholds(
            f"max_fpr {constraints.max_fpr} cannot be met: lowest achievable FPR is {fpr.min()}"
        )
    # -everyone is sorted ascending, so this finds lo(d) for every d at once.
    allowed = _most_reviews_allowed(constraints.max_review_rate, score_array.size)
    first_review = np.searchsorted(-everyone, -(everyone + allowed), side="left")

    review_side = np.where(
        review_ok, cost.cost_fn * (fraud_total - frauds) + cost.cost_review * everyone, np.inf
    )
    decline_side = cost.cost_fp * legit - cost.cost_review * everyone
    best_review = _window_argmin(review_side, first_review)
    totals = np.where(decline_ok, review_side[best_review] + decline_side, np.inf)
    if np.isinf(totals.min()):
        # FPR falls as d rises, so the first feasible d allows the lowest r: the most recall.
        best_recall = recall[first_review[np.flatnonzero(decline_ok)[0]]]
        raise NoFeasibleThresholds(
            f"min_recall {constraints.min_recall} cannot be met under "
            f"{constraints.describe()}: best feasible recall is {best_recall}"
        )
    decline_at = int(np.flatnonzero(totals == totals.min())[-1])
    review_at = int(best_review[decline_at])

    outcome = evaluate_thresholds(
        score_array, label_array, float(candidates[review_at]), float(candidates[decline_at]), cost
    )
    pairs = candidates.size * (candidates.size + 1) // 2
    return ThresholdChoice(outcome=outcome, candidates_checked=pairs)
