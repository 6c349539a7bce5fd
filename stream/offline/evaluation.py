"""The offline path, evaluation: every scorer on the part of a stream training never saw.

Training (`fraudstream.stream.offline.training`) records its time split in the registry;
evaluation scores only what lies after the validation split, with figures at the
thresholds that are cost-optimal on that held-out part and at the ones training chose.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.models.ensemble import EnsembleWeights
from fraudstream.models.metrics import (
    auc_pr,
    auc_roc,
    card_precision_at_k,
    card_precision_by_day,
    mean_card_precision,
    recall_at_fpr,
)
from fraudstream.models.names import ModelName
from fraudstream.models.registry import load_version
from fraudstream.stream.offline.training import load_labelled_stream, score_all
from fraudstream.thresholds.cost import CostModel, evaluate_thresholds
from fraudstream.thresholds.optimise import Constraints, optimise_thresholds

#: Every scorer a report covers: the ensemble's models, the ensemble itself, the rules baseline.
MODEL_NAMES = (*ModelName, "ensemble", "rules")
#: Per-scenario recall is read at the score that flags this share of legitimate traffic.
SCENARIO_ALERT_FPR = 0.01


class NoHeldOutTransactions(ValueError):
    """The stream has no labelled transaction after the model's validation split.

    Everything before that point trained or tuned the model, so scoring it would report
    figures the model has already seen; the message says what to give instead.
    """


def evaluate_from_file(
    data: Path,
    registry: Path,
    cost: CostModel = CostModel(),
    constraints: Constraints = Constraints(),
) -> dict[str, Any]:
    """Quality of every scorer on the part of `data` the live model never trained on.

    Two costs per scorer: `cost_per_txn` at the thresholds that are cost-optimal on this
    held-out data within `constraints` (what the scorer's ranking is worth), and
    `cost_per_txn_deployed` at the thresholds chosen on the validation split and stored in
    the registry (what a static deployment would have paid; the gap is what online
    recalibration is for), with the deployed pair's review rate and FPR to hold against
    the limits. Both use `cost`; the command line passes `Settings.cost_model` and
    `Settings.threshold_constraints` (the full limits: the version's own are the
    narrower ones its pair was chosen under), and the report records both.
    Raises `NoHeldOutTransactions` when no labelled transaction of `data` lies after the
    version's validation split.
    """
    models = load_version(registry)
    matrix = load_labelled_stream(data)
    times = np.array([txn.event_time for txn in matrix.transactions])
    valid_end = models.metadata["split"]["valid_end"]
    held_out = ~np.isnan(matrix.is_fraud) & (times >= valid_end)
    if not held_out.any():
        moment = datetime.datetime.fromtimestamp(valid_end, datetime.UTC).isoformat()
        raise NoHeldOutTransactions(
            f"no transactions after the validation split of model {models.version} "
            f"({moment}) carry a label in {data}: training saw everything before it, so "
            "nothing is held out to evaluate; give a longer stream that continues past it"
        )
    features = matrix.features[held_out]
    y = matrix.is_fraud[held_out]
    cards = [txn.card_id for txn, keep in zip(matrix.transactions, held_out, strict=True) if keep]
    scenarios = np.array(matrix.scenarios)[held_out]
    weights = EnsembleWeights.from_dict(models.metadata["weights"])
    report: dict[str, Any] = {
        "model_version": models.version,
        "transactions": int(held_out.sum()),
        "frauds": int(y.sum()),
        "cost_model": vars(cost),
        "constraints": {},
        "period": {"start": float(times[held_out].min()), "end": float(times[held_out].max())},
        "models": {},
        "recall_by_scenario": {},
    }
    report["constraints"] = vars(constraints)
    capacity = constraints.max_review_rate
    held_out_times = times[held_out]
    for name, scores in score_all(models, weights, features).items():
        chosen = models.metadata["thresholds"][name]
        deployed = evaluate_thresholds(scores, y, chosen["review"], chosen["decline"], cost)
        optimal = optimise_thresholds(scores, y, cost, constraints).outcome
        report["models"][name] = {
            "auc_roc": auc_roc(scores, y),
            "auc_pr": auc_pr(scores, y),
            "recall_at_fpr_0_1pct": recall_at_fpr(scores, y, 0.001),
            "card_precision_at_100": card_precision_at_k(scores, y, cards, held_out_times, 100),
            "card_precision_at_capacity": None
            if capacity is None
            else mean_card_precision(
                card_precision_by_day(scores, y, cards, held_out_times, share_of_day=capacity)
            ),
            "cost_per_txn": optimal.cost_per_txn,
            "review_threshold": optimal.review_threshold,
            "decline_threshold": optimal.decline_threshold,
            "recall": optimal.recall,
            "fpr": optimal.fpr,
            "review_rate": optimal.review_rate,
            "cost_per_txn_deployed": deployed.cost_per_txn,
            "review_rate_deployed": deployed.review_rate,
            "fpr_deployed": deployed.fpr,
            "deployed_thresholds": {"review": chosen["review"], "decline": chosen["decline"]},
        }
        flagged = scores > np.quantile(scores[y == 0], 1.0 - SCENARIO_ALERT_FPR)
        for scenario in sorted(set(scenarios[y == 1])):
            in_scenario = scenarios == scenario
            report["recall_by_scenario"].setdefault(scenario, {"frauds": int(in_scenario.sum())})
            report["recall_by_scenario"][scenario][name] = float(flagged[in_scenario].mean())
    return report


def format_report(report: dict[str, Any]) -> str:
    """The evaluation as two plain-text tables: quality per model, recall per scenario."""
    lines = [
        f"model version {report['model_version']}: {report['transactions']:,} held-out "
        f"transactions, {report['frauds']:,} frauds",
        "",
        f"{'model':<17}{'auc_roc':>8}{'auc_pr':>8}{'rec@0.1%':>9}{'cp@100':>8}"
        f"{'cost/txn':>10}{'review>=':>10}{'decline>=':>10}{'recall':>8}{'fpr':>8}"
        f"{'deployed':>10}",
    ]
    for name, row in report["models"].items():
        lines.append(
            f"{name:<17}{row['auc_roc']:>8.3f}{row['auc_pr']:>8.3f}"
            f"{row['recall_at_fpr_0_1pct']:>9.3f}{row['card_precision_at_100']:>8.3f}"
            f"{row['cost_per_txn']:>10.3f}{row['review_threshold']:>10.4f}"
            f"{row['decline_threshold']:>10.4f}{row['recall']:>8.3f}{row['fpr']:>8.4f}"
            f"{row['cost_per_txn_deployed']:>10.3f}"
        )
    lines += [
        "",
        "cost/txn: at the thresholds (review>=, decline>=) that are cost-optimal on this data;",
        "deployed: at the thresholds chosen on the validation split, as a static deployment.",
        "costs: {cost_fn:g} per missed fraud, {cost_fp:g} per false decline, "
        "{cost_review:g} per review.".format(**report["cost_model"]),
        "",
        *_deployed_against_limits(report),
        "",
        f"recall by fraud scenario, each model flagging its top {SCENARIO_ALERT_FPR:.0%} "
        "of legitimate traffic:",
    ]
    lines.append(f"{'scenario':<22}{'frauds':>7}" + "".join(f"{m:>17}" for m in MODEL_NAMES))
    for scenario, row in report["recall_by_scenario"].items():
        lines.append(
            f"{scenario:<22}{row['frauds']:>7}" + "".join(f"{row[m]:>17.3f}" for m in MODEL_NAMES)
        )
    return "\n".join(lines)


def _deployed_against_limits(report: dict[str, Any]) -> list[str]:
    """The deployed pairs' review rate and FPR on held-out data, against the limits."""
    limits = report["constraints"]
    capacity = limits.get("max_review_rate")
    shown_capacity = "unlimited" if capacity is None else f"{capacity:.2%}"
    lines = [
        f"deployed thresholds against the limits (review capacity {shown_capacity}, "
        f"decline FPR cap {limits['max_fpr']:.2%}); cp@cap: card precision with k = the "
        "capacity's share of each day's transactions:",
        f"{'model':<17}{'review':>9}{'fpr':>9}{'cp@cap':>8}",
    ]
    for name, row in report["models"].items():
        cp = row["card_precision_at_capacity"]
        lines.append(
            f"{name:<17}{row['review_rate_deployed']:>9.2%}{row['fpr_deployed']:>9.3%}"
            f"{'n/a' if cp is None else format(cp, '.3f'):>8}"
        )
    return lines
