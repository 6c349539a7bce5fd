"""The offline path, evaluation: every scorer on transactions its training never saw.

Two protocols (docs/evaluation.md, after the Fraud Detection Handbook's `get_train_test_set`
and `prequentialSplit`; the periods and the known-compromised rule are in
`fraudstream.stream.offline.protocol`):

- split (default): the registry's live version, tested from one label delay after the
  validation split training recorded, to the stream's end;
- prequential (`fraudstream.stream.offline.prequential`): rolling folds, each fitted afresh
  by training's own code on everything before it, then tested on the days after a label
  delay; the report gives each figure's mean and standard deviation over the folds.

Both drop cards known compromised before each test day, and give figures at the thresholds
that are cost-optimal on the test itself and at the ones training chose on validation.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.builder import FeatureMatrix
from fraudstream.features.definitions import DEFAULT_LABEL_DELAY_DAYS
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
from fraudstream.models.registry import LoadedModels, load_version
from fraudstream.models.training import TrainedModels
from fraudstream.stream.offline.feature_cache import FeatureCache
from fraudstream.stream.offline.protocol import HeldOutPeriod, known_compromised
from fraudstream.stream.offline.training import load_labelled_stream, score_all
from fraudstream.stream.served_features import trained_label_delay_s
from fraudstream.stream.sim.rejected import RejectedRecords
from fraudstream.thresholds.cost import CostModel, evaluate_thresholds
from fraudstream.thresholds.optimise import Constraints, optimise_thresholds

#: Every scorer a report covers: the ensemble's models, the ensemble itself, the rules baseline.
MODEL_NAMES = (*ModelName, "ensemble", "rules")
#: Per-scenario recall is read at the score that flags this share of legitimate traffic.
SCENARIO_ALERT_FPR = 0.01
#: Cards a day's alerts hold in the fixed-k card precision (the Handbook's k).
CARD_ALERTS_PER_DAY = 100


class NoHeldOutTransactions(ValueError):
    """The stream has no labelled transaction from one label delay after the model's
    validation split on.

    Everything before that point trained or tuned the model, or sits in the label-delay gap,
    so scoring it would report figures the model has already seen or could not yet have
    been tested on; the message says what to give instead.
    """


def iso_time(moment: float) -> str:
    """An epoch-second moment as a UTC ISO 8601 string, for reports and messages."""
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


def known_compromised_rows(
    matrix: FeatureMatrix, times: NDArray[np.float64], delay_days: float
) -> NDArray[np.bool_]:
    """`known_compromised` for every row of `matrix`: the same for any period, so computed
    once per stream."""
    cards = [txn.card_id for txn in matrix.transactions]
    return known_compromised(cards, times, matrix.is_fraud, delay_days)


def held_out_rows(
    matrix: FeatureMatrix,
    times: NDArray[np.float64],
    period: HeldOutPeriod,
    known: NDArray[np.bool_],
) -> tuple[NDArray[np.bool_], int]:
    """The labelled rows of `period` whose card is not `known` compromised on their day
    (`known_compromised_rows`), and how many labelled rows of the period were left out as
    known compromised."""
    in_period = ~np.isnan(matrix.is_fraud) & period.holds(times)
    return in_period & ~known, int((in_period & known).sum())


def period_report(
    scorers: LoadedModels | TrainedModels,
    weights: EnsembleWeights,
    thresholds: dict[str, dict[str, float]],
    matrix: FeatureMatrix,
    times: NDArray[np.float64],
    rows: NDArray[np.bool_],
    cost: CostModel,
    constraints: Constraints,
) -> dict[str, Any]:
    """Every scorer's figures on the test `rows` of `matrix`, and recall by fraud scenario."""
    y = matrix.is_fraud[rows]
    cards = [txn.card_id for txn, keep in zip(matrix.transactions, rows, strict=True) if keep]
    test_times = times[rows]
    scenarios = np.array(matrix.scenarios)[rows]
    capacity = constraints.max_review_rate
    report: dict[str, Any] = {
        "transactions": int(rows.sum()),
        "frauds": int(y.sum()),
        "models": {},
        "recall_by_scenario": {},
    }
    for name, scores in score_all(scorers, weights, matrix.features[rows]).items():
        chosen = thresholds[name]
        deployed = evaluate_thresholds(scores, y, chosen["review"], chosen["decline"], cost)
        optimal = optimise_thresholds(scores, y, cost, constraints).outcome
        report["models"][name] = {
            "auc_roc": auc_roc(scores, y),
            "auc_pr": auc_pr(scores, y),
            "recall_at_fpr_0_1pct": recall_at_fpr(scores, y, 0.001),
            "card_precision_at_100": card_precision_at_k(
                scores, y, cards, test_times, CARD_ALERTS_PER_DAY
            ),
            "card_precision_at_capacity": None
            if capacity is None
            else mean_card_precision(
                card_precision_by_day(scores, y, cards, test_times, share_of_day=capacity)
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


def evaluate_from_file(
    data: Path,
    registry: Path,
    cost: CostModel = CostModel(),
    constraints: Constraints = Constraints(),
    delay_days: float = DEFAULT_LABEL_DELAY_DAYS,
    rejects: RejectedRecords | None = None,
) -> dict[str, Any]:
    """Quality of every scorer of the live version, from one label delay after its
    validation split to the end of `data`, cards known compromised left out.

    Two costs per scorer: `cost_per_txn` at the thresholds that are cost-optimal on this
    held-out data within `constraints` (what the scorer's ranking is worth), and
    `cost_per_txn_deployed` at the thresholds chosen on the validation split and stored in
    the registry (what a static deployment would have paid; the gap is what online
    recalibration is for), with the deployed pair's review rate and FPR to hold against
    the limits. Both use `cost`; the command line passes `Settings.cost_model`,
    `Settings.threshold_constraints` (the full limits: the version's own are the
    narrower ones its pair was chosen under) and `Settings.label_delay_days`, and the
    report records them. Raises `NoHeldOutTransactions` when no labelled transaction of
    `data` lies in the test period. Records of `data` that break the contract go to
    `rejects` (see `read_stream_file`).
    """
    models = load_version(registry)
    matrix = load_labelled_stream(
        data, label_delay_s=trained_label_delay_s(models, registry), rejects=rejects,
        cache=FeatureCache.in_registry(registry),
    )  # fmt: skip
    times = np.array([txn.event_time for txn in matrix.transactions])
    valid_end = models.metadata["split"]["valid_end"]
    period = HeldOutPeriod.after(valid_end, delay_days, float(times.max()))
    known_rows = known_compromised_rows(matrix, times, delay_days)
    rows, known = held_out_rows(matrix, times, period, known_rows)
    if not rows.any():
        raise NoHeldOutTransactions(
            f"no labelled transactions in {data} from {iso_time(period.start)} on: that is one "
            f"label delay ({delay_days:g} days, FRAUDSTREAM_LABEL_DELAY_DAYS) after the "
            f"validation split of model {models.version} ({iso_time(valid_end)}), and training "
            "saw everything before it; give a longer stream that continues past it"
        )
    weights = EnsembleWeights.from_dict(models.metadata["weights"])
    figures = period_report(
        models, weights, models.metadata["thresholds"], matrix, times, rows, cost, constraints
    )
    return {
        "protocol": "split",
        "model_version": models.version,
        "label_delay_days": delay_days,
        "period": {"fit_end": valid_end, "start": period.start, "end": period.end},
        "known_compromised_removed": known,
        "cost_model": vars(cost),
        "constraints": vars(constraints),
        **figures,
    }


def format_report(report: dict[str, Any]) -> str:
    """The evaluation as two plain-text tables: quality per model, recall per scenario."""
    period = report["period"]
    lines = [
        f"model version {report['model_version']}: {report['transactions']:,} held-out "
        f"transactions, {report['frauds']:,} frauds, tested from "
        f"{iso_time(period['start'])[:10]} (a {report['label_delay_days']:g}-day label delay "
        f"after its validation split ended {iso_time(period['fit_end'])[:19]}); "
        f"{report['known_compromised_removed']:,} transactions left out, their card known "
        "compromised that day",
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
        f"cp@100: card precision top-{CARD_ALERTS_PER_DAY}, detected cards out of later days' "
        "ranking (docs/evaluation.md).",
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
