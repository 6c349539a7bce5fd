"""A hand-written rules baseline, scored like a model so thresholds treat it alike.

The rules are the kind a fraud team writes on day one (big amount, bursts, impossible
travel, night abroad). Its score is the share of rules that fire, so it lies in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

RULES: tuple[tuple[str, str, float], ...] = (
    ("amount", ">", 1000.0),
    ("amount_zscore_30d", ">", 4.0),
    ("count_1h", ">=", 4.0),
    ("distinct_merchants_1h", ">=", 3.0),
    ("velocity_kmh", ">", 900.0),
    ("is_new_country", ">=", 1.0),
)


class RulesScorer:
    """Fraction of `RULES` that fire for each row."""

    name = "rules"

    def __init__(self, feature_names: Sequence[str]) -> None:
        self._columns = np.array([list(feature_names).index(feature) for feature, _, _ in RULES])
        self._limits = np.array([limit for _, _, limit in RULES])
        self._inclusive = np.array([operator == ">=" for _, operator, _ in RULES])

    def fired(self, features: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Which rules fire, one row per transaction and one column per rule."""
        values = np.atleast_2d(features)[:, self._columns]
        return np.where(self._inclusive, values >= self._limits, values > self._limits)

    def score_batch(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.fired(features).mean(axis=1)

    def score_one(self, features: NDArray[np.float64]) -> float:
        return float(self.score_batch(features)[0])
