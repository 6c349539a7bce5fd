"""The offline builder is point-in-time: no row sees the future."""

from __future__ import annotations

import numpy as np

from fraudstream.features.builder import build_features
from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.transaction import Label, Transaction

T0 = 1_767_225_600.0
DAY = 86_400.0


def txn(txn_id: str, card: str, merchant: str, t: float, amount: float = 20.0) -> Transaction:
    return Transaction(txn_id, card, merchant, amount, "USD", "US", "pos", t, 40.0, -74.0)


def column(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_rows_do_not_change_when_later_events_are_added() -> None:
    history = [txn(f"t{i}", f"c{i % 3}", f"m{i % 2}", T0 + i * 3000.0) for i in range(40)]
    future = [txn(f"u{i}", f"c{i % 3}", "m0", T0 + 200_000.0 + i, 999.0) for i in range(10)]
    before = build_features(history).features
    after = build_features(history + future).features[: len(history)]
    np.testing.assert_array_equal(before, after)


def test_merchant_fraud_label_counts_only_after_its_label_time() -> None:
    stream = [
        txn("a", "c1", "m1", T0),
        txn("b", "c2", "m1", T0 + 1 * DAY),
        txn("c", "c3", "m1", T0 + 3 * DAY),
    ]
    labels = [Label("a", True, "compromised_merchant", T0 + 2 * DAY)]
    rows = build_features(stream, labels)
    frauds = rows.features[:, column("merchant_fraud_labels_30d")]
    assert frauds.tolist() == [0.0, 0.0, 1.0]
    assert rows.features[2, column("merchant_fraud_rate_30d")] == 0.5


def test_window_counts_and_time_since_last_for_one_card() -> None:
    stream = [
        txn("a", "c1", "m1", T0, 10.0),
        txn("b", "c1", "m2", T0 + 1800.0, 30.0),
        txn("c", "c1", "m1", T0 + 2 * DAY, 50.0),
    ]
    rows = build_features(stream).features
    assert rows[:, column("count_1h")].tolist() == [0.0, 1.0, 0.0]
    assert rows[:, column("count_7d")].tolist() == [0.0, 1.0, 2.0]
    assert rows[2, column("mean_amount_30d")] == 20.0
    assert rows[2, column("distinct_merchants_7d")] == 2.0
    assert rows[1, column("seconds_since_last")] == 1800.0
    assert rows[:, column("is_new_merchant")].tolist() == [1.0, 1.0, 0.0]


def test_labels_align_with_event_order() -> None:
    stream = [txn("late", "c1", "m1", T0 + 10.0), txn("early", "c1", "m1", T0)]
    labels = [Label("late", True, "stolen_card", T0 + DAY)]
    rows = build_features(stream, labels)
    assert [t.txn_id for t in rows.transactions] == ["early", "late"]
    assert np.isnan(rows.is_fraud[0]) and rows.is_fraud[1] == 1.0
    assert rows.scenarios == ["unknown", "stolen_card"]
