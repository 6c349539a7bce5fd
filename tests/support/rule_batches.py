"""Small hand-made batches for the rules tests: transactions and their feature rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.transaction import Transaction


def transaction(
    txn_id: str = "t1",
    card_id: str = "c1",
    merchant_id: str = "m1",
    country: str = "US",
    channel: str = "pos",
    amount: float = 10.0,
) -> Transaction:
    return Transaction(txn_id=txn_id, card_id=card_id, merchant_id=merchant_id, amount=amount,
                       currency="USD", country=country, channel=channel,
                       event_time=1_760_000_000.0)  # fmt: skip


def feature_rows(
    transactions: Sequence[Transaction], features: Sequence[Mapping[str, float]] = ()
) -> NDArray[np.float64]:
    """Zero rows but for `amount` (the transaction's) and the features given per row."""
    rows = np.zeros((len(transactions), len(FEATURE_NAMES)))
    rows[:, FEATURE_NAMES.index("amount")] = [txn.amount for txn in transactions]
    for row, values in zip(rows, features, strict=False):
        for name, value in values.items():
            row[FEATURE_NAMES.index(name)] = value
    return rows
