import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import ArrayLike

from fraudstream.thresholds.cost import NEVER_FIRES, CostModel, decide, evaluate_thresholds

SCORES = [0.1, 0.4, 0.6, 0.9, 0.95]
FRAUD = [False, True, False, True, True]


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.0, "approve"), (0.29, "approve"), (0.3, "review"), (0.69, "review"), (0.7, "decline")],
)
def test_decide_puts_boundaries_in_the_higher_band(score: float, expected: str) -> None:
    assert decide(score, 0.3, 0.7) == expected


def test_equal_thresholds_leave_no_review_band() -> None:
    assert decide(0.49, 0.5, 0.5) == "approve"
    assert decide(0.5, 0.5, 0.5) == "decline"


def test_threshold_above_one_never_fires() -> None:
    assert decide(1.0, NEVER_FIRES, NEVER_FIRES) == "approve"
    assert decide(1.0, 0.5, NEVER_FIRES) == "review"


def test_review_band_catches_nothing_costly_but_misses_low_fraud() -> None:
    outcome = evaluate_thresholds(SCORES, FRAUD, 0.5, 0.9)
    # Declined 0.9 and 0.95 (both fraud), reviewed 0.6 (legit), approved the 0.4 fraud.
    assert outcome.to_dict() == {
        "review_threshold": 0.5,
        "decline_threshold": 0.9,
        "transactions": 5,
        "frauds": 3,
        "missed_frauds": 1,
        "false_declines": 0,
        "reviews": 1,
        "caught_frauds": 2,
        "total_cost": 5010.0,
        "cost_per_txn": 1002.0,
        "recall": pytest.approx(2 / 3),
        "fpr": 0.0,
        "review_rate": 0.2,
    }


def test_low_decline_threshold_trades_a_false_decline_for_full_recall() -> None:
    outcome = evaluate_thresholds(SCORES, FRAUD, 0.3, 0.5)
    assert (outcome.false_declines, outcome.reviews, outcome.missed_frauds) == (1, 1, 0)
    assert outcome.total_cost == 60.0
    assert outcome.recall == 1.0
    assert outcome.fpr == 0.5


def test_custom_costs_are_applied_per_outcome() -> None:
    outcome = evaluate_thresholds(SCORES, FRAUD, 0.3, 0.5, CostModel(1.0, 2.0, 4.0))
    assert outcome.total_cost == 0 * 1.0 + 1 * 2.0 + 1 * 4.0


def test_recall_is_one_without_frauds_and_fpr_zero_without_legit() -> None:
    no_fraud = evaluate_thresholds([0.2, 0.8], [0, 0], 0.5, 0.5)
    assert (no_fraud.recall, no_fraud.fpr) == (1.0, 0.5)
    all_fraud = evaluate_thresholds([0.2, 0.8], [1, 1], 0.5, 0.5)
    assert (all_fraud.recall, all_fraud.fpr) == (0.5, 0.0)


@given(
    rows=st.lists(
        st.tuples(st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0]) | st.floats(0, 1), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    review=st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0, NEVER_FIRES]),
    band=st.sampled_from([0.0, 0.1, 0.3, 1.0]),
)
def test_evaluate_matches_a_per_row_loop_with_decide(
    rows: list[tuple[float, bool]], review: float, band: float
) -> None:
    decline = review + band
    scores, labels = zip(*rows, strict=True)
    outcome = evaluate_thresholds(scores, labels, review, decline)
    actions = [decide(s, review, decline) for s in scores]
    missed = sum(a == "approve" and f for a, f in zip(actions, labels, strict=True))
    false_declines = sum(a == "decline" and not f for a, f in zip(actions, labels, strict=True))
    reviews = actions.count("review")
    assert (outcome.missed_frauds, outcome.false_declines, outcome.reviews) == (
        missed,
        false_declines,
        reviews,
    )
    assert outcome.caught_frauds == sum(labels) - missed
    assert outcome.total_cost == missed * 5000.0 + false_declines * 50.0 + reviews * 10.0


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [0], "differ in length"),
        ([], [], "empty"),
        ([0.1, math.nan], [0, 1], "not finite values in \\[0, 1\\]; first at index 1"),
        ([1.5], [1], "first at index 0"),
        ([-0.1], [1], "not finite"),
        ([0.5], [2], "only booleans or 0/1"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "must be 1-D"),
    ],
)
def test_invalid_inputs_raise_value_error(
    scores: ArrayLike, labels: ArrayLike, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_thresholds(scores, labels, 0.5, 0.5)


@pytest.mark.parametrize(("review", "decline"), [(0.6, 0.5), (-0.1, 0.5), (math.nan, 0.5)])
def test_thresholds_out_of_order_raise_value_error(review: float, decline: float) -> None:
    with pytest.raises(ValueError, match="0 <= review <= decline"):
        evaluate_thresholds([0.5], [1], review, decline)


def test_negative_cost_is_rejected() -> None:
    with pytest.raises(ValueError, match="cost_fp must be a finite cost >= 0"):
        CostModel(cost_fp=-1.0)
