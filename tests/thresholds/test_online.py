import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fraudstream.thresholds.cost import CostModel, evaluate_thresholds
from fraudstream.thresholds.online import (
    GuardRails,
    LabelledWindow,
    ThresholdState,
    recalibrate,
)
from fraudstream.thresholds.optimise import Constraints, optimise_thresholds

DAY = 86_400.0
TOLERANCE = 1e-12
LOOSE = Constraints(max_fpr=1.0)
#: Rails that jump straight to the target, so a test sees the optimum itself.
FREE_RAILS = GuardRails(
    min_frauds=1, min_legits=1, max_step=1.0, smoothing=1.0,
    review_bounds=(0.0, 1.0), decline_bounds=(0.0, 1.0), min_change=0.0,
)  # fmt: skip


def window_of(scores: list[float], labels: list[bool]) -> LabelledWindow:
    window = LabelledWindow()
    for i, (score, label) in enumerate(zip(scores, labels, strict=True)):
        window.add(float(i), score, label)
    return window


def separated_window(fraud_at: float, legit_at: float, seed: int = 0) -> LabelledWindow:
    """Frauds scored near `fraud_at`, legit near `legit_at`: the optimum sits between."""
    rng = np.random.default_rng(seed)
    frauds = np.clip(rng.normal(fraud_at, 0.02, 60), 0, 1)
    legits = np.clip(rng.normal(legit_at, 0.02, 1500), 0, 1)
    return window_of([*frauds, *legits], [True] * 60 + [False] * 1500)


def state(review: float, decline: float, version: int = 1) -> ThresholdState:
    return ThresholdState(version, review, decline, "test", {})


def test_window_evicts_by_event_time_not_arrival_order() -> None:
    window = LabelledWindow(max_age_s=DAY)
    window.add(10 * DAY, 0.9, True)
    window.add(1 * DAY, 0.1, False)  # a late label for an old decision
    window.add(9.5 * DAY, 0.2, False)
    assert window.evict(now=10 * DAY) == 1
    assert (window.frauds, window.legits, len(window)) == (1, 1, 2)
    scores, labels = window.arrays()
    pairs = sorted(zip(scores.tolist(), labels.tolist(), strict=True))
    assert pairs == [(0.2, False), (0.9, True)]


def test_window_over_capacity_drops_the_oldest_decision() -> None:
    window = LabelledWindow(max_size=2)
    window.add(5.0, 0.5, True)
    window.add(1.0, 0.1, False)
    window.add(3.0, 0.3, False)
    assert sorted(window.arrays()[0].tolist()) == [0.3, 0.5]
    assert (window.frauds, window.legits) == (1, 1)


def test_window_rejects_a_score_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="within"):
        LabelledWindow().add(0.0, 1.5, True)


def test_no_change_below_the_minimum_labels() -> None:
    window = window_of([0.9] * 12 + [0.1] * 5000, [True] * 12 + [False] * 5000)
    result = recalibrate(state(0.01, 0.9), window)
    assert not result.accepted
    assert result.state == state(0.01, 0.9)
    assert result.reason == "only 12 labelled frauds, need 30"
    few_legits = window_of([0.9] * 40 + [0.1] * 10, [True] * 40 + [False] * 10)
    assert "need 1000" in recalibrate(state(0.01, 0.9), few_legits).reason


def test_accepted_move_is_step_limited_and_versioned() -> None:
    result = recalibrate(state(0.001, 0.9, version=7), separated_window(0.6, 0.2))
    assert result.accepted
    assert result.state.version == 8
    assert result.state.review == pytest.approx(0.051)
    assert result.state.decline == pytest.approx(0.85)
    assert "review 0.0010→0.0510" in result.reason and "step-limited" in result.reason
    assert result.figures["frauds"] == 60 and result.figures["legits"] == 1500
    assert {"target_review", "cost_per_txn_current", "cost_per_txn_new"} <= set(result.figures)
    json.dumps(result.state.to_dict())  # figures stay JSON-able for the shared store


def test_target_within_min_change_is_not_a_new_version() -> None:
    window = separated_window(0.6, 0.2)
    choice = optimise_thresholds(*window.arrays()).outcome
    target_decline = min(choice.decline_threshold, 0.99)
    current = state(min(choice.review_threshold, 0.5), target_decline + 0.0004)
    result = recalibrate(current, window)
    assert not result.accepted and result.state is current
    assert result.reason == "target within 0.0005 of current"


