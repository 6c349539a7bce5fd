"""What a threshold pair costs on a labelled set of scores: pure arithmetic on arrays.

A score s in [0, 1] is declined when s >= decline, reviewed when review <= s < decline and
approved otherwise. An approved fraud costs `cost_fn`, a declined legitimate transaction
costs `cost_fp`, and every review costs `cost_review`; a reviewed fraud counts as caught
and a reviewed legitimate transaction as approved.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

NEVER_FIRES = math.nextafter(1.0, math.inf)
"""A threshold just above 1: no score in [0, 1] reaches it, so the band it bounds is empty."""


@dataclass(frozen=True)
class CostModel:
    """Business cost of each kind of outcome, in one currency unit per transaction."""

    cost_fn: float = 5000.0
    cost_fp: float = 50.0
    cost_review: float = 10.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite cost >= 0, got {value!r}")


@dataclass(frozen=True)
class Outcome:
    """Everything a report needs about one threshold pair on one labelled set.

    `recall` is 1.0 when there are no frauds and `fpr` is 0.0 when there are no legitimate
    transactions: nothing was missed or falsely declined, so a constraint never rejects them.
    """

    review_threshold: float
    decline_threshold: float
    transactions: int
    frauds: int
    missed_frauds: int
    false_declines: int
    reviews: int
    caught_frauds: int
    total_cost: float
    cost_per_txn: float
    recall: float
    fpr: float
    review_rate: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def decide(score: float, review_threshold: float, decline_threshold: float) -> str:
    """The action for one score: "decline", "review" or "approve"."""
    if score >= decline_threshold:
        return "decline"
    if score >= review_threshold:
        return "review"
    return "approve"


def validate_labelled_scores(
    scores: ArrayLike, is_fraud: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Check and convert inputs once, so the arithmetic below can trust them.

    Raises ValueError unless both are non-empty 1-D arrays of the same length, every score
    is finite and within [0, 1], and every label is a bool or 0/1.
    """
    score_array = np.asarray(scores, dtype=np.float64)
    label_array = np.asarray(is_fraud)
    if score_array.ndim != 1 or label_array.ndim != 1:
        raise ValueError(
            f"scores and is_fraud must be 1-D, got shapes {score_array.shape} "
            f"and {label_array.shape}"
        )
    if score_array.size != label_array.size:
        raise ValueError(
            f"scores and is_fraud differ in length: {score_array.size} vs {label_array.size}"
        )
    if score_array.size == 0:
        raise ValueError("scores is empty: at least one labelled transaction is needed")
    outside = ~((score_array >= 0.0) & (score_array <= 1.0))  # also catches NaN
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{int(outside.sum())} score(s) are not finite values in [0, 1]; "
            f"first at index {first}: {score_array[first]!r}"
        )
    if label_array.dtype != np.bool_:
        if not np.isin(label_array, (0, 1)).all():
            raise ValueError("is_fraud must hold only booleans or 0/1")
        label_array = label_array.astype(np.bool_)
    return score_array, label_array


def evaluate_thresholds(
    scores: ArrayLike,
    is_fraud: ArrayLike,
    review_threshold: float,
    decline_threshold: float,
    cost: CostModel = CostModel(),
) -> Outcome:
    """Apply one threshold pair to labelled scores and count what it costs.

    Requires 0 <= review_threshold <= decline_threshold (equal means no review band; above
    1 never fires); raises ValueError otherwise or on invalid inputs.
    """
    score_array, label_array = validate_labelled_scores(scores, is_fraud)
    if not 0.0 <= review_threshold <= decline_threshold:
        raise ValueError(
            "thresholds must satisfy 0 <= review <= decline, got "
            f"review={review_threshold!r}, decline={decline_threshold!r}"
        )
    declined = score_array >= decline_threshold
    reviewed = (score_array >= review_threshold) & ~declined
    transactions = int(score_array.size)
    frauds = int(label_array.sum())
    legit = transactions - frauds
    caught_frauds = int(np.count_nonzero(label_array & (declined | reviewed)))
    false_declines = int(np.count_nonzero(declined & ~label_array))
    reviews = int(np.count_nonzero(reviewed))
    missed_frauds = frauds - caught_frauds
    total_cost = (
        missed_frauds * cost.cost_fn + false_declines * cost.cost_fp + reviews * cost.cost_review
    )
    return Outcome(
        review_threshold=float(review_threshold),
        decline_threshold=float(decline_threshold),
        transactions=transactions,
        frauds=frauds,
        missed_frauds=missed_frauds,
        false_declines=false_declines,
        reviews=reviews,
        caught_frauds=caught_frauds,
        total_cost=total_cost,
        cost_per_txn=total_cost / transactions,
        recall=caught_frauds / frauds if frauds else 1.0,
        fpr=false_declines / legit if legit else 0.0,
        review_rate=reviews / transactions,
    )


#: A stand-in score for each decision as made: under the pair (0.5, 1.0) it is decided again
#: the same way, so `evaluate_as_decided` costs decisions with `evaluate_thresholds`'
#: arithmetic instead of a second copy of it.
DECISION_SCORE = {"approve": 0.0, "review": 0.5, "decline": 1.0}


def evaluate_as_decided(
    decision_scores: ArrayLike, is_fraud: ArrayLike, cost: CostModel = CostModel()
) -> Outcome:
    """What decisions already made cost: each given as its `DECISION_SCORE`."""
    return evaluate_thresholds(decision_scores, is_fraud, 0.5, 1.0, cost)

