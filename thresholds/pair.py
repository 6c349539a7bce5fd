"""The threshold pair a worker decides with: the one type for "which thresholds, which version".

A score is declined at or above `decline`, reviewed at or above `review`, approved below
(`thresholds.cost.decide`). `version` names where the pair came from and travels in every
decision as `threshold_version`: ``v12`` for version 12 of a consumer group's live pair
(`ThresholdState.pair`), ``v0003-static`` for a registry version's own validation optimum.

Stored formats keep their own shape (registry metadata holds ``{"review", "decline", ...}``
per scorer, the shared threshold holds a `ThresholdState`); they convert to this type in one
place each: `ThresholdPair.from_registry` and `ThresholdState.pair`.

Example:
    >>> pair = ThresholdPair("v3", review=0.05, decline=0.6)
    >>> pair.decide(0.1)
    'review'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fraudstream.thresholds.cost import decide


@dataclass(frozen=True)
class ThresholdPair:
    """A versioned (review, decline) pair; 0 <= review <= decline, decline finite.

    A decline just above 1 (`thresholds.cost.NEVER_FIRES`) is allowed and means "never".
    """

    version: str
    review: float
    decline: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.decline) and 0.0 <= self.review <= self.decline):
            raise ValueError(
                f"threshold pair {self.version!r} must satisfy 0 <= review <= decline, "
                f"got review={self.review!r}, decline={self.decline!r}"
            )

    def decide(self, score: float) -> str:
        """The action for one score: "decline", "review" or "approve"."""
        return decide(score, self.review, self.decline)

    @classmethod
    def from_registry(
        cls, model_version: str, metadata: Mapping[str, Any], scorer: str = "ensemble"
    ) -> ThresholdPair:
        """A registry version's own pair for `scorer`, chosen on its validation split.

        `metadata` is the version's metadata.json; the pair is named `<version>-static`.
        """
        chosen = metadata["thresholds"][scorer]
        return cls(f"{model_version}-static", float(chosen["review"]), float(chosen["decline"]))
