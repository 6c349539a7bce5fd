"""What each rule would have done on labelled history, beside the model alone: pure figures.

For every block list, allow list and rule (an "entry"), on the transactions given:

- `hits`: transactions it matched; `decided`: those where its action stood (precedence);
- `precision`: the share of frauds among its labelled hits (for an allow entry, a low one
  is good), `recall`: the share of all labelled frauds it hit; None when undefined;
- `reviews`: transactions it sent to review (review entries: those it decided), their
  `review_share` of all transactions, and `over_capacity_reviews`: how many of them lie
  beyond its `review_capacity` (the rule's own, else the one given; None: no capacity
  given, or an entry that does not review);
- `cost_per_txn_delta`: cost per labelled transaction of the model with this entry alone
  over it, minus the model alone (negative: the entry saves money).

The model decides by `thresholds.cost.decide` at the given pair; an entry's action
replaces that decision where it hits (allow = approve). Costs come from
`thresholds.cost.evaluate_as_decided`, so they follow `evaluate_thresholds`' conventions
exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.transaction import Transaction
from fraudstream.thresholds.cost import DECISION_SCORE, CostModel, decide, evaluate_as_decided
from fraudstream.thresholds.rules.engine import DECISION_OF_ACTION, Rule, RuleSet


@dataclass(frozen=True)
class EntryFigures:
    """The figures of one block list, allow list or rule (see the module docstring)."""

    id: str
    action: str
    priority: int | None  # None for a list
    hits: int
    decided: int
    precision: float | None
    recall: float | None
    reviews: int
    review_share: float
    review_capacity: float | None
    over_capacity_reviews: int | None
    cost_per_txn_delta: float | None


def _cost_per_txn(
    decision_scores: NDArray[np.float64], is_fraud: NDArray[np.float64], cost: CostModel
) -> float | None:
    labelled = ~np.isnan(is_fraud)
    if not labelled.any():
        return None
    labels = is_fraud[labelled] == 1
    return evaluate_as_decided(decision_scores[labelled], labels, cost).cost_per_txn


def review_capacity_of(action: str, rule: Rule | None, given: float | None) -> float | None:
    """The rule's own capacity, else the one given; None for an entry that never reviews."""
    if action != "review":
        return None
    return rule.review_capacity if rule and rule.review_capacity is not None else given


def over_capacity_reviews(reviews: int, capacity: float | None, transactions: int) -> int | None:
    """Reviews beyond `capacity` (a share of `transactions`); None without a capacity."""
    return None if capacity is None else max(0, reviews - math.floor(capacity * transactions))


