"""The feature store and score store in process memory: no Redis, same vectors.

Built on the offline builder's `PointInTimeState`, so a transaction gets exactly the
vector `build_features` gives it for the same history (tests/features/test_memory_store.py
checks it). Meant for tests and one-process demos: state lives as long as the object,
nothing is shared between processes, and the `txn_id -> transaction` and score maps grow
without bound (Redis expires them). Neither store ever raises.

    >>> import asyncio
    >>> from fraudstream.features.transaction import Transaction
    >>> store = InMemoryFeatureStore()
    >>> txn = Transaction("t1", "c1", "m1", 12.5, "EUR", "FR", "pos", 1_767_225_600.0)
    >>> [row] = asyncio.run(store.record_and_featurize([txn]))
    >>> [again] = asyncio.run(store.record_and_featurize([txn]))  # redelivered: same row
    >>> bool((row == again).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.builder import PointInTimeState
from fraudstream.features.definitions import DEFAULT_LABEL_DELAY_S
from fraudstream.features.stores import ScoredTransaction
from fraudstream.features.transaction import Label, Transaction


class InMemoryFeatureStore:
    """Card and merchant windows in memory; implements `features.stores.FeatureStore`.

    `label_delay_s` is the label delay the merchant risk windows end before a transaction.
    """

    def __init__(self, label_delay_s: float = DEFAULT_LABEL_DELAY_S) -> None:
        self._state = PointInTimeState(label_delay_s)
        self._seen: dict[str, Transaction] = {}
        self._digest_of: dict[str, str] = {}
        self.resets = 0  # process memory is never wiped under a running store
        self.partial_history_until: float | None = None

    async def record_and_featurize(
        self, transactions: Sequence[Transaction]
    ) -> list[NDArray[np.float64]]:
        vectors = []
        for txn in transactions:
            vectors.append(self._state.features_then_record(txn))
            self._seen.setdefault(txn.txn_id, txn)
        return vectors

    async def claim(self, transactions: Sequence[Transaction]) -> list[bool]:
        conflicting = []
        for txn in transactions:
            digest = txn.digest()
            conflicting.append(self._digest_of.setdefault(txn.txn_id, digest) != digest)
        return conflicting

    async def record_labels(self, labels: Sequence[Label]) -> int:
        matched = 0
        for label in labels:
            txn = self._seen.get(label.txn_id)
            if label.is_fraud and txn is not None:
                self._state.record_fraud_label(txn, label)
                matched += 1
        return matched

    def forget_cached_cards(self) -> None:
        """Nothing to forget: this memory is the store itself, not a copy of shared state."""


class InMemoryScoreStore:
    """Decision scores by `txn_id` in memory; implements `features.stores.ScoreStore`."""

    def __init__(self) -> None:
        self._scores: dict[str, tuple[float, float]] = {}

    async def record_scores(self, scored: Sequence[ScoredTransaction]) -> None:
        for txn_id, event_time, score in scored:
            self._scores[txn_id] = (event_time, score)

    async def scores_for(self, txn_ids: Sequence[str]) -> list[tuple[float, float] | None]:
        return [self._scores.get(txn_id) for txn_id in txn_ids]
