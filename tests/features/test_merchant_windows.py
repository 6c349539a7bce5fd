"""The merchant columns of a whole history at once equal the per-row merchant windows."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.features.builder import build_features_row_by_row
from fraudstream.features.definitions import MERCHANT_FEATURE_NAMES
from fraudstream.features.merchant_windows import first_fraud_labels, merchant_feature_columns
from fraudstream.features.transaction import Label, Transaction
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream

BASE_TIME = 1_767_225_600.0
DAY = 86_400.0
DELAYS = (0.0, 0.5 * DAY, 7 * DAY)


def row_by_row(
    transactions: list[Transaction], labels: list[Label], label_delay_s: float
) -> np.ndarray:
    matrix = build_features_row_by_row(transactions, labels, label_delay_s)
    return matrix.features[:, -len(MERCHANT_FEATURE_NAMES) :]


def in_event_order(transactions: list[Transaction]) -> list[Transaction]:
    return sorted(transactions, key=lambda txn: (txn.event_time, txn.txn_id))


@st.composite
def merchant_histories(draw: st.DrawFn) -> tuple[list[Transaction], list[Label], float]:
    """Few merchants, times on a coarse grid (ties, window edges), several labels per
    transaction arriving before or long after the rows that ask."""
    count = draw(st.integers(1, 40))
    offsets = st.sampled_from([0.0, 0.5, 1.0, 7.0, 7.5, 8.0, 14.0, 37.0, 38.0, 45.0])
    transactions = [
        Transaction(f"t{i:03d}", f"c{i % 3}", draw(st.sampled_from(["m1", "m2", "m3"])),
                    10.0, "USD", "US", "pos", BASE_TIME + draw(offsets) * DAY)
        for i in range(count)
    ]  # fmt: skip
    labels = [
        Label(txn.txn_id, draw(st.booleans()), "x",
              txn.event_time + draw(st.sampled_from([0.25, 1.0, 6.5, 7.0, 30.0])) * DAY)
        for txn in transactions
        for _ in range(draw(st.integers(0, 2)))
    ]  # fmt: skip
    return transactions, labels, draw(st.sampled_from(DELAYS))


@settings(max_examples=300, deadline=None)
@given(merchant_histories())
def test_any_history_gives_the_per_row_merchant_columns(
    history: tuple[list[Transaction], list[Label], float],
) -> None:
    transactions, labels, delay = history
    fast = merchant_feature_columns(in_event_order(transactions), labels, delay)
    assert fast.tobytes() == row_by_row(transactions, labels, delay).tobytes()


def test_a_generated_stream_with_known_frauds_gives_the_per_row_columns() -> None:
    stream = generate_stream(GeneratorConfig(transactions=4000, seed=5))
    ordered = in_event_order(list(stream.transactions))
    for delay in DELAYS:
        fast = merchant_feature_columns(ordered, list(stream.labels), delay)
        shares = fast[:, [MERCHANT_FEATURE_NAMES.index(f"merchant_fraud_share_{w}_delayed")
                          for w in ("7d", "30d")]]  # fmt: skip
        assert shares.max() > 0, "known frauds in the windows: the comparison has teeth"
        assert fast.tobytes() == row_by_row(ordered, list(stream.labels), delay).tobytes()


def test_the_earliest_label_of_a_transaction_stands() -> None:
    fraud = Transaction("t1", "c1", "m1", 5.0, "USD", "US", "pos", BASE_TIME)
    later = Transaction("t2", "c2", "m1", 5.0, "USD", "US", "pos", BASE_TIME + 1.5 * DAY)
    labels = [Label("t1", True, "x", BASE_TIME + 2.5 * DAY),
              Label("t1", True, "x", BASE_TIME + DAY)]  # fmt: skip
    assert first_fraud_labels(labels) == {"t1": BASE_TIME + DAY}
    [_, row] = merchant_feature_columns([fraud, later], labels, label_delay_s=DAY)
    share_1d = MERCHANT_FEATURE_NAMES.index("merchant_fraud_share_1d_delayed")
    # t1 lies in [t2 - 2 d, t2 - 1 d); known from its first label (a day after it), before
    # t2; its second label alone (2.5 days after it) would come too late for t2.
    assert row[share_1d] == 1.0
    [_, late_only] = merchant_feature_columns([fraud, later], labels[:1], label_delay_s=DAY)
    assert late_only[share_1d] == 0.0
