"""The threshold pair: what it decides, what it refuses, where it comes from."""

from __future__ import annotations

import pytest

from fraudstream.thresholds.cost import NEVER_FIRES
from fraudstream.thresholds.online import ThresholdState
from fraudstream.thresholds.pair import ThresholdPair


def test_a_pair_decides_at_or_above_each_threshold() -> None:
    pair = ThresholdPair("v1", review=0.1, decline=0.6)
    assert [pair.decide(s) for s in (0.0, 0.1, 0.59, 0.6, 1.0)] == [
        "approve", "review", "review", "decline", "decline",
    ]  # fmt: skip
    assert ThresholdPair("v2", 0.1, NEVER_FIRES).decide(1.0) == "review"


@pytest.mark.parametrize(("review", "decline"), [(0.7, 0.6), (-0.1, 0.5), (0.1, float("inf"))])
def test_a_pair_out_of_order_is_refused(review: float, decline: float) -> None:
    with pytest.raises(ValueError, match="0 <= review <= decline"):
        ThresholdPair("bad", review, decline)


def test_registry_and_group_pairs_are_named_after_their_source() -> None:
    metadata = {"thresholds": {"ensemble": {"review": 0.02, "decline": 0.7,
                                            "validation_cost_per_txn": 5.8}}}  # fmt: skip
    expected = ThresholdPair("v0003-static", 0.02, 0.7)
    assert ThresholdPair.from_registry("v0003", metadata) == expected
    state = ThresholdState(12, 0.03, 0.65, "moved", {"frauds": 120})
    assert state.pair == ThresholdPair("v12", 0.03, 0.65)
