"""Detection-quality metrics for scored, labelled transactions (pure NumPy/scikit-learn).

`card_precision_at_k` follows the Fraud Detection Handbook (Le Borgne et al.): for each
day, rank cards by their highest score that day, take the top k, and count the share that
had at least one fraud that day; the figure is the mean over days.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

SECONDS_PER_DAY = 86_400.0


def _has_both_classes(is_fraud: np.ndarray) -> bool:
    return bool(is_fraud.any() and not is_fraud.all())


def auc_roc(scores: ArrayLike, is_fraud: ArrayLike) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    labels = np.asarray(is_fraud, dtype=bool)
    if not _has_both_classes(labels):
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores)))


def auc_pr(scores: ArrayLike, is_fraud: ArrayLike) -> float:
    """Average precision (area under precision-recall); NaN when only one class is present."""
    labels = np.asarray(is_fraud, dtype=bool)
    if not _has_both_classes(labels):
        return float("nan")
    return float(average_precision_score(labels, np.asarray(scores)))


def recall_at_fpr(scores: ArrayLike, is_fraud: ArrayLike, max_fpr: float = 0.001) -> float:
    """Highest recall reachable by one decline threshold whose FPR stays within `max_fpr`."""
    labels = np.asarray(is_fraud, dtype=bool)
    if not _has_both_classes(labels):
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, np.asarray(scores))
    return float(tpr[fpr <= max_fpr].max())


def card_precision_at_k(
    scores: ArrayLike,
    is_fraud: ArrayLike,
    card_ids: Sequence[str],
    event_times: ArrayLike,
    k: int = 100,
) -> float:
    """Daily card precision top-k, averaged over the days present."""
    score_array = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(is_fraud, dtype=bool)
    days = (np.asarray(event_times, dtype=np.float64) // SECONDS_PER_DAY).astype(np.int64)
    best_score: dict[tuple[int, str], float] = defaultdict(lambda: -np.inf)
    compromised: dict[tuple[int, str], bool] = defaultdict(bool)
    for score, fraud, day, card in zip(score_array, labels, days, card_ids, strict=True):
        key = (int(day), card)
        best_score[key] = max(best_score[key], float(score))
        compromised[key] |= bool(fraud)
    per_day: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for key, score in best_score.items():
        per_day[key[0]].append((score, compromised[key]))
    precisions = []
    for cards in per_day.values():
        top = sorted(cards, key=lambda item: item[0], reverse=True)[:k]
        precisions.append(sum(fraud for _, fraud in top) / k)
    return float(np.mean(precisions)) if precisions else float("nan")
