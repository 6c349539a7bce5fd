"""What the worker needs from its stores, as two small protocols.

- `FeatureStore` records transactions and fraud labels and returns point-in-time feature
  vectors. `features/store.py` keeps that state in Redis (production);
  `features/memory_store.py` keeps it in process memory (tests, one-process demos).
- `ScoreStore` remembers each decision's score so a late label, which may reach any
  worker, can be joined to it (the online threshold recalibration learns from the pairs).

Both give the vectors of the offline builder (`features/builder.py`) for the same history,
and both are idempotent per `txn_id`: a redelivered transaction is not counted twice.
A store that cannot serve raises `FeatureStoreError` (a score store `ScoreStoreError`, which
is one); the worker then scores the batch as degraded instead of stopping. When only part
of the store failed (one master of a Redis Cluster), `record_and_featurize` raises
`FeatureStorePartlyUnavailable` with the vectors it could serve: only the others are degraded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.transaction import Label, Transaction

#: (txn_id, event_time in epoch seconds, ensemble score in [0, 1]) of one decision.
ScoredTransaction = tuple[str, float, float]


class FeatureStoreError(RuntimeError):
    """The store could not serve features; the worker scores the transaction as degraded."""


class FeatureStorePartlyUnavailable(FeatureStoreError):
    """Some transactions of a batch could not be served; `vectors` holds the others'.

    `vectors[i]` is transaction i's feature vector, or None where its keys live on a part
    of the store that failed (the worker decides those degraded, the rest at full quality).
    """

    def __init__(self, message: str, vectors: list[NDArray[np.float64] | None]) -> None:
        super().__init__(message)
        self.vectors = vectors


class ScoreStoreError(FeatureStoreError):
    """The store could not record or return decision scores; the label loop skips them."""


class FeatureStore(Protocol):
    #: Times the shared windows were found wiped (Redis restarted empty) since start.
    resets: int
    #: After a reset: the event time before which features may miss events lost in it.
    partial_history_until: float | None

    async def record_and_featurize(
        self, transactions: Sequence[Transaction]
    ) -> list[NDArray[np.float64]]:
        """Record a micro-batch (in order) and return each transaction's feature vector.

        A vector sees only events strictly before its transaction in `(event_time, txn_id)`
        order. Recording a transaction again returns the vector it got the first time (as
        long as no earlier-in-time event arrived in between). Raises `FeatureStoreError`
        (`FeatureStorePartlyUnavailable` when some vectors could still be served).
        """
        ...

    async def claim(self, transactions: Sequence[Transaction]) -> list[bool]:
        """Remember each `txn_id`'s content; True for a conflicting duplicate.

        A conflicting duplicate reuses a `txn_id` already claimed with other content (an
        identical redelivery is not one): it must not be decided or recorded. Raises
        `FeatureStoreError`.
        """
        ...

    async def record_labels(self, labels: Sequence[Label]) -> int:
        """Count fraud labels towards their merchant's risk; returns how many were matched.

        Labels of transactions the store never saw (or has forgotten) are skipped.
        Raises `FeatureStoreError`.
        """
        ...

    def forget_cached_cards(self) -> None:
        """Drop card windows held in this process as a copy of shared state.

        Called when partitions are revoked or reassigned: another worker may write those
        cards next. A no-op for a store without such a copy.
        """
        ...


class ScoreStore(Protocol):
    async def record_scores(self, scored: Sequence[ScoredTransaction]) -> None:
        """Remember each decision's (event_time, score) by `txn_id`; a later write wins.

        Raises `ScoreStoreError`.
        """
        ...

    async def scores_for(self, txn_ids: Sequence[str]) -> list[tuple[float, float] | None]:
        """(event_time, score) for each id, in order; None where unknown or expired.

        Raises `ScoreStoreError`.
        """
        ...
