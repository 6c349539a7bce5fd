"""`fraudstream explain`: one decision walked through, stage by stage, as a design interview
would ask for it.

The story is assembled from what the system recorded, never recomputed from models: the
decision record (its features, model scores, reasons, latency), the transaction it decided,
the model version's ensemble weights and the threshold pair named by `threshold_version`,
as `stream/tools/decision_sources.py` finds them. What could not be found is said, not
guessed: `notes` lists it.

`explain_decision` is pure and returns JSON-ready data; `format_explanation` lays it out as
Markdown-ish text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.transaction import Label, Transaction
from fraudstream.models.ensemble import combine
from fraudstream.stream.contract import Decision
from fraudstream.stream.tools.tail import event_time_text
from fraudstream.thresholds.cost import decide
from fraudstream.thresholds.pair import ThresholdPair


@dataclass(frozen=True)
class DecisionSources:
    """What was found about one decision: its record as on the topic, and whatever else
    could be."""

    record: Mapping[str, Any]
    transaction: Transaction | None = None
    label: Label | None = None
    weights: Mapping[str, float] | None = None
    feature_names: Sequence[str] = FEATURE_NAMES
    pair: ThresholdPair | None = None
    notes: tuple[str, ...] = field(default=())


def _model_rows(decision: Decision, weights: Mapping[str, float] | None) -> list[dict[str, Any]]:
    """Each model's score, configured weight, weight used (renormalised over the models that
    answered, as `combine` does) and contribution = weight used x score."""
    used: Mapping[str, float] | None = None
    if weights is not None and all(name in weights for name in decision.model_scores):
        used = combine(decision.model_scores, weights).weights_used
    rows = []
    for name, score in decision.model_scores.items():
        weight_used = None if used is None else used[name]
        rows.append({
            "model": name, "score": score,
            "weight": None if weights is None else weights.get(name),
            "weight_used": weight_used,
            "contribution": None if weight_used is None or score is None
                            else weight_used * score,
            "fallback": decision.fallbacks.get(name),
        })  # fmt: skip
    return rows


def explain_decision(sources: DecisionSources) -> dict[str, Any]:
    """The walk-through of one decision as JSON-ready data (see `format_explanation`)."""
    decision = Decision.from_dict(sources.record)
    models = _model_rows(decision, sources.weights)
    contributions = [row["contribution"] for row in models]
    pair = sources.pair
    return {
        "txn_id": decision.txn_id,
        "card_id": decision.card_id,
        "event_time": decision.event_time,
        "decision": decision.decision,
        "score": decision.score,
        "transaction": None if sources.transaction is None else sources.transaction.to_dict(),
        "label": None if sources.label is None else sources.label.to_dict(),
        "features": dict(zip(sources.feature_names, decision.features, strict=False)),
        "model_version": decision.model_version,
        "models": models,
        "ensemble_recomputed": None if None in contributions or not contributions
                               else sum(contributions),
        "threshold": {"version": decision.threshold_version,
                      "review": None if pair is None else pair.review,
                      "decline": None if pair is None else pair.decline},
        "rules": list(decision.rules),
        "rules_version": decision.rules_version,
        "reasons": list(decision.reasons),
        "fallbacks": dict(decision.fallbacks),
        "stand_in": decision.stand_in,
        "degraded": decision.degraded,
        "latency_ms": dict(decision.latency_ms),
        "shadow": None if decision.shadow is None else decision.shadow.to_dict(),
        "notes": list(sources.notes),
    }  # fmt: skip


def _number(value: float | None, spec: str = ".4f") -> str:
    return "?" if value is None else format(value, spec)


def _transaction_lines(story: Mapping[str, Any]) -> list[str]:
    txn, label = story["transaction"], story["label"]
    lines = ["## 1. The transaction", ""]
    if txn is None:
        lines.append("not found (see notes); the decision's own fields:")
        lines.append(f"- card (pseudonym) {story['card_id']}, "
                     f"event time {event_time_text(story['event_time'])} UTC")  # fmt: skip
    else:
        lines += [f"- {name}: {value}" for name, value in txn.items()]
        lines.append(f"- event time: {event_time_text(txn['event_time'])} UTC; the card is "
                     f"{story['card_id']} in the decision (keyed pseudonym)")  # fmt: skip
    if label is not None:
        truth = f"fraud ({label['scenario']})" if label["is_fraud"] else "legitimate"
        lines.append(f"- truth, labelled later: {truth}")
    return lines


def _model_lines(story: Mapping[str, Any]) -> list[str]:
    lines = [f"## 3. Models and the ensemble (model version {story['model_version']})", "",
             "| model | score | weight | weight used | contribution | fallback |",
             "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for row in story["models"]:
        lines.append(
            f"| {row['model']} | {_number(row['score'])} | {_number(row['weight'], '.3f')} | "
            f"{_number(row['weight_used'], '.3f')} | {_number(row['contribution'])} | "
            f"{row['fallback'] or '-'} |"
        )
    lines += ["", f"ensemble score {story['score']:.4f} (weighted mean of the scores that "
              f"answered; the contributions sum to {_number(story['ensemble_recomputed'])})"]
    return lines  # fmt: skip


def _threshold_lines(story: Mapping[str, Any]) -> list[str]:
    pair = story["threshold"]
    line = f"pair {pair['version']}"
    if pair["review"] is not None:
        line += f": review at score >= {pair['review']:.4f}, decline at >= {pair['decline']:.4f}"
    else:
        line += ": its review/decline values were not found (see notes)"
    outcome = f"score {story['score']:.4f} -> "
    if story["rules"]:  # the first rule that fired decided, whatever the thresholds said
        by_thresholds = (
            "?" if pair["review"] is None
            else decide(story["score"], pair["review"], pair["decline"]).upper()
        )  # fmt: skip
        outcome += (f"{by_thresholds} by the thresholds; rule {story['rules'][0]} decided "
                    f"{story['decision'].upper()}")  # fmt: skip
    else:
        outcome += story["decision"].upper()
    return ["## 4. Thresholds", "", line, outcome]


def _health_lines(story: Mapping[str, Any]) -> list[str]:
    fallbacks = story["fallbacks"]
    lines = ["## 7. Fallbacks and degraded mode", "",
             "- fallbacks: " + ("; ".join(f"{m}: {why}" for m, why in fallbacks.items())
                                or "none"),
             f"- stand-in (decided late by XGBoost alone): {'yes' if story['stand_in'] else 'no'}",
             f"- degraded (features or a model missing): {'yes' if story['degraded'] else 'no'}"]
    if story["shadow"] is not None:
        shadow = story["shadow"]
        lines.append(f"- shadow {shadow['model_version']} would have said "
                     f"{shadow['decision']} at {shadow['score']:.4f}")
    return lines  # fmt: skip


def format_explanation(story: Mapping[str, Any]) -> str:
    """`explain_decision`'s data as a Markdown walk-through, stage by stage."""
    rules = story["rules"]
    rules_line = ", ".join(rules) if rules else "none"
    if story["rules_version"]:  # "" when no rule set was in force
        rules_line += f" (rules version {story['rules_version']})"
    lines = [f"# Decision for {story['txn_id']}: {story['decision'].upper()} "
             f"(score {story['score']:.4f})", ""]  # fmt: skip
    lines += _transaction_lines(story)
    lines += ["", "## 2. Window features (what the models saw)", "",
              "| feature | value |", "|---|---:|"]  # fmt: skip
    lines += [f"| {name} | {value:.6g} |" for name, value in story["features"].items()]
    lines += ["", *_model_lines(story), "", *_threshold_lines(story), "",
              "## 5. Rules fired", "", rules_line, "", "## 6. Reasons", ""]  # fmt: skip
    lines += [f"- {reason}" for reason in story["reasons"]] or ["none (approvals carry none)"]
    lines += ["", *_health_lines(story), "", "## 8. Latency by stage (ms)", "",
              "| stage | ms |", "|---|---:|"]  # fmt: skip
    lines += [f"| {stage} | {ms:.2f} |" for stage, ms in story["latency_ms"].items()]
    if story["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in story["notes"]]
    return "\n".join(lines) + "\n"
