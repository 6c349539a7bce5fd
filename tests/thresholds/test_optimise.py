import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.thresholds.cost import NEVER_FIRES, CostModel, Outcome, evaluate_thresholds
from fraudstream.thresholds.optimise import (
    Constraints,
    NoFeasibleThresholds,
    optimise_thresholds,
)


def brute_force(
    scores: list[float], labels: list[bool], cost: CostModel, constraints: Constraints
) -> list[Outcome]:
    """Every feasible candidate pair, evaluated directly: the oracle for the fast search."""
    candidates = [*sorted(set(scores)), NEVER_FIRES]
    outcomes = [
        evaluate_thresholds(scores, labels, review, decline, cost)
        for i, review in enumerate(candidates)
        for decline in candidates[i:]
    ]
    return [
        o
        for o in outcomes
        if o.fpr <= constraints.max_fpr
        and (constraints.min_recall is None or o.recall >= constraints.min_recall)
        and (constraints.max_review_rate is None or o.review_rate <= constraints.max_review_rate)
    ]


def test_clean_separation_declines_all_fraud_without_a_review_band() -> None:
    choice = optimise_thresholds([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], constraints=Constraints(0.0))
    assert (choice.outcome.review_threshold, choice.outcome.decline_threshold) == (0.8, 0.8)
    assert choice.outcome.total_cost == 0.0
    assert choice.candidates_checked == 5 * 6 // 2


def test_review_band_wins_when_fraud_and_legit_share_a_score() -> None:
    # A legit at 0.5 forbids declining there under max_fpr 0; reviewing both 0.5s costs 20,
    # approving the 0.5 fraud would cost 5000, reviewing from 0.2 would cost 30.
    choice = optimise_thresholds([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1], constraints=Constraints(0.0))
    outcome = choice.outcome
    assert (outcome.review_threshold, outcome.decline_threshold) == (0.5, 0.9)
    assert (outcome.total_cost, outcome.reviews, outcome.recall) == (20.0, 2, 1.0)


def test_all_legit_chooses_thresholds_that_never_fire() -> None:
    outcome = optimise_thresholds([0.0, 0.3, 1.0], [0, 0, 0]).outcome
    assert outcome.review_threshold == outcome.decline_threshold == NEVER_FIRES
    assert outcome.total_cost == 0.0


def test_all_fraud_declines_everything() -> None:
    outcome = optimise_thresholds([0.0, 0.3, 1.0], [1, 1, 1]).outcome
    assert (outcome.review_threshold, outcome.decline_threshold) == (0.0, 0.0)
    assert (outcome.total_cost, outcome.recall) == (0.0, 1.0)


def test_min_recall_forces_reviews_that_cost_more_than_the_misses() -> None:
    cheap_fraud = CostModel(cost_fn=1.0, cost_fp=50.0, cost_review=10.0)
    scores, labels = [0.1, 0.4, 0.6, 0.9], [0, 1, 0, 1]
    unconstrained = optimise_thresholds(scores, labels, cheap_fraud, Constraints(0.0)).outcome
    assert (unconstrained.decline_threshold, unconstrained.total_cost) == (0.9, 1.0)
    constrained = optimise_thresholds(scores, labels, cheap_fraud, Constraints(0.0, 1.0)).outcome
    # Reviewing 0.4 and 0.6 while declining 0.9 is the only way to catch both frauds.
    assert (constrained.review_threshold, constrained.decline_threshold) == (0.4, 0.9)
    assert (constrained.total_cost, constrained.recall) == (20.0, 1.0)


def test_unmeetable_min_recall_names_the_constraint_and_best_value() -> None:
    with pytest.raises(
        NoFeasibleThresholds,
        match="min_recall 1.5 cannot be met under max_fpr 0.001: best feasible recall is 1.0",
    ):
        optimise_thresholds([0.1, 0.9], [0, 1], constraints=Constraints(min_recall=1.5))


def test_unmeetable_max_fpr_is_a_value_error_naming_the_constraint() -> None:
    with pytest.raises(ValueError, match="max_fpr -0.1 cannot be met: lowest achievable FPR"):
        optimise_thresholds([0.1, 0.9], [0, 1], constraints=Constraints(max_fpr=-0.1))


def test_review_capacity_trades_reviews_for_a_false_decline() -> None:
    # Unlimited, reviewing the top three (30) is cheapest; with room for one review in four,
    # declining them (one false decline, 50) beats missing a fraud (5000).
    scores, labels = [0.1, 0.2, 0.4, 0.9], [0, 1, 1, 0]
    unlimited = optimise_thresholds(scores, labels, constraints=Constraints(0.5)).outcome
    assert (unlimited.review_threshold, unlimited.decline_threshold) == (0.2, NEVER_FIRES)
    assert (unlimited.reviews, unlimited.total_cost) == (3, 30.0)
    capped = optimise_thresholds(scores, labels, constraints=Constraints(0.5, None, 0.25))
    outcome = capped.outcome
    assert (outcome.review_threshold, outcome.decline_threshold) == (0.2, 0.2)
    assert (outcome.reviews, outcome.total_cost, outcome.recall) == (0, 50.0, 1.0)


