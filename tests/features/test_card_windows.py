"""The fast offline build equals the row-by-row reference to the bit, edge cases included."""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.features import windows
from fraudstream.features.builder import (
    FeatureMatrix,
    build_features,
    build_features_row_by_row,
)
from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.transaction import CHANNELS, Label, Transaction
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream

BASE_TIME = 1_767_225_600.0
HOUR = 3600.0
DAY = 86_400.0
#: Small window caps, so that a test can exceed them with a few dozen events.
SMALL_CAP = 6


def assert_identical(fast: FeatureMatrix, reference: FeatureMatrix) -> None:
    """Same rows in the same order, every feature equal to the bit (not approximately)."""
    assert [t.txn_id for t in fast.transactions] == [t.txn_id for t in reference.transactions]
    assert fast.features.tobytes() == reference.features.tobytes()
    np.testing.assert_array_equal(fast.is_fraud, reference.is_fraud)
    assert fast.scenarios == reference.scenarios


@pytest.fixture
def small_caps() -> Iterator[None]:
    """`MAX_CARD_EVENTS` and `STORED_CARD_EVENTS` small enough to reach in a test."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(windows, "MAX_CARD_EVENTS", SMALL_CAP)
        patch.setattr(windows, "STORED_CARD_EVENTS", 2 * SMALL_CAP)
        yield


@pytest.mark.parametrize("seed", [3, 11])
def test_generated_stream_features_equal_the_reference_in_any_input_order(seed: int) -> None:
    stream = generate_stream(GeneratorConfig(transactions=3000, seed=seed))
    shuffled = list(stream.transactions)
    random.Random(seed).shuffle(shuffled)
    reference = build_features_row_by_row(stream.transactions, stream.labels)
    assert np.isfinite(reference.features).all()
    assert_identical(build_features(shuffled, stream.labels), reference)


def test_a_card_beyond_the_event_caps_saturates_like_the_reference(small_caps: None) -> None:
    busy = [
        Transaction(
            f"b{i:03d}", "bot", f"m{i % 9}", 1.0 + i, "USD", "US", "ecom", BASE_TIME + 60.0 * i
        )  # fmt: skip
        for i in range(5 * SMALL_CAP)
    ]
    quiet = [Transaction("q1", "quiet", "m1", 5.0, "USD", "US", "pos", BASE_TIME)]
    fast = build_features(busy + quiet)
    assert_identical(fast, build_features_row_by_row(busy + quiet))
    count_1h = fast.features[:, FEATURE_NAMES.index("count_1h")]
    assert count_1h.max() == SMALL_CAP


def test_window_totals_are_exactly_rounded_sums() -> None:
    # Added one by one, ten amounts of 0.1 make 0.9999999999999999; exactly rounded, 1.0.
    txns = [
        Transaction(f"t{i}", "c1", "m1", 0.1, "USD", "US", "pos", BASE_TIME + i) for i in range(11)
    ]
    fast = build_features(txns)
    assert_identical(fast, build_features_row_by_row(txns))
    assert fast.features[-1, FEATURE_NAMES.index("total_amount_1h")] == 1.0


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Transaction], list[Label]]:
    """Several cards' transactions in any order, with what makes windows hard: reused
    txn_ids (same or other content), equal timestamps, missing coordinates, cards of one
    event, events past the retention, amounts from tiny to the maximum."""
    count = draw(st.integers(min_value=1, max_value=50))
    offsets = (0.0, 1.0, 59.0, HOUR, HOUR + 0.5, DAY, 7 * DAY, 30 * DAY, 45 * DAY)
    times = st.sampled_from([BASE_TIME + offset for offset in offsets])
    transactions = []
    for _ in range(count):
        located = draw(st.booleans())
        transactions.append(
            Transaction(
                txn_id=f"t{len(transactions)}",
                card_id=draw(st.sampled_from(["c1", "c2", "c3", f"solo{len(transactions)}"])),
                merchant_id=draw(st.sampled_from(["m1", "m2", "m3"])),
                amount=draw(st.floats(min_value=5e-324, max_value=1e6)),
                currency="USD",
                country=draw(st.sampled_from(["US", "GB", "JP", "IN"])),
                channel=draw(st.sampled_from(CHANNELS)),
                event_time=draw(times) + draw(st.sampled_from([0.0, 0.25, 3000.0])),
                lat=draw(st.floats(-90, 90)) if located else None,
                lon=draw(st.floats(-180, 180)) if located else None,
            )
        )
    for reused in draw(st.lists(st.sampled_from(transactions), max_size=3)):
        moved = reused.event_time + draw(st.sampled_from([0.0, -HOUR, DAY, 40 * DAY]))
        transactions.append(replace(reused, event_time=moved, amount=reused.amount / 2))
    for redelivered in draw(st.lists(st.sampled_from(transactions), max_size=3)):
        transactions.append(redelivered)
    transactions = draw(st.permutations(transactions))
    labels = [
        Label(txn.txn_id, draw(st.booleans()), "stolen_card", txn.event_time + DAY)
        for txn in transactions
        if draw(st.booleans())
    ]
    return transactions, labels


@settings(max_examples=300, deadline=None)
@given(histories())
def test_any_history_gives_the_reference_features(
    history: tuple[list[Transaction], list[Label]],
) -> None:
    transactions, labels = history
    assert_identical(
        build_features(transactions, labels), build_features_row_by_row(transactions, labels)
    )


@settings(max_examples=100, deadline=None)
@given(histories())
def test_any_history_gives_the_reference_features_under_small_caps(
    history: tuple[list[Transaction], list[Label]],
) -> None:
    transactions, labels = history
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(windows, "MAX_CARD_EVENTS", SMALL_CAP)
        patch.setattr(windows, "STORED_CARD_EVENTS", 2 * SMALL_CAP)
        assert_identical(
            build_features(transactions, labels), build_features_row_by_row(transactions, labels)
        )


@pytest.mark.parametrize("enabled", [True, False])
def test_a_build_leaves_the_garbage_collector_as_it_found_it(enabled: bool) -> None:
    txns = [Transaction("t1", "c1", "m1", 5.0, "USD", "US", "pos", BASE_TIME)]
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        build_features(txns)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
