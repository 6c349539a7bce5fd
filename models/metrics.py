"""Detection-quality metrics for scored, labelled transactions (pure NumPy/scikit-learn).

`card_precision_by_day` is the card precision top-k of the Fraud Detection Handbook (Le
Borgne et al., "Reproducible Machine Learning for Credit Card Fraud Detection - Practical
Handbook", `card_precision_top_k` in its shared functions): each UTC day, the cards not
yet detected are ranked by their highest score that day, the top k are the day's alerts,
and their precision is the share compromised that day; compromised cards among the alerts
count as detected and leave every later day's ranking. k is fixed, or a share of each
day's transactions (the review capacity: what analysts can check that day). Cards known
compromised before the period are the caller's to remove (`stream.offline.protocol`).
Definitions and sources of every figure: docs/evaluation.md.
"""

from __future__ import annotations

import datetime
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

SECONDS_PER_DAY = 86_400.0
EPOCH = datetime.date(1970, 1, 1)


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


@dataclass(frozen=True)
class DailyCardPrecision:
    """One day's card precision top-k: `precision` is None when k is 0 (nothing to rank)."""

    day: str  # ISO date, UTC
    transactions: int
    k: int
    precision: float | None


def card_precision_by_day(
    scores: ArrayLike,
    is_fraud: ArrayLike,
    card_ids: Sequence[str],
    event_times: ArrayLike,
    *,
    k: int | None = None,
    share_of_day: float | None = None,
) -> list[DailyCardPrecision]:
    """Card precision top-k for each UTC day present, oldest first, as the Handbook defines it.

    A card detected on an earlier day (compromised and among that day's top k) is left out
    of every later day: its cardholder has been called, so alerting on it again would count
    one fraud many times. Give either a fixed `k`, or `share_of_day`: then each day's k is
    that share of the day's transactions left once detected cards are out, rounded half up
    (the cards a review team can check that day). A day with fewer than k cards still
    divides by k, as the Handbook does.
    """
    if (k is None) == (share_of_day is None):
        raise ValueError("give exactly one of k and share_of_day")
    score_array = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(is_fraud, dtype=bool)
    days = (np.asarray(event_times, dtype=np.float64) // SECONDS_PER_DAY).astype(np.int64)
    best_score: dict[tuple[int, str], float] = defaultdict(lambda: -np.inf)
    compromised: dict[tuple[int, str], bool] = defaultdict(bool)
    transactions: Counter[tuple[int, str]] = Counter()
    for score, fraud, day, card in zip(score_array, labels, days, card_ids, strict=True):
        key = (int(day), card)
        best_score[key] = max(best_score[key], float(score))
        compromised[key] |= bool(fraud)
        transactions[key] += 1
    cards_per_day: dict[int, list[str]] = defaultdict(list)
    for day, card in best_score:
        cards_per_day[day].append(card)
    detected: set[str] = set()
    result = []
    for day in sorted(cards_per_day):
        candidates = [card for card in cards_per_day[day] if card not in detected]
        day_transactions = sum(transactions[(day, card)] for card in candidates)
        day_k = k if share_of_day is None else math.floor(share_of_day * day_transactions + 0.5)
        assert day_k is not None
        # Highest score first; equal scores in card order, so the ranking is reproducible.
        ranked = sorted(candidates, key=lambda card: (-best_score[(day, card)], card))
        caught = [card for card in ranked[:day_k] if compromised[(day, card)]]
        detected.update(caught)
        result.append(
            DailyCardPrecision(
                day=(EPOCH + datetime.timedelta(days=day)).isoformat(),
                transactions=day_transactions,
                k=day_k,
                precision=len(caught) / day_k if day_k else None,
            )
        )
    return result


def mean_card_precision(daily: Sequence[DailyCardPrecision]) -> float:
    """The mean over days that ranked anything (k > 0); NaN when none did."""
    precisions = [entry.precision for entry in daily if entry.precision is not None]
    return float(np.mean(precisions)) if precisions else float("nan")


def card_precision_at_k(
    scores: ArrayLike,
    is_fraud: ArrayLike,
    card_ids: Sequence[str],
    event_times: ArrayLike,
    k: int = 100,
) -> float:
    """The Handbook's card precision top-k: `card_precision_by_day`, averaged over days."""
    return mean_card_precision(card_precision_by_day(scores, is_fraud, card_ids, event_times, k=k))