def test_zero_review_capacity_leaves_declines_only() -> None:
    scores, labels = [0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1]
    outcome = optimise_thresholds(scores, labels, constraints=Constraints(0.5, None, 0.0)).outcome
    assert outcome.reviews == 0
    assert outcome.review_threshold == outcome.decline_threshold == 0.5


def test_review_capacity_makes_a_recall_floor_infeasible_and_says_so() -> None:
    scores, labels = [0.1, 0.2, 0.4, 0.9], [0, 1, 1, 0]
    with pytest.raises(
        NoFeasibleThresholds,
        match="min_recall 1.0 cannot be met under max_fpr 0.0 and max_review_rate 0.25: "
        "best feasible recall is 0.0",
    ):
        optimise_thresholds(scores, labels, constraints=Constraints(0.0, 1.0, 0.25))


def test_negative_review_capacity_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_review_rate must be None"):
        Constraints(max_review_rate=-0.01)


def test_a_margin_keeps_a_share_of_the_fpr_cap_and_capacity_free() -> None:
    limits = Constraints(max_fpr=0.002, min_recall=0.9, max_review_rate=0.02)
    assert limits.with_margin(0.25) == Constraints(0.0015, 0.9, 0.015)
    assert Constraints(0.002).with_margin(0.5) == Constraints(0.001)
    with pytest.raises(ValueError, match="margin must be in"):
        limits.with_margin(1.0)


def test_invalid_scores_are_rejected_before_searching() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        optimise_thresholds([0.1, 0.9], [1])


ROWS = st.lists(
    st.tuples(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.8, 1.0]) | st.floats(0, 1), st.booleans()),
    min_size=1,
    max_size=25,
)
CONSTRAINTS = st.builds(
    Constraints,
    max_fpr=st.sampled_from([-0.01, 0.0, 0.1, 0.25, 0.5, 1.0]),
    min_recall=st.sampled_from([None, 0.0, 0.5, 0.75, 1.0, 1.01]),
    max_review_rate=st.sampled_from([None, None, 0.0, 0.01, 0.04, 0.1, 0.2, 1 / 3, 0.5, 1.0])
    | st.floats(0, 1),
)


def feasible_or_refused(
    scores: list[float], labels: list[bool], cost: CostModel, constraints: Constraints
) -> list[Outcome]:
    """Brute-force feasible pairs; when there are none, the optimiser must refuse too."""
    feasible = brute_force(scores, labels, cost, constraints)
    if not feasible:
        with pytest.raises(NoFeasibleThresholds):
            optimise_thresholds(scores, labels, cost, constraints)
    return feasible


@settings(max_examples=500)
@given(
    rows=ROWS,
    cost=st.builds(CostModel, *[st.integers(0, 100).map(float)] * 3),
    constraints=CONSTRAINTS,
)
def test_matches_brute_force_pair_and_cost_for_integer_costs(
    rows: list[tuple[float, bool]], cost: CostModel, constraints: Constraints
) -> None:
    scores, labels = (list(column) for column in zip(*rows, strict=True))
    feasible = feasible_or_refused(scores, labels, cost, constraints)
    if not feasible:
        return
    best_cost = min(o.total_cost for o in feasible)
    # Tie-break: highest decline threshold, then highest review threshold.
    expected = max(
        (o for o in feasible if o.total_cost == best_cost),
        key=lambda o: (o.decline_threshold, o.review_threshold),
    )
    assert optimise_thresholds(scores, labels, cost, constraints).outcome == expected


@settings(max_examples=200)
@given(
    rows=ROWS,
    cost=st.builds(CostModel, *[st.floats(0, 1e4)] * 3),
    constraints=CONSTRAINTS,
)
def test_matches_brute_force_cost_for_any_costs(
    rows: list[tuple[float, bool]], cost: CostModel, constraints: Constraints
) -> None:
    scores, labels = (list(column) for column in zip(*rows, strict=True))
    feasible = feasible_or_refused(scores, labels, cost, constraints)
    if not feasible:
        return
    outcome = optimise_thresholds(scores, labels, cost, constraints).outcome
    assert outcome in feasible
    best_cost = min(o.total_cost for o in feasible)
    assert outcome.total_cost == pytest.approx(best_cost, rel=1e-9, abs=1e-9)


@settings(max_examples=200)
@given(rows=st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=400))
def test_chosen_pair_never_reviews_more_than_the_capacity(rows: list[tuple[float, bool]]) -> None:
    scores, labels = (list(column) for column in zip(*rows, strict=True))
    outcome = optimise_thresholds(scores, labels, constraints=Constraints(0.01, None, 0.02)).outcome
    assert outcome.reviews <= 0.02 * len(scores)
    assert outcome.fpr <= 0.01
