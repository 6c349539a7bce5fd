"""The ensemble's models by name: one type for the names on the wire, in files and metrics.

Kept in a module of its own, free of model libraries, so that code which only needs the
names (metric labels, reports) does not import XGBoost.
"""

from __future__ import annotations

from enum import StrEnum


class ModelName(StrEnum):
    """Keys of ensemble weights, `model_scores`, `fallbacks` and per-model latency stages.

    A `StrEnum`, so each member *is* its string: the same text on the `decisions` topic,
    in registry metadata and in metric labels (``ModelName.XGBOOST == "xgboost"``).
    """

    XGBOOST = "xgboost"
    ISOLATION_FOREST = "isolation_forest"
