"""Synthetic labelled feature rows: model-sized data without generating a stream."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

N_FEATURES = 40


def synthetic_fraud_rows(
    n_rows: int, n_features: int = N_FEATURES, seed: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Rows with ~3 % fraud driven by a few features, fraud rows also being outliers.

    Model tests and the scoring benchmark train on this shape of data: cheap to make, and
    with a known structure (a linear term, an interaction, a magnitude, an outlier shift).
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features))
    logit = -4.2 + 1.5 * X[:, 0] + 1.0 * X[:, 1] * X[:, 2] + 0.8 * np.abs(X[:, 3])
    y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    X[y == 1, 4] += rng.normal(3.0, 1.0, size=int(y.sum()))
    return X, y
