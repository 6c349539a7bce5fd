"""Scoring speed and fidelity: stock estimators against our scorers and ensemble.

Run: ``python -m bench.bench_scoring``. Trains on 100,000 synthetic rows of 40 features
(XGBoost 300 trees of depth 6 without early stopping, IsolationForest 100 trees), then
times single-row and batch-512 scoring (median of repeats) and prints Markdown table rows
for bench/RESULTS.md. Targets (issue): one row through the ensemble ≤ 1 ms, batches
≤ 50 µs per transaction. The "max abs diff" column compares each of our paths with the
stock computation of the same quantity.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xgboost as xgb
from numpy.typing import NDArray

from fraudstream.models.ensemble import Ensemble, combine_batch
from fraudstream.models.names import ModelName
from fraudstream.models.registry import load_version, save_version
from fraudstream.models.signing import SigningKey
from fraudstream.models.training import TrainingParams, fit_isolation_forest, train_models
from fraudstream.stream.sim.feature_rows import N_FEATURES, synthetic_fraud_rows

N_ROWS = 100_000
BATCH = 512
SINGLE_ROW_TARGET_US = 1000.0
BATCH_TARGET_US = 50.0


def median_us(call: Callable[[int], object], repeats: int) -> float:
    """Median wall time of ``call(i)`` for i in range(repeats), in microseconds."""
    call(0)  # warm caches and lazy initialisation
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main() -> None:
    X, y = synthetic_fraud_rows(N_ROWS, seed=0)
    X_valid, y_valid = synthetic_fraud_rows(N_ROWS // 5, seed=1)
    X_test, _ = synthetic_fraud_rows(10_240, seed=2)
    params = TrainingParams(xgb_early_stopping_rounds=None)
    trained = train_models(X, y, X_valid, y_valid, [f"f{i:02d}" for i in range(N_FEATURES)], params)
    stock_forest = fit_isolation_forest(X, y.astype(bool), params)
    with tempfile.TemporaryDirectory() as registry:
        key = SigningKey.generate()
        save_version(Path(registry), trained, training_data_hash="bench", extra_metadata={},
                     signing_key=key)  # fmt: skip
        ensemble = Ensemble(load_version(Path(registry), signing_key=key))
    booster = trained.xgboost.booster
    names = list(trained.feature_names)
    calibration = trained.isolation_forest.calibration
    weights = ensemble.weights.as_dict()

    def stock_xgboost(rows: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(booster.predict(xgb.DMatrix(rows, feature_names=names)), np.float64)

    def stock_ensemble(rows: NDArray[np.float64]) -> NDArray[np.float64]:
        forest_scores = calibration.apply(-stock_forest.score_samples(rows))
        columns: dict[str, NDArray[np.float64]] = {
            ModelName.XGBOOST: stock_xgboost(rows),
            ModelName.ISOLATION_FOREST: forest_scores,
        }
        return combine_batch(columns, weights)

    def row(i: int) -> NDArray[np.float64]:
        return X_test[i % X_test.shape[0]]

    def batch(i: int) -> NDArray[np.float64]:
        start = (i * BATCH) % (X_test.shape[0] - BATCH)
        return X_test[start : start + BATCH]

    forest = trained.isolation_forest.forest
    lines = [
        (
            "XGBoost (DMatrix + predict, stock)",
            median_us(lambda i: stock_xgboost(row(i)[None]), 300),
            median_us(lambda i: stock_xgboost(batch(i)), 30) / BATCH,
            None,
        ),
        (
            "XGBoost (inplace_predict, ours)",
            median_us(lambda i: trained.xgboost.score_one(row(i)), 300),
            median_us(lambda i: trained.xgboost.score_batch(batch(i)), 30) / BATCH,
            np.abs(trained.xgboost.score_batch(X_test) - stock_xgboost(X_test)).max(),
        ),
        (
            "IsolationForest (sklearn score_samples, stock)",
            median_us(lambda i: stock_forest.score_samples(row(i)[None]), 50),
            median_us(lambda i: stock_forest.score_samples(batch(i)), 20) / BATCH,
            None,
        ),
        (
            "IsolationForest (compiled NumPy, ours)",
            median_us(lambda i: forest.score_samples(row(i)), 300),
            median_us(lambda i: forest.score_samples(batch(i)), 30) / BATCH,
            np.abs(forest.score_samples(X_test) - stock_forest.score_samples(X_test)).max(),
        ),
        (
            "Ensemble (stock parts)",
            median_us(lambda i: stock_ensemble(row(i)[None]), 50),
            median_us(lambda i: stock_ensemble(batch(i)), 20) / BATCH,
            None,
        ),
        (
            "Ensemble (ours: score_one / score_batch)",
            median_us(lambda i: ensemble.score_one(row(i)), 300),
            median_us(lambda i: ensemble.score_batch(batch(i)), 30) / BATCH,
            np.abs(ensemble.score_batch(X_test)[0] - stock_ensemble(X_test)).max(),
        ),
    ]
    print(
        f"<!-- python -m bench.bench_scoring: {N_ROWS:,} rows x {N_FEATURES} features, "
        f"XGBoost {booster.num_boosted_rounds()} trees depth {params.xgb_max_depth} "
        "(predicting on 1 thread), "
        f"IsolationForest {params.if_n_estimators} trees, max_samples {params.if_max_samples} -->"
    )
    print("| scorer | one row (µs) | batch 512 (µs/txn) | max abs diff vs stock |")
    print("|---|---:|---:|---:|")
    for label, single_us, per_txn_us, diff in lines:
        diff_text = "—" if diff is None else f"{diff:.1e}"
        print(f"| {label} | {single_us:,.0f} | {per_txn_us:,.1f} | {diff_text} |")
    single_us, per_txn_us = lines[-1][1], lines[-1][2]
    print(
        f"\nTargets: one row {single_us:,.0f} µs (≤ {SINGLE_ROW_TARGET_US:,.0f}: "
        f"{'met' if single_us <= SINGLE_ROW_TARGET_US else 'MISSED'}); batch {per_txn_us:.1f} "
        f"µs/txn (≤ {BATCH_TARGET_US:.0f}: {'met' if per_txn_us <= BATCH_TARGET_US else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
