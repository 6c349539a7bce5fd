"""Find the cheapest (review, decline) threshold pair that meets the FPR and recall limits.

The search is exact over the candidate set (every distinct score, plus NEVER_FIRES) and
runs in O(n log n): one sort, cumulative counts, and one vectorised pass over the pairs.
"""

from __future__ import annotations

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
    """Limits a threshold pair must meet: FPR counts declines only, recall counts reviews too."""

    max_fpr: float = 0.001
    min_recall: float | None = None


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
    since reviews are N(r) - N(d). Recall depends only on r and FPR only on d, so for each
    decline candidate d the best review is the minimum of g over feasible r <= d: a running
    minimum (np.minimum.accumulate) gives it for every d at once.

    Ties go to the higher decline threshold, then the higher review threshold (fewer
    declines and reviews). Raises NoFeasibleThresholds if no pair meets `constraints`, and
    ValueError on invalid inputs (see validate_labelled_scores).
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
    # that one is, and every feasible review pairs with it: these checks are complete.
    if not decline_ok.any():
        raise NoFeasibleThresholds(
            f"max_fpr {constraints.max_fpr} cannot be met: lowest achievable FPR is {fpr.min()}"
        )
    if not review_ok.any():
        raise NoFeasibleThresholds(
            f"min_recall {constraints.min_recall} cannot be met under max_fpr "
            f"{constraints.max_fpr}: best feasible recall is {recall.max()}"
        )

    review_side = np.where(
        review_ok, cost.cost_fn * (fraud_total - frauds) + cost.cost_review * everyone, np.inf
    )
    decline_side = cost.cost_fp * legit - cost.cost_review * everyone
    best_review_cost = np.minimum.accumulate(review_side)
    # Latest index attaining the running minimum: the highest review threshold among ties.
    positions = np.arange(candidates.size)
    best_review = np.maximum.accumulate(np.where(review_side == best_review_cost, positions, 0))
    totals = np.where(decline_ok, best_review_cost + decline_side, np.inf)
    decline_at = int(np.flatnonzero(totals == totals.min())[-1])
    review_at = int(best_review[decline_at])

    outcome = evaluate_thresholds(
        score_array, label_array, float(candidates[review_at]), float(candidates[decline_at]), cost
    )
    pairs = candidates.size * (candidates.size + 1) // 2
    return ThresholdChoice(outcome=outcome, candidates_checked=pairs)
