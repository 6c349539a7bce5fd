"""Offline feature builder: a historical stream in, a point-in-time training matrix out.

Transactions are replayed in `(event_time, txn_id)` order through in-memory window state,
so each row sees only earlier events; a fraud label informs the merchant features only
once its `label_time` has passed, and only those of the transactions that ended their
label delay before the row. This is the oracle the online store is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.definitions import (
    DEFAULT_LABEL_DELAY_S,
    FEATURE_NAMES,
    MERCHANT_COUNT_WINDOW_SECONDS,
    MERCHANT_RISK_WINDOWS,
    NO_MERCHANT_HISTORY,
    MerchantCounts,
    feature_vector,
)
from fraudstream.features.transaction import Label, Transaction
from fraudstream.features.windows import (
    WINDOWS,
    CardEvent,
    CardHistory,
    MerchantHistory,
    merchant_retention_seconds,
)


@dataclass(frozen=True)
class FeatureMatrix:
    """Rows in the order of `transactions`; `is_fraud` is NaN where no label is known."""

    transactions: list[Transaction]
    features: NDArray[np.float64]
    is_fraud: NDArray[np.float64]
    scenarios: list[str]
    feature_names: tuple[str, ...] = FEATURE_NAMES


class PointInTimeState:
    """In-memory card and merchant windows, fed in event order.

    `label_delay_s` is the label delay D the merchant risk windows end before each
    transaction (see `MerchantCounts`).
    """

    def __init__(self, label_delay_s: float = DEFAULT_LABEL_DELAY_S) -> None:
        self.cards: dict[str, CardHistory] = {}
        self.merchants: dict[str, MerchantHistory] = {}
        self.label_delay_s = label_delay_s

    def merchant_counts(self, txn: Transaction) -> MerchantCounts:
        history = self.merchants.get(txn.merchant_id)
        if history is None:
            return NO_MERCHANT_HISTORY
        t = txn.event_time
        end = t - self.label_delay_s
        starts = [end - WINDOWS[window] for window in MERCHANT_RISK_WINDOWS]
        return MerchantCounts(
            txn_count_1d=history.transactions_between(
                t - MERCHANT_COUNT_WINDOW_SECONDS, t, txn.txn_id
            ),
            delayed_txns=tuple(history.transactions_in(start, end) for start in starts),
            delayed_frauds=tuple(history.frauds_known_in(start, end, t) for start in starts),
        )

    def _merchant(self, merchant_id: str) -> MerchantHistory:
        history = self.merchants.get(merchant_id)
        if history is None:
            retention = merchant_retention_seconds(self.label_delay_s)
            history = self.merchants[merchant_id] = MerchantHistory(retention)
        return history

    def features_then_record(self, txn: Transaction) -> NDArray[np.float64]:
        """The features of `txn` given everything recorded so far; then record `txn`."""
        card = self.cards.setdefault(txn.card_id, CardHistory())
        vector = feature_vector(
            txn, card.before(txn.event_time, txn.txn_id), self.merchant_counts(txn)
        )
        card.add(CardEvent.from_transaction(txn))
        self._merchant(txn.merchant_id).add_transaction(txn.event_time, txn.txn_id)
        return vector

    def record_fraud_label(self, txn: Transaction, label: Label) -> None:
        """Count `label` towards the merchant of `txn`, its transaction, at `txn`'s event time."""
        self._merchant(txn.merchant_id).add_fraud_label(
            txn.event_time, txn.txn_id, label.label_time
        )


def build_features(
    transactions: Sequence[Transaction],
    labels: Sequence[Label] = (),
    label_delay_s: float = DEFAULT_LABEL_DELAY_S,
) -> FeatureMatrix:
    """Point-in-time features for every transaction (returned in event order), the
    merchant risk windows ending `label_delay_s` before each."""
    ordered = sorted(transactions, key=lambda txn: (txn.event_time, txn.txn_id))
    txn_of = {txn.txn_id: txn for txn in ordered}
    label_of = {label.txn_id: label for label in labels}
    frauds_by_arrival = sorted(
        (label for label in labels if label.is_fraud and label.txn_id in txn_of),
        key=lambda label: label.label_time,
    )
    state = PointInTimeState(label_delay_s)
    rows = np.empty((len(ordered), len(FEATURE_NAMES)), dtype=np.float64)
    next_label = 0
    for row, txn in enumerate(ordered):
        while (
            next_label < len(frauds_by_arrival)
            and frauds_by_arrival[next_label].label_time < txn.event_time
        ):
            label = frauds_by_arrival[next_label]
            state.record_fraud_label(txn_of[label.txn_id], label)
            next_label += 1
        rows[row] = state.features_then_record(txn)
    known = [label_of.get(txn.txn_id) for txn in ordered]
    return FeatureMatrix(
        transactions=ordered,
        features=rows,
        is_fraud=np.array([np.nan if label is None else float(label.is_fraud) for label in known]),
        scenarios=["unknown" if label is None else label.scenario for label in known],
    )
