"""Small models trained in seconds on synthetic rows, for the model tests."""

from __future__ import annotations

from fraudstream.models.training import TrainedModels, TrainingParams, train_models
from fraudstream.stream.sim.feature_rows import N_FEATURES, synthetic_fraud_rows

FEATURE_NAMES = tuple(f"feature_{i:02d}" for i in range(N_FEATURES))
SMALL_PARAMS = TrainingParams(xgb_max_rounds=20, xgb_max_depth=4, if_n_estimators=20)


def train_small_models(params: TrainingParams = SMALL_PARAMS) -> TrainedModels:
    X_train, y_train = synthetic_fraud_rows(4000, seed=1)
    X_valid, y_valid = synthetic_fraud_rows(2000, seed=2)
    return train_models(X_train, y_train, X_valid, y_valid, FEATURE_NAMES, params)