def _review_share(decision_scores: NDArray[np.float64]) -> float:
    if not len(decision_scores):
        return 0.0
    return float(np.mean(decision_scores == DECISION_SCORE["review"]))


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def backtest_rules(
    rule_set: RuleSet,
    transactions: Sequence[Transaction],
    feature_rows: NDArray[np.float64],
    scores: NDArray[np.float64],
    is_fraud: NDArray[np.float64],
    thresholds: tuple[float, float],
    cost: CostModel = CostModel(),
    review_capacity: float | None = None,
) -> dict[str, Any]:
    """The report of the module docstring, JSON-ready: totals and one row per entry.

    `is_fraud` is 1, 0 or NaN (unlabelled) per transaction; `thresholds` the model's
    (review, decline) pair; `review_capacity` the share of transactions a rule without
    its own may send to review.
    """
    review_threshold, decline_threshold = thresholds
    model = np.array([DECISION_SCORE[decide(score, review_threshold, decline_threshold)]
                      for score in scores])  # fmt: skip
    hits = rule_set.hits(transactions, feature_rows)
    verdicts = rule_set.evaluate(transactions, feature_rows)
    decided = Counter(verdict.decided_by for verdict in verdicts)
    with_rules = np.array([model[row] if verdict.action is None
                           else DECISION_SCORE[DECISION_OF_ACTION[verdict.action]]
                           for row, verdict in enumerate(verdicts)])  # fmt: skip
    labelled = ~np.isnan(is_fraud)
    fraud = labelled & (is_fraud == 1)
    model_cost = _cost_per_txn(model, is_fraud, cost)
    rules_by_id = {rule.id: rule for rule in rule_set.rules}
    entries = []
    for entry_id, action, matched in zip(rule_set.ids, rule_set.actions, hits, strict=True):
        rule = rules_by_id.get(entry_id)
        capacity = review_capacity_of(action, rule, review_capacity)
        reviews = decided[entry_id] if action == "review" else 0
        alone = np.where(matched, DECISION_SCORE[DECISION_OF_ACTION[action]], model)
        alone_cost = _cost_per_txn(alone, is_fraud, cost)
        entries.append(EntryFigures(
            id=entry_id,
            action=action,
            priority=rule.priority if rule else None,
            hits=int(matched.sum()),
            decided=decided[entry_id],
            precision=_share(int((matched & fraud).sum()), int((matched & labelled).sum())),
            recall=_share(int((matched & fraud).sum()), int(fraud.sum())),
            reviews=reviews,
            review_share=reviews / len(transactions) if len(transactions) else 0.0,
            review_capacity=capacity,
            over_capacity_reviews=over_capacity_reviews(reviews, capacity, len(transactions)),
            cost_per_txn_delta=None if model_cost is None or alone_cost is None else (
                alone_cost - model_cost),
        ))  # fmt: skip
    rules_cost = _cost_per_txn(with_rules, is_fraud, cost)
    return {
        "rules_version": rule_set.version,
        "transactions": len(transactions),
        "labelled": int(labelled.sum()),
        "frauds": int(fraud.sum()),
        "thresholds": {"review": review_threshold, "decline": decline_threshold},
        "cost_model": asdict(cost),
        "cost_per_txn_model": model_cost,
        "cost_per_txn_with_rules": rules_cost,
        "cost_per_txn_delta": None if model_cost is None or rules_cost is None else (
            rules_cost - model_cost),  # fmt: skip
        "review_share_model": _review_share(model),
        "review_share_with_rules": _review_share(with_rules),
        "review_capacity": review_capacity,
        "rules": [asdict(entry) for entry in entries],
    }


def _shown(value: float | int | None, form: str) -> str:
    return "–" if value is None else format(value, form)


def format_backtest(report: dict[str, Any]) -> str:
    """The backtest as Markdown: a summary line, the costs, one table row per entry."""
    lines = [
        f"## Rules {report['rules_version']} on {report['transactions']:,} transactions "
        f"({report['labelled']:,} labelled, {report['frauds']:,} frauds)",
        "",
        f"Model {report.get('model_version', '')} at review >= "
        f"{report['thresholds']['review']:.4f}, decline >= {report['thresholds']['decline']:.4f}"
        f"; review capacity {_shown(report['review_capacity'], '.2%')} per rule.",
        f"Cost per transaction: model alone {_shown(report['cost_per_txn_model'], '.4f')}, "
        f"with the rules {_shown(report['cost_per_txn_with_rules'], '.4f')} "
        f"({_shown(report['cost_per_txn_delta'], '+.4f')}).",
        f"Review share: model alone {report['review_share_model']:.4%}, with the rules "
        f"{report['review_share_with_rules']:.4%}.",
        "",
        "| id | action | priority | hits | decided | precision | recall | review share "
        "| capacity | over capacity | Δ cost/txn |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in report["rules"]:
        lines.append(
            f"| {row['id']} | {row['action']} | {_shown(row['priority'], 'd')} "
            f"| {row['hits']:,} | {row['decided']:,} | {_shown(row['precision'], '.3f')} "
            f"| {_shown(row['recall'], '.3f')} | {row['review_share']:.4%} "
            f"| {_shown(row['review_capacity'], '.2%')} "
            f"| {_shown(row['over_capacity_reviews'], ',')} "
            f"| {_shown(row['cost_per_txn_delta'], '+.4f')} |"
        )
    lines += [
        "",
        "hits: transactions matched; decided: where its action stood (block > allow > "
        "priority); precision and recall on labelled hits; Δ cost/txn: the model with this "
        "entry alone, minus the model alone.",
    ]
    return "\n".join(lines)