def test_current_pair_outside_hard_bounds_is_pulled_inside() -> None:
    # Everything scores 0.2: reviewing is the optimum, declining never fires (target 0.99).
    window = window_of([0.2] * 40, [True] * 20 + [False] * 20)
    rails = GuardRails(min_frauds=1, min_legits=1)
    result = recalibrate(state(0.01, 1.0), window, rails=rails)
    assert result.accepted
    assert result.state.decline == 0.99
    assert result.state.review == pytest.approx(0.01 + 0.05)


def test_small_gap_moves_by_min_change_not_by_a_fraction() -> None:
    # Review target is 0.2 (all frauds there), decline never fires: 0.0008 is left to go.
    window = window_of([0.2] * 40, [True] * 20 + [False] * 20)
    rails = GuardRails(min_frauds=1, min_legits=1)
    result = recalibrate(state(0.1992, 0.99), window, rails=rails)
    assert result.state.review == pytest.approx(0.1997)
    assert "smoothed" in result.reason


def test_review_is_clamped_to_a_decline_that_did_not_move() -> None:
    # Review's target lies 0.0004 above the current decline: decline stays (within
    # min_change), review jumps to its target and must not pass the decline threshold.
    window = window_of([0.3004] * 40, [True] * 40)
    rails = GuardRails(min_frauds=1, min_legits=0, smoothing=1.0, max_step=0.5)
    result = recalibrate(state(0.1, 0.3), window, rails=rails, constraints=LOOSE)
    assert result.figures["target_review"] == pytest.approx(0.3004)
    assert (result.state.review, result.state.decline) == (0.3, 0.3)


def test_state_round_trips_through_json() -> None:
    original = ThresholdState(3, 0.02, 0.8, "moved", {"frauds": 40, "cost": 1.5})
    assert ThresholdState.from_dict(json.loads(json.dumps(original.to_dict()))) == original
    with pytest.raises(ValueError, match="review <= decline"):
        state(0.9, 0.5)


def test_rails_reject_review_bounds_above_decline_bounds() -> None:
    with pytest.raises(ValueError, match="review_bounds"):
        GuardRails(review_bounds=(0.1, 0.995))


def converge(
    current: ThresholdState, window: LabelledWindow, rails: GuardRails, limit: int = 200
) -> tuple[ThresholdState, int]:
    for steps in range(limit):
        result = recalibrate(current, window, rails=rails, constraints=LOOSE)
        if not result.accepted:
            return current, steps
        current = result.state
    raise AssertionError(f"no convergence within {limit} recalibrations")


def test_far_moved_optimum_is_reached_in_bounded_steps() -> None:
    rails = GuardRails(min_frauds=1, min_legits=1)
    window = separated_window(0.55, 0.15)
    target = recalibrate(state(0.001, 0.9), window, rails=rails, constraints=LOOSE).figures
    final, steps = converge(state(0.001, 0.9), window, rails)
    distance = max(abs(target["target_review"] - 0.001), abs(target["target_decline"] - 0.9))
    # Full steps while half the distance exceeds max_step, then halving down to min_change.
    most = math.ceil(distance / rails.max_step) + math.ceil(math.log2(0.1 / 0.0005)) + 1
    assert math.ceil(distance / rails.max_step) <= steps <= most
    assert abs(final.review - target["target_review"]) <= rails.min_change
    assert abs(final.decline - target["target_decline"]) <= rails.min_change


scores_and_labels = st.integers(2, 80).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0, 1), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)
rails_strategy = st.builds(
    GuardRails,
    min_frauds=st.just(1),
    min_legits=st.just(1),
    max_step=st.floats(0.001, 0.3),
    smoothing=st.floats(0.05, 1.0),
    min_change=st.floats(0.0, 0.001),
)


@st.composite
def inside_bounds(draw: st.DrawFn, rails: GuardRails) -> ThresholdState:
    decline = draw(st.floats(*rails.decline_bounds))
    review = draw(st.floats(rails.review_bounds[0], min(rails.review_bounds[1], decline)))
    return state(review, decline)


@settings(max_examples=300, deadline=None)
@given(scores_and_labels, rails_strategy, st.data())
def test_moves_respect_step_bounds_and_order(
    labelled: tuple[list[float], list[bool]], rails: GuardRails, data: st.DataObject
) -> None:
    current = data.draw(inside_bounds(rails))
    result = recalibrate(current, window_of(*labelled), rails=rails)
    new = result.state
    assert rails.review_bounds[0] <= new.review <= rails.review_bounds[1]
    assert rails.decline_bounds[0] <= new.decline <= rails.decline_bounds[1]
    assert new.review <= new.decline
    assert abs(new.review - current.review) <= rails.max_step + TOLERANCE
    assert abs(new.decline - current.decline) <= rails.max_step + TOLERANCE
    if result.accepted:
        assert new.version == current.version + 1
        assert (new.review, new.decline) != (current.review, current.decline)
        floor = rails.min_change - TOLERANCE
        assert new.decline == current.decline or abs(new.decline - current.decline) >= floor
        # Review may move less only when clamped to the new decline threshold.
        assert (
            new.review in (current.review, new.decline) or abs(new.review - current.review) >= floor
        )
    else:
        assert new is current


