"""Static against dynamic thresholds on one replay that crosses the drift point.

The dynamic run is what the workers decided. The static counterfactual applies the
registry's validation-optimal pair to the very same scores: thresholds do not change
scores, so the comparison isolates the threshold policy. Figures are split at the
generator's drift point; the post-drift part is where the dynamic threshold must pay off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.features.transaction import Label
from fraudstream.stream.contract import OUTCOMES, Decision, first_decisions
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.pair import ThresholdPair

BUCKETS = 12


def outcome_figures(
    decisions: np.ndarray, is_fraud: np.ndarray, cost: CostModel
) -> dict[str, float]:
    """Cost per transaction, recall and FPR of decision codes (0 approve, 1 review, 2 decline)."""
    legit = ~is_fraud
    total = (
        np.sum((decisions == 0) & is_fraud) * cost.cost_fn
        + np.sum((decisions == 2) & legit) * cost.cost_fp
        + np.sum(decisions == 1) * cost.cost_review
    )
    return {
        "transactions": int(decisions.size),
        "frauds": int(is_fraud.sum()),
        "cost_per_txn": float(total / max(1, decisions.size)),
        "recall": float(np.sum((decisions > 0) & is_fraud) / max(1, is_fraud.sum())),
        "fpr": float(np.sum((decisions == 2) & legit) / max(1, legit.sum())),
    }


def compare_thresholds(
    decisions: Sequence[Decision],
    labels: Mapping[str, Label],
    static_pair: ThresholdPair,
    drift_time: float,
    cost: CostModel = CostModel(),
) -> dict[str, Any]:
    """Post-drift figures for `static` and `dynamic`, plus per-bucket series for the plot."""
    rows = sorted((d for d in first_decisions(decisions) if d.txn_id in labels),
                  key=lambda d: d.event_time)  # fmt: skip
    times = np.array([d.event_time for d in rows])
    scores = np.array([d.score for d in rows])
    is_fraud = np.array([labels[d.txn_id].is_fraud for d in rows], dtype=bool)
    dynamic = np.array([OUTCOMES.index(d.decision) for d in rows])
    review, decline = static_pair.review, static_pair.decline
    static = np.where(scores >= decline, 2, np.where(scores >= review, 1, 0))
    post = times >= drift_time
    result: dict[str, Any] = {
        "drift_time": drift_time,
        "static_thresholds": {"review": review, "decline": decline},
        "static": outcome_figures(static[post], is_fraud[post], cost),
        "dynamic": outcome_figures(dynamic[post], is_fraud[post], cost),
        "whole_replay": {
            "static": outcome_figures(static, is_fraud, cost),
            "dynamic": outcome_figures(dynamic, is_fraud, cost),
        },
    }
    static_cost = result["static"]["cost_per_txn"]
    dynamic_cost = result["dynamic"]["cost_per_txn"]
    result["margin_cost_per_txn"] = static_cost - dynamic_cost
    result["margin_share"] = (static_cost - dynamic_cost) / static_cost if static_cost else 0.0
    edges = np.linspace(times.min(), times.max(), BUCKETS + 1) if len(times) else np.array([])
    series = []
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        inside = (times >= start) & (times <= end)
        if inside.any():
            series.append({
                "start": float(start), "end": float(end),
                "static": outcome_figures(static[inside], is_fraud[inside], cost),
                "dynamic": outcome_figures(dynamic[inside], is_fraud[inside], cost),
            })  # fmt: skip
    result["series"] = series
    return result


def write_drift_report(
    out: Path, comparison: dict[str, Any], recalibrations: Sequence[Mapping[str, Any]]
) -> list[Path]:
    """`drift.json`, `drift.md` and `drift_over_time.png` in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    document = {**comparison, "recalibrations": list(recalibrations)}
    json_path = out / "drift.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    day = 86_400.0
    origin = comparison["series"][0]["start"] if comparison["series"] else 0.0
    middles = [((b["start"] + b["end"]) / 2 - origin) / day for b in comparison["series"]]
    figure, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for axis, key, title in zip(axes, ("cost_per_txn", "recall", "fpr"),
                                ("cost per transaction ($)", "recall", "false-positive rate"),
                                strict=True):  # fmt: skip
        for policy in ("static", "dynamic"):
            axis.plot(middles, [b[policy][key] for b in comparison["series"]], marker="o",
                      label=policy)  # fmt: skip
        axis.axvline((comparison["drift_time"] - origin) / day, color="red", linestyle="--",
                     label="drift point")  # fmt: skip
        for change in recalibrations:
            stream_time = change.get("stream_time")
            if stream_time is not None:
                axis.axvline((stream_time - origin) / day, color="grey", alpha=0.3, linewidth=0.8)
        axis.set_ylabel(title)
    axes[0].legend()
    axes[-1].set_xlabel(
        "event time (days since the replay's first transaction); grey: recalibrations"
    )
    figure.tight_layout()
    plot_path = out / "drift_over_time.png"
    figure.savefig(plot_path, dpi=110)
    plt.close(figure)
    static, dynamic = comparison["static"], comparison["dynamic"]
    lines = [
        "# Static vs dynamic threshold across the drift point", "",
        "Same replay, same scores: the static policy applies the registry's validation-optimal "
        "pair, the dynamic one is what the workers decided with the live threshold.", "",
        "| after the drift point | static | dynamic |", "|---|---:|---:|",
        f"| cost per transaction | ${static['cost_per_txn']:.3f} "
        f"| ${dynamic['cost_per_txn']:.3f} |",
        f"| recall | {static['recall']:.3f} | {dynamic['recall']:.3f} |",
        f"| false-positive rate | {static['fpr']:.5f} | {dynamic['fpr']:.5f} |",
        f"| transactions (frauds) | {static['transactions']:,} ({static['frauds']}) | "
        f"{dynamic['transactions']:,} ({dynamic['frauds']}) |", "",
        f"Margin: the dynamic threshold costs ${comparison['margin_cost_per_txn']:.3f} per "
        f"transaction less after the drift ({comparison['margin_share']:.1%} of the static "
        "cost)." if comparison["margin_cost_per_txn"] > 0 else
        f"The dynamic threshold did NOT beat the static one after the drift (margin "
        f"${comparison['margin_cost_per_txn']:.3f} per transaction).", "",
        f"{len(recalibrations)} recalibrations were published during the replay.", "",
        "![over time](drift_over_time.png)",
    ]  # fmt: skip
    markdown_path = out / "drift.md"
    markdown_path.write_text("\n".join(lines) + "\n")
    return [json_path, markdown_path, plot_path]
