"""Offline feature builder: a historical stream in, a point-in-time training matrix out.

Transactions are replayed in `(event_time, txn_id)` order through in-memory window state,
so each row sees only earlier events; a fraud label informs the merchant features only
once its `label_time` has passed. This is the oracle the online store is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.definitions import (
    FEATURE_NAMES,
    MERCHANT_COUNT_WINDOW_SECONDS,
    MERCHANT_RATE_WINDOW_SECONDS,
    MerchantCounts,
    feature_vector,
)
from fraudstream.features.transaction import Label, Transaction
from fraudstream.features.windows import CardEvent, CardHistory, MerchantHistory


@dataclass(frozen=True)
class FeatureMatrix:
    """Rows in the order of `transactions`; `is_fraud` is NaN where no label is known."""

    transactions: list[Transaction]
    features: NDArray[np.float64]
    is_fraud: NDArray[np.float64]
    scenarios: list[str]
    feature_names: tuple[str, ...] = FEATURE_NAMES


class PointInTimeState:
    """In-memory card and merchant windows, fed in event order."""

    def __init__(self) -> None:
        self.cards: dict[str, CardHistory] = {}
        self.merchants: dict[str, MerchantHistory] = {}

    def merchant_counts(self, txn: Transaction) -> MerchantCounts:
        history = self.merchants.get(txn.merchant_id)
        if history is None:
            return MerchantCounts(0, 0, 0)
        t = txn.event_time
        return MerchantCounts(
            txn_count_1d=history.transactions_between(
                t - MERCHANT_COUNT_WINDOW_SECONDS, t, txn.txn_id
            ),
            txn_count_30d=history.transactions_between(
                t - MERCHANT_RATE_WINDOW_SECONDS, t, txn.txn_id
            ),
            fraud_labels_30d=history.frauds_labelled_between(t - MERCHANT_RATE_WINDOW_SECONDS, t),
        )

    def features_then_record(self, txn: Transaction) -> NDArray[np.float64]:
        """The features of `txn` given everything recorded so far; then record `txn`."""
        card = self.cards.setdefault(txn.card_id, CardHistory())
        vector = feature_vector(
            txn, card.before(txn.event_time, txn.txn_id), self.merchant_counts(txn)
        )
        card.add(CardEvent.from_transaction(txn))
        self.merchants.setdefault(txn.merchant_id, MerchantHistory()).add_transaction(
            txn.event_time, txn.txn_id
        )
        return vector

    def record_fraud_label(self, merchant_id: str, label: Label) -> None:
        self.merchants.setdefault(merchant_id, MerchantHistory()).add_fraud_label(
            label.label_time, label.txn_id
        )


def build_features(
    transactions: Sequence[Transaction], labels: Sequence[Label] = ()
) -> FeatureMatrix:
    """Point-in-time features for every transaction (returned in event order)."""
    ordered = sorted(transactions, key=lambda txn: (txn.event_time, txn.txn_id))
    merchant_of = {txn.txn_id: txn.merchant_id for txn in ordered}
    label_of = {label.txn_id: label for label in labels}
    frauds_by_arrival = sorted(
        (label for label in labels if label.is_fraud and label.txn_id in merchant_of),
        key=lambda label: label.label_time,
    )
    state = PointInTimeState()
    rows = np.empty((len(ordered), len(FEATURE_NAMES)), dtype=np.float64)
    next_label = 0
    for row, txn in enumerate(ordered):
        while (
            next_label < len(frauds_by_arrival)
            and frauds_by_arrival[next_label].label_time < txn.event_time
        ):
            label = frauds_by_arrival[next_label]
            state.record_fraud_label(merchant_of[label.txn_id], label)
            next_label += 1
        rows[row] = state.features_then_record(txn)
    known = [label_of.get(txn.txn_id) for txn in ordered]
    return FeatureMatrix(
        transactions=ordered,
        features=rows,
        is_fraud=np.array([np.nan if label is None else float(label.is_fraud) for label in known]),
        scenarios=["unknown" if label is None else label.scenario for label in known],
    )
