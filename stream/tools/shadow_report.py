"""How a shadow candidate would have decided, next to the live model, on the same traffic.

Workers started with `FRAUDSTREAM_SHADOW_VERSION` log the candidate's score and decision
in every decision record (`shadow`); this compares the two on the labelled ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fraudstream.features.transaction import Label
from fraudstream.stream.contract import OUTCOMES, Decision, ShadowDecision
from fraudstream.stream.tools.drift_report import outcome_figures
from fraudstream.thresholds.cost import CostModel


def compare_shadow(
    decisions: Sequence[Decision], labels: Mapping[str, Label],
    cost: CostModel = CostModel(),
) -> dict[str, Any] | None:  # fmt: skip
    """Live against shadow: cost, recall, FPR, agreement; None when nothing was shadowed."""
    first: dict[str, tuple[Decision, ShadowDecision]] = {}
    for decision in decisions:
        if decision.shadow is not None:
            first.setdefault(decision.txn_id, (decision, decision.shadow))
    rows = [pair for txn_id, pair in first.items() if txn_id in labels]
    if not rows:
        return None
    is_fraud = np.array([labels[d.txn_id].is_fraud for d, _ in rows], dtype=bool)
    live = np.array([OUTCOMES.index(d.decision) for d, _ in rows])
    shadow = np.array([OUTCOMES.index(s.decision) for _, s in rows])
    live_scores = np.array([d.score for d, _ in rows])
    shadow_scores = np.array([s.score for _, s in rows])
    correlation = (
        float(np.corrcoef(live_scores, shadow_scores)[0, 1])
        if live_scores.std() > 0 and shadow_scores.std() > 0 else 1.0
    )  # fmt: skip
    return {
        "live": {"model_version": rows[0][0].model_version,
                 **outcome_figures(live, is_fraud, cost)},
        "shadow": {"model_version": rows[0][1].model_version,
                   **outcome_figures(shadow, is_fraud, cost)},
        "decision_agreement": float(np.mean(live == shadow)),
        "score_correlation": correlation,
    }  # fmt: skip
