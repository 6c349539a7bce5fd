"""The offline path, prequential evaluation: rolling folds, each fitted afresh and tested
one label delay later.

One time split gives one figure from one stretch of weeks; fraud shifts from week to
week, so a single figure can mislead by luck of the period. The Handbook's prequential
protocol (Le Borgne et al., `prequentialSplit`; docs/evaluation.md) repeats the split
over consecutive test periods and reports how much each figure moves across them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.features.definitions import DEFAULT_LABEL_DELAY_DAYS
from fraudstream.features.geo import SECONDS_PER_DAY
from fraudstream.stream.offline.evaluation import (
    MODEL_NAMES,
    held_out_rows,
    iso_time,
    known_compromised_rows,
    period_report,
)
from fraudstream.stream.offline.protocol import ProtocolError, prequential_periods
from fraudstream.stream.offline.training import (
    TimeSplit,
    fit_scorers,
    load_labelled_stream,
)
from fraudstream.stream.sim.rejected import RejectedRecords
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.optimise import Constraints

#: The per-scorer figures a prequential report averages over its folds.
FOLD_FIGURES = (
    "auc_roc",
    "auc_pr",
    "recall_at_fpr_0_1pct",
    "card_precision_at_100",
    "card_precision_at_capacity",
    "cost_per_txn",
    "recall",
    "fpr",
    "review_rate",
    "cost_per_txn_deployed",
    "review_rate_deployed",
    "fpr_deployed",
)


def evaluate_prequential(
    data: Path,
    folds: int,
    fold_days: int,
    cost: CostModel = CostModel(),
    constraints: Constraints = Constraints(),
    selection_constraints: Constraints = Constraints(),
    delay_days: float = DEFAULT_LABEL_DELAY_DAYS,
    rejects: RejectedRecords | None = None,
) -> dict[str, Any]:
    """Every scorer over `folds` rolling test periods of `fold_days` days at the end of `data`.

    Each fold is fitted as `fraudstream train` fits a version (`fit_scorers`:
    models, weights and thresholds chosen within `selection_constraints`) on the labelled
    transactions before one label delay ahead of its test period, split into training and
    validation in training's proportions, and is then tested as the split protocol tests
    the live version; the merchant risk features of every fold end `delay_days` before
    each transaction, as a version trained with that delay computes them. The report holds
    each fold's figures and, per scorer, each figure's mean, standard deviation (over
    folds, as scikit-learn's cross-validation reports it), min and max. Raises
    `ProtocolError` when the stream is too short for the folds or a fold has nothing to
    test or too little to fit on. Records of `data` that break the contract go to
    `rejects` (see `read_stream_file`).
    """
    matrix = load_labelled_stream(
        data, label_delay_s=delay_days * SECONDS_PER_DAY, rejects=rejects
    )
    times = np.array([txn.event_time for txn in matrix.transactions])
    first_event = float(times.min())
    periods = prequential_periods(first_event, float(times.max()), folds, fold_days, delay_days)
    known_rows = known_compromised_rows(matrix, times, delay_days)
    fold_reports = []
    for number, period in enumerate(periods, start=1):
        label = f"fold {number} of {folds} (test from {iso_time(period.start)})"
        rows, known = held_out_rows(matrix, times, period, known_rows)
        if not rows.any():
            raise ProtocolError(f"{label}: no labelled transactions to test in {data}")
        split = TimeSplit.ending_at(first_event, period.fit_end)
        train, valid = split.rows(times, matrix.is_fraud)
        try:
            fitted = fit_scorers(matrix, train, valid, cost, selection_constraints)
        except ValueError as error:
            raise ProtocolError(f"{label}: {error}") from error
        figures = period_report(
            fitted.models, fitted.weights, fitted.thresholds, matrix, times, rows, cost, constraints
        )
        fold_reports.append(
            {
                "period": {"fit_end": period.fit_end, "start": period.start, "end": period.end},
                "rows": {"train": int(train.sum()), "valid": int(valid.sum())},
                "known_compromised_removed": known,
                **figures,
            }
        )
    return {
        "protocol": "prequential",
        "folds": fold_reports,
        "fold_days": fold_days,
        "label_delay_days": delay_days,
        "cost_model": vars(cost),
        "constraints": vars(constraints),
        "models": {
            name: {
                figure: _over_folds([fold["models"][name][figure] for fold in fold_reports])
                for figure in FOLD_FIGURES
            }
            for name in MODEL_NAMES
        },
    }


def _over_folds(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean, standard deviation, min and max over the folds where the figure is defined."""
    defined = np.array([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if defined.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {
        "mean": float(defined.mean()),
        "std": float(defined.std()),
        "min": float(defined.min()),
        "max": float(defined.max()),
    }


def format_prequential_report(report: dict[str, Any]) -> str:
    """The folds, one line each, then every scorer's figures as mean ± std over the folds."""
    folds = report["folds"]
    lines = [
        f"prequential evaluation: {len(folds)} folds of {report['fold_days']} days, each "
        f"fitted on everything before a {report['label_delay_days']:g}-day label-delay gap",
        "",
        f"{'fold':<6}{'fitted before':<22}{'tested from':<13}{'to':<13}{'train':>8}"
        f"{'valid':>8}{'test':>8}{'frauds':>8}{'known':>8}",
    ]
    for number, fold in enumerate(folds, start=1):
        period = fold["period"]
        lines.append(
            f"{number:<6}{iso_time(period['fit_end'])[:19]:<22}{iso_time(period['start'])[:10]:<13}"
            f"{iso_time(period['end'])[:10]:<13}{fold['rows']['train']:>8,}"
            f"{fold['rows']['valid']:>8,}{fold['transactions']:>8,}{fold['frauds']:>8,}"
            f"{fold['known_compromised_removed']:>8,}"
        )
    columns = {
        "auc_roc": "auc_roc",
        "auc_pr": "auc_pr",
        "recall_at_fpr_0_1pct": "rec@0.1%",
        "card_precision_at_100": "cp@100",
        "card_precision_at_capacity": "cp@cap",
        "cost_per_txn": "cost/txn",
        "cost_per_txn_deployed": "deployed",
    }
    lines += [
        "",
        "known: labelled test transactions left out, their card known compromised that day;",
        "to: exclusive. Figures are mean ± std over the folds:",
        f"{'model':<17}" + "".join(f"{title:>16}" for title in columns.values()),
    ]
    for name, figures in report["models"].items():
        cells = [_mean_std(figures[figure]) for figure in columns]
        lines.append(f"{name:<17}" + "".join(f"{cell:>16}" for cell in cells))
    return "\n".join(lines)


def _mean_std(summary: dict[str, float | None]) -> str:
    mean, std = summary["mean"], summary["std"]
    return "n/a" if mean is None or std is None else f"{mean:.3f} ± {std:.3f}"
