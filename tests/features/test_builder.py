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


def test_merchant_risk_counts_frauds_of_the_delayed_windows_known_at_the_transaction() -> None:
    """D = 7 days: each row's windows end at t - 7 d; a fraud counts once its label is in."""
    days = {"a": 0, "b": 1, "c": 5, "w": 8, "x": 9, "y": 10, "v": 20, "z": 21}
    stream = [txn(name, f"card-{name}", "m1", T0 + day * DAY) for name, day in days.items()]
    stream.append(txn("elsewhere", "card-e", "m2", T0 + 9 * DAY))
    labels = [
        Label("a", True, "compromised_merchant", T0 + 2 * DAY),
        Label("b", True, "compromised_merchant", T0 + 20 * DAY),  # long after b's windows open
        Label("c", False, "legit", T0 + 3 * DAY),
        Label("elsewhere", True, "stolen_card", T0 + 10 * DAY),  # another merchant's fraud
    ]
    rows = build_features(stream, labels, label_delay_s=7 * DAY)
    m1 = [i for i, t in enumerate(rows.transactions) if t.merchant_id == "m1"]

    def values(name: str) -> list[float]:
        return rows.features[m1, column(name)].tolist()

    # rows a b c w x y v z; w: [T0, T0+1d) holds a, not b (the end is open); x: the 1-day
    # window [T0+1d, T0+2d) holds b, whose label comes at T0+20d, so no known fraud; v at
    # T0+20d: b's label arrives at t exactly, not before, so only a counts; z: both do.
    assert values("merchant_txn_count_1d_delayed") == [0, 0, 0, 1, 1, 0, 0, 0]
    assert values("merchant_fraud_share_1d_delayed") == [0, 0, 0, 1, 0, 0, 0, 0]
    assert values("merchant_txn_count_7d_delayed") == [0, 0, 0, 1, 2, 2, 3, 3]
    assert values("merchant_fraud_share_7d_delayed") == [0, 0, 0, 1, 0.5, 0.5, 0, 0]
    assert values("merchant_txn_count_30d_delayed") == [0, 0, 0, 1, 2, 2, 6, 6]
    assert values("merchant_fraud_share_30d_delayed") == [0, 0, 0, 1, 0.5, 0.5, 1 / 6, 2 / 6]


def test_a_shorter_label_delay_moves_the_windows_closer_to_the_transaction() -> None:
    stream = [txn("a", "c1", "m1", T0), txn("b", "c2", "m1", T0 + 2 * DAY)]
    labels = [Label("a", True, "compromised_merchant", T0 + DAY)]
    share = column("merchant_fraud_share_1d_delayed")
    assert build_features(stream, labels, label_delay_s=1.5 * DAY).features[1, share] == 1.0
    assert build_features(stream, labels, label_delay_s=7 * DAY).features[1, share] == 0.0


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