@settings(max_examples=150, deadline=None)
@given(scores_and_labels, rails_strategy, st.data())
def test_stationary_window_converges_to_the_bounded_target(
    labelled: tuple[list[float], list[bool]], rails: GuardRails, data: st.DataObject
) -> None:
    assume(any(labelled[1]) and not all(labelled[1]))
    window = window_of(*labelled)
    start = data.draw(inside_bounds(rails))
    final, _ = converge(start, window, rails, limit=2000)
    optimum = optimise_thresholds(*labelled, constraints=LOOSE).outcome
    decline = min(max(optimum.decline_threshold, 0.05), 0.99)
    review = min(max(optimum.review_threshold, 0.0005), 0.5, decline)
    assert abs(final.decline - decline) <= rails.min_change + TOLERANCE
    assert abs(final.review - review) <= rails.min_change + TOLERANCE


@settings(max_examples=300, deadline=None)
@given(
    scores_and_labels,
    st.floats(0, 1),
    st.floats(0, 1),
    st.builds(CostModel, st.floats(0, 1e4), st.floats(0, 1e3), st.floats(0, 1e2)),
)
def test_unsmoothed_move_never_costs_more_on_the_window(
    labelled: tuple[list[float], list[bool]], first: float, second: float, cost: CostModel
) -> None:
    rails = GuardRails(
        min_frauds=0,
        min_legits=0,
        max_step=2.0,
        smoothing=1.0,
        review_bounds=(0.0, 2.0),
        decline_bounds=(0.0, 2.0),
        min_change=0.0,
    )
    current = state(min(first, second), max(first, second))
    result = recalibrate(current, window_of(*labelled), cost, LOOSE, rails)
    before = evaluate_thresholds(*labelled, current.review, current.decline, cost)
    after = evaluate_thresholds(*labelled, result.state.review, result.state.decline, cost)
    assert after.total_cost <= before.total_cost + 1e-9 * max(1.0, before.total_cost)
    if result.accepted:
        assert result.figures["cost_per_txn_new"] == pytest.approx(after.cost_per_txn)


def test_labelled_decisions_count_only_once_they_have_matured() -> None:
    window = LabelledWindow(max_age_s=30 * DAY, maturity_s=10 * DAY)
    window.add(decision_time=0.0, score=0.9, is_fraud=True)
    window.add(decision_time=5 * DAY, score=0.1, is_fraud=False)
    window.evict(now=9 * DAY)
    assert (window.frauds, window.legits, len(window)) == (0, 0, 0)
    window.evict(now=12 * DAY)
    assert (window.frauds, window.legits) == (1, 0)
    window.evict(now=15 * DAY)
    assert (window.frauds, window.legits, window.released) == (1, 1, 2)
    assert sorted(window.arrays()[0].tolist()) == [0.1, 0.9]


def test_recall_floor_yields_to_the_review_capacity_and_says_why() -> None:
    # Frauds near 0.5 and legit near 0.45 overlap: catching 97 % of the 60 frauds takes more
    # reviews than the 31 a 2 % capacity allows, or more false declines than the FPR cap.
    window = separated_window(fraud_at=0.5, legit_at=0.45)
    capped = Constraints(max_fpr=0.001, min_recall=0.97, max_review_rate=0.02)
    attempt = recalibrate(state(0.3, 0.9), window, CostModel(), capped, FREE_RAILS)
    assert attempt.accepted
    assert "min_recall 0.97 cannot be met" in attempt.figures["recall_floor_yielded"]
    assert attempt.figures["review_rate_new"] <= 0.02
    assert attempt.figures["fpr_new"] <= 0.001
    unfloored = replace(capped, min_recall=None)
    optimum = optimise_thresholds(*window.arrays(), CostModel(), unfloored).outcome
    assert (attempt.state.review, attempt.state.decline) == (
        optimum.review_threshold,
        optimum.decline_threshold,
    )


def test_a_feasible_recall_floor_holds_and_is_not_reported_as_yielded() -> None:
    window = separated_window(fraud_at=0.8, legit_at=0.2)
    floored = Constraints(max_fpr=0.001, min_recall=0.97, max_review_rate=0.02)
    attempt = recalibrate(state(0.3, 0.9), window, CostModel(), floored, FREE_RAILS)
    assert attempt.accepted
    assert "recall_floor_yielded" not in attempt.figures
    assert attempt.figures["recall_new"] >= 0.97
