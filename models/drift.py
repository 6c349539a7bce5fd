"""Has the live score distribution moved away from the one the model was validated on?

The population stability index (PSI) compares the share of scores in each bin:
    PSI = sum over bins of (live - reference) * ln(live / reference).
Labels arrive days late, so score drift is the earliest sign that the thresholds (tuned on
the reference distribution) or the model itself no longer fit. Bins are the reference's
quantiles, so each holds about the same share of reference scores and no bin is starved.
A common reading: below 0.1 stable, 0.1 to 0.25 worth watching, above 0.25 a real shift.

Example:
    >>> import numpy as np
    >>> reference = ScoreReference.fit(np.random.default_rng(0).beta(1, 20, 20_000))
    >>> round(psi(reference, np.random.default_rng(1).beta(1, 20, 20_000)), 2)
    0.0
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

EMPTY_BIN_SHARE = 1e-4
"""Share given to an empty bin so its log ratio stays finite (a standard PSI convention)."""


def _finite_scores(scores: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(scores, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError("no scores given: PSI needs at least one")
    if not np.isfinite(array).all():
        raise ValueError("scores must be finite numbers")
    return array


@dataclass(frozen=True)
class ScoreReference:
    """Bin edges and the reference share of scores per bin.

    `edges` are the interior boundaries (sorted, distinct); bin i holds scores s with
    edges[i-1] <= s < edges[i], and the outer bins stretch to -inf and +inf, so a live score
    outside the reference range still lands somewhere. `shares` sum to 1.
    """

    edges: tuple[float, ...]
    shares: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.shares) != len(self.edges) + 1:
            raise ValueError(
                f"{len(self.edges)} edges need {len(self.edges) + 1} shares, got {len(self.shares)}"
            )
        if any(a >= b for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly increasing")

    @classmethod
    def fit(cls, scores: ArrayLike, bins: int = 10) -> ScoreReference:
        """Quantile bins of the training/validation scores; ties merge bins (fewer result)."""
        if bins < 2:
            raise ValueError(f"need at least 2 bins, got {bins}")
        array = _finite_scores(scores)
        quantiles = np.quantile(array, np.linspace(0.0, 1.0, bins + 1)[1:-1])
        edges = tuple(float(edge) for edge in np.unique(quantiles))
        reference = cls(edges, (1.0,) * (len(edges) + 1))  # placeholder shares for binning
        return cls(edges, tuple(float(share) for share in reference.bin_shares(array)))

    def bin_of(self, scores: ArrayLike) -> NDArray[np.intp]:
        """The bin index of each score."""
        return np.searchsorted(np.asarray(self.edges), _finite_scores(scores), side="right")

    def bin_shares(self, scores: ArrayLike) -> NDArray[np.float64]:
        counts = np.bincount(self.bin_of(scores), minlength=len(self.shares))
        return counts / counts.sum()

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "shares": list(self.shares)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ScoreReference:
        return cls(tuple(map(float, raw["edges"])), tuple(map(float, raw["shares"])))


def psi_of_shares(expected: ArrayLike, actual: ArrayLike) -> float:
    """PSI between two share vectors over the same bins; symmetric in its two arguments."""
    floor = EMPTY_BIN_SHARE
    expected_shares = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    actual_shares = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    return float(
        np.sum((actual_shares - expected_shares) * np.log(actual_shares / expected_shares))
    )


def psi(reference: ScoreReference, scores: ArrayLike) -> float:
    """PSI of `scores` (any order, list or array) against the reference; >= 0."""
    return psi_of_shares(reference.shares, reference.bin_shares(scores))


class DriftMonitor:
    """PSI of the most recent `window` live scores; None until `min_scores` were seen.

    Keeps only per-bin counts and the bin of each score in the window, so `value()` costs
    O(bins) and can be read on every metrics scrape.
    """

    def __init__(
        self, reference: ScoreReference, window: int = 5000, min_scores: int = 500
    ) -> None:
        if not 1 <= min_scores <= window:
            raise ValueError(f"need 1 <= min_scores <= window, got {min_scores}, {window}")
        self.reference = reference
        self.min_scores = min_scores
        self._bins: deque[int] = deque(maxlen=window)
        self._counts = np.zeros(len(reference.shares), dtype=np.int64)

    def __len__(self) -> int:
        return len(self._bins)

    def observe(self, scores: ArrayLike | Iterable[float]) -> None:
        """Add live scores in arrival order; the oldest leave once the window is full."""
        array = np.asarray(scores, dtype=np.float64).ravel()
        if array.size == 0:
            return
        for index in self.reference.bin_of(array).tolist():
            if len(self._bins) == self._bins.maxlen:
                self._counts[self._bins[0]] -= 1
            self._bins.append(index)
            self._counts[index] += 1

    def value(self) -> float | None:
        if len(self._bins) < self.min_scores:
            return None
        return psi_of_shares(self.reference.shares, self._counts / len(self._bins))
