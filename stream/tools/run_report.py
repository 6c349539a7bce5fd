"""The summary of one run: throughput, latency against the budget, decisions and their quality.

Quality holds the operating limits too: the review rate against the review capacity (what
the analysts can work through), the declines' FPR against its cap, the review queue's
precision and card precision with k = the capacity's share of each day's transactions.

`summarize_run` is pure: it takes the decisions read back from the `decisions` topic and the
labels, and returns plain JSON-ready data, so the demo, the load test and the tests share it.
Delivery is at-least-once (DESIGN §2), so a transaction may be decided twice; the first
decision counts and the rest are reported as `duplicates`. Ratios that are undefined (no
frauds, nothing flagged, no labels) are None rather than a misleading 0 or 1.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from fraudstream.features.transaction import Label
from fraudstream.models.metrics import card_precision_by_day, mean_card_precision
from fraudstream.stream.contract import OUTCOMES, Decision, first_decisions
from fraudstream.stream.latency import latency_percentiles
from fraudstream.thresholds.cost import DECISION_SCORE, CostModel, evaluate_as_decided
from fraudstream.thresholds.optimise import Constraints
from fraudstream.thresholds.rules.backtest import over_capacity_reviews, review_capacity_of
from fraudstream.thresholds.rules.engine import NO_RULES, RuleSet

#: End-to-end latency budget in milliseconds per percentile (DESIGN §1).
DEFAULT_BUDGET_MS: Mapping[str, float] = MappingProxyType({"p50": 25, "p95": 50, "p99": 100})
def _within(measured: float | None, limit: float) -> bool:
    return measured is not None and measured <= limit


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _within_limit(measured: float | None, limit: float | None) -> bool:
    """No limit always passes; an undefined figure never does (as latency)."""
    return limit is None or _within(measured, limit)


def _card_precision(
    decided: Sequence[Decision], labels: Mapping[str, Label], capacity: float | None
) -> dict[str, Any]:
    """Card precision per day, k = capacity x the day's labelled decisions (none: no k)."""
    scored = [d for d in decided if d.txn_id in labels]
    if capacity is None or not scored:
        return {"mean": None, "by_day": []}
    daily = card_precision_by_day(
        [d.score for d in scored],
        [labels[d.txn_id].is_fraud for d in scored],
        [d.card_id for d in scored],
        [d.event_time for d in scored],
        share_of_day=capacity,
    )
    mean = mean_card_precision(daily)
    return {"mean": None if np.isnan(mean) else mean, "by_day": [vars(day) for day in daily]}


def _quality(
    decided: Sequence[Decision],
    labels: Mapping[str, Label],
    cost: CostModel,
    constraints: Constraints,
) -> dict[str, Any]:
    labelled = [(d.decision, labels[d.txn_id]) for d in decided if d.txn_id in labels]
    fraud = [label.is_fraud for _, label in labelled]
    frauds = sum(fraud)
    flagged = [label.is_fraud for action, label in labelled if action != "approve"]
    declined = [label.is_fraud for action, label in labelled if action == "decline"]
    reviewed = [label.is_fraud for action, label in labelled if action == "review"]
    review_rate = _ratio(sum(d.decision == "review" for d in decided), len(decided))
    fpr = _ratio(len(declined) - sum(declined), len(labelled) - frauds)
    caught: Counter[str] = Counter()
    per_scenario: Counter[str] = Counter()
    for action, label in labelled:
        if label.is_fraud:
            per_scenario[label.scenario] += 1
            caught[label.scenario] += action != "approve"
    cost_per_txn = None
    if labelled:
        scores = [DECISION_SCORE[action] for action, _ in labelled]
        cost_per_txn = evaluate_as_decided(scores, fraud, cost).cost_per_txn
    return {
        "labelled": len(labelled),
        "frauds": frauds,
        "precision": _ratio(sum(flagged), len(flagged)),
        "recall": _ratio(sum(flagged), frauds),
        "decline_precision": _ratio(sum(declined), len(declined)),
        "review_precision": _ratio(sum(reviewed), len(reviewed)),
        "fpr": fpr,
        "max_fpr": constraints.max_fpr,
        "fpr_within_cap": _within_limit(fpr, constraints.max_fpr),
        "review_rate": review_rate,
        "review_capacity": constraints.max_review_rate,
        "review_within_capacity": _within_limit(review_rate, constraints.max_review_rate),
        "card_precision_at_capacity": _card_precision(decided, labels, constraints.max_review_rate),
        "cost_per_txn": cost_per_txn,
        "recall_by_scenario": {
            name: caught[name] / per_scenario[name] for name in sorted(per_scenario)
        },
    }


def _rules(
    decided: Sequence[Decision], rule_set: RuleSet | None, review_capacity: float | None
) -> list[dict[str, Any]]:
    """Per rule or list of `rule_set` (else per id seen in the decisions): decisions it
    matched, those its action made (the first of a decision's `rules`), the reviews it sent
    and how many of them lie beyond its review capacity (its own, else `review_capacity`)."""
    matched = Counter(rule_id for decision in decided for rule_id in decision.rules)
    made = Counter(decision.rules[0] for decision in decided if decision.rules)
    reviews = Counter(d.rules[0] for d in decided if d.rules and d.decision == "review")
    known = rule_set if rule_set is not None else NO_RULES
    rules_by_id = {rule.id: rule for rule in known.rules}
    rows = []
    for rule_id in known.ids or sorted(matched):
        action = known.action_of.get(rule_id)
        capacity = (
            None if action is None
            else review_capacity_of(action, rules_by_id.get(rule_id), review_capacity)
        )  # fmt: skip
        rows.append({
            "id": rule_id, "action": action, "matched": matched[rule_id],
            "decided": made[rule_id], "reviews": reviews[rule_id],
            "review_share": _ratio(reviews[rule_id], len(decided)),
            "review_capacity": capacity,
            "over_capacity_reviews": over_capacity_reviews(
                reviews[rule_id], capacity, len(decided)),
        })  # fmt: skip
    return rows


def summarize_run(
    decisions: Sequence[Decision],
    labels: Mapping[str, Label],
    *,
    produced: int,
    dead_lettered: int,
    seconds: float,
    budget_ms: Mapping[str, float] = DEFAULT_BUDGET_MS,
    cost: CostModel = CostModel(),
    constraints: Constraints = Constraints(),
    rule_set: RuleSet | None = None,
) -> dict[str, Any]:
    """Figures of one run; latencies in ms, `throughput_tps` = distinct decisions / seconds.

    Decisions are read back from the topic (`Decision.from_dict`). Percentiles are exact,
    from every decision's latency (`stream.latency.latency_percentiles`). Budget keys must
    be percentiles reported in `e2e_latency_ms` (p50, p95, p99, max); a percentile with no
    data is not within budget.
    Quality counts only decided transactions that have a label; cost uses each decision's
    actual outcome (approved fraud → cost_fn, declined legit → cost_fp, review → cost_review).
    The review rate counts every decision; `constraints` gives the review capacity and FPR
    cap they are held against (the demo passes `Settings.threshold_constraints`);
    `rule_set` names the business rules the workers used (see `_rules`).
    """
    decided = first_decisions(decisions)
    e2e = latency_percentiles(
        [d.latency_ms["end_to_end"] for d in decided], ("p50", "p95", "p99", "max")
    )
    unknown = set(budget_ms) - set(e2e)
    if unknown:
        raise ValueError(f"budget_ms keys {sorted(unknown)} are not among {sorted(e2e)}")
    stages: dict[str, list[float]] = defaultdict(list)
    for decision in decided:
        for stage, ms in decision.latency_ms.items():
            stages[stage].append(ms)
    fallbacks: Counter[str] = Counter()
    for decision in decided:
        fallbacks.update(list(decision.fallbacks))  # count model names
    actions = Counter(d.decision for d in decided)
    return {
        "produced": produced,
        "decided": len(decided),
        "duplicates": len(decisions) - len(decided),
        "dead_lettered": dead_lettered,
        "throughput_tps": round(len(decided) / seconds, 2) if seconds > 0 else 0.0,
        "e2e_latency_ms": e2e,
        "budget_ms": dict(budget_ms),
        "within_budget": {name: _within(e2e[name], limit) for name, limit in budget_ms.items()},
        "stage_latency_ms": {
            stage: latency_percentiles(values, ("p50", "p99")) for stage, values in stages.items()
        },
        "decisions": {action: actions[action] for action in OUTCOMES},
        "fallbacks": dict(sorted(fallbacks.items())),
        "degraded": sum(d.degraded for d in decided),
        "stand_in": sum(d.stand_in for d in decided),
        "stand_in_share": _ratio(sum(d.stand_in for d in decided), len(decided)),
        "quality": _quality(decided, labels, cost, constraints),
        "rules": _rules(decided, rule_set, constraints.max_review_rate),
    }


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _limit_lines(quality: Mapping[str, Any]) -> list[str]:
    """Review rate against the capacity and decline FPR against its cap, PASS or FAIL."""
    capacity = quality["review_capacity"]
    shown_capacity = "no capacity set" if capacity is None else f"capacity {capacity * 100:.4g} %"
    review = None if quality["review_rate"] is None else quality["review_rate"] * 100
    fpr = None if quality["fpr"] is None else quality["fpr"] * 100
    card = quality["card_precision_at_capacity"]
    return [
        f"  review {_fmt(review, '.2f')} % ({shown_capacity})   "
        + _verdict(quality["review_within_capacity"]),
        f"  decline FPR {_fmt(fpr, '.3f')} % (cap {quality['max_fpr'] * 100:.4g} %)   "
        + _verdict(quality["fpr_within_cap"]),
        f"  review queue precision: {_fmt(quality['review_precision'])}   card precision@k "
        f"(k = capacity x day): {_fmt(card['mean'])} over {len(card['by_day'])} days",
    ]


def _rule_lines(rules: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per rule that matched: matched, decided, and its reviews against capacity."""
    lines = []
    for row in rules:
        if not row["matched"]:
            continue
        line = f"    {row['id']} ({row['action']}): matched {row['matched']}, "
        line += f"decided {row['decided']}"
        if row["review_capacity"] is not None:
            line += (
                f", reviews {_fmt(row['review_share'], '.2%')} (capacity "
                f"{row['review_capacity']:.2%})   "
                + ("PASS" if row["over_capacity_reviews"] == 0
                   else f"OVER by {row['over_capacity_reviews']}")
            )  # fmt: skip
        lines.append(line)
    return ["  rules:" + ("" if lines else " none matched"), *lines] if rules else []


def format_summary(summary: Mapping[str, Any]) -> str:
    """The short plain-text summary the demo prints at the end of a run."""
    e2e, budget, ok = summary["e2e_latency_ms"], summary["budget_ms"], summary["within_budget"]
    quality, counts = summary["quality"], summary["decisions"]
    latency = [
        f"  latency {name}: {_fmt(e2e[name], '.1f')} ms   budget {budget[name]:g} ms   "
        + _verdict(ok[name])
        for name in budget
    ]
    lines = [
        "FraudStream run summary",
        f"  in: {summary['produced']} transactions   out: {summary['decided']} decisions   "
        f"duplicates: {summary['duplicates']}   dead-lettered: {summary['dead_lettered']}",
        f"  throughput: {summary['throughput_tps']:.1f} decisions/s",
        *latency,
        f"  latency max: {_fmt(e2e['max'], '.1f')} ms (end to end)",
        "  decisions: " + "  ".join(f"{action} {counts[action]}" for action in OUTCOMES),
        f"  stand-in (decided late, XGBoost alone): {summary['stand_in']} "
        f"({_fmt(summary['stand_in_share'], '.1%')})",
        f"  degraded: {summary['degraded']}   fallbacks: "
        + (", ".join(f"{m} {n}" for m, n in summary["fallbacks"].items()) or "none"),
        f"  labelled: {quality['labelled']}   frauds: {quality['frauds']}",
        f"  precision: {_fmt(quality['precision'])}   recall: {_fmt(quality['recall'])}",
        "  recall by scenario: "
        + (", ".join(f"{s} {r:.2f}" for s, r in quality["recall_by_scenario"].items()) or "n/a"),
        *_limit_lines(quality),
        f"  cost per transaction: {_fmt(quality['cost_per_txn'], '.2f')}",
        *_rule_lines(summary.get("rules", [])),
    ]
    if "cpu_s_per_1000_txn" in summary:
        lines.append(
            "  CPU s per 1,000 transactions: "
            + "  ".join(
                f"{role} {_fmt(value)}" for role, value in summary["cpu_s_per_1000_txn"].items()
            )
            + f"   (load average {summary['load_average']['1m']:.2f} on "
            f"{summary['load_average']['cores']:.0f} cores)"
        )
    return "\n".join(lines)


def _markdown(summary: Mapping[str, Any]) -> str:
    e2e, quality = summary["e2e_latency_ms"], summary["quality"]
    lines = ["# FraudStream run report", "", "| figure | value |", "|---|---|"]
    for key in ("produced", "decided", "duplicates", "dead_lettered", "throughput_tps"):
        lines.append(f"| {key} | {summary[key]} |")
    lines.append(f"| degraded | {summary['degraded']} |")
    lines.append(f"| stand_in | {summary['stand_in']} ({_fmt(summary['stand_in_share'], '.1%')}) |")
    lines += ["", "## End-to-end latency (ms)", "",
              "Exact percentiles of every decision's latency (stream/latency.py), not the "
              "Prometheus histogram estimates the dashboard shows.", "",
              "| percentile | measured | budget | |"]  # fmt: skip
    lines.append("|---|---|---|---|")
    for name, value in e2e.items():
        limit = summary["budget_ms"].get(name)
        verdict = "" if limit is None else _verdict(summary["within_budget"][name])
        lines.append(
            f"| {name} | {_fmt(value, '.2f')} | {'' if limit is None else limit} | {verdict} |"
        )
    lines += _cpu_markdown(summary)
    lines += ["", "![latency](latency_histogram.png)", "", "## Decisions", ""]
    lines += ["| outcome | count |", "|---|---|"]
    lines += [f"| {action} | {n} |" for action, n in summary["decisions"].items()]
    fallbacks = summary["fallbacks"]
    lines += ["", "Fallbacks: " + (", ".join(f"{m}: {n}" for m, n in fallbacks.items()) or "none")]
    lines += ["", "## Quality", "", "| measure | value |", "|---|---|"]
    for key in ("labelled", "frauds", "precision", "recall", "decline_precision",
                "review_precision"):  # fmt: skip
        value = quality[key]
        lines.append(f"| {key} | {value if isinstance(value, int) else _fmt(value, '.4f')} |")
    lines.append(f"| cost_per_txn | {_fmt(quality['cost_per_txn'], '.2f')} |")
    lines += _limits_markdown(quality)
    lines += ["", "### Recall by scenario", "", "| scenario | recall |", "|---|---|"]
    lines += [f"| {s} | {r:.3f} |" for s, r in quality["recall_by_scenario"].items()]
    lines += _rules_markdown(summary.get("rules", []))
    lines += ["", "![scores](score_distribution.png)", "", "## Latency by stage (ms)", ""]
    lines += ["| stage | p50 | p99 |", "|---|---|---|"]
    for stage, pct in summary["stage_latency_ms"].items():
        lines.append(f"| {stage} | {_fmt(pct['p50'], '.2f')} | {_fmt(pct['p99'], '.2f')} |")
    return "\n".join(lines) + "\n"


def _rules_markdown(rules: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["", "## Business rules", "",
             "| rule or list | action | matched | decided | reviews | review capacity | over |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in rules:
        capacity = row["review_capacity"]
        over = row["over_capacity_reviews"]
        lines.append(
            f"| {row['id']} | {row['action']} | {row['matched']} | {row['decided']} | "
            f"{row['reviews']} | {'' if capacity is None else f'{capacity:.2%}'} | "
            f"{'' if over is None else over} |"
        )
    return lines if rules else []


def _limits_markdown(quality: Mapping[str, Any]) -> list[str]:
    """The operating limits, and card precision per day with k from the review capacity."""
    capacity = quality["review_capacity"]
    card = quality["card_precision_at_capacity"]
    lines = [
        "", "### Operating limits", "", "| limit | measured | allowed | |", "|---|---|---|---|",
        f"| review rate (all decisions) | {_fmt(quality['review_rate'], '.2%')} | "
        f"{'unlimited' if capacity is None else format(capacity, '.2%')} | "
        f"{_verdict(quality['review_within_capacity'])} |",
        f"| decline FPR | {_fmt(quality['fpr'], '.3%')} | {quality['max_fpr']:.3%} | "
        f"{_verdict(quality['fpr_within_cap'])} |",
        "", "### Card precision top-k per day", "",
        "k = review capacity x the day's labelled decisions: the cards analysts can check; "
        "precision = compromised cards among the k with the highest score that day "
        f"(mean {_fmt(card['mean'])}).", "",
        "| day | transactions | k | precision |", "|---|---|---|---|",
    ]  # fmt: skip
    lines += [
        f"| {day['day']} | {day['transactions']} | {day['k']} | {_fmt(day['precision'])} |"
        for day in card["by_day"]
    ]
    return lines


def _cpu_markdown(summary: Mapping[str, Any]) -> list[str]:
    """Per-process CPU cost and p99 per 10 s window, when the run measured them."""
    if "cpu_s_per_1000_txn" not in summary:
        return []
    cpu, load = summary["cpu_s_per_1000_txn"], summary["load_average"]
    windows = ", ".join(_fmt(p99, ".0f") for p99 in summary["e2e_p99_ms_by_10s_window"])
    return [
        "", "## Where the CPU went", "",
        "CPU seconds per 1,000 transactions, from each process's own CPU times "
        "(– = a server this run did not start).", "",
        "| " + " | ".join(cpu) + " |", "|" + "---:|" * len(cpu),
        "| " + " | ".join(_fmt(value) for value in cpu.values()) + " |", "",
        f"Load average {load['1m']:.2f} / {load['5m']:.2f} / {load['15m']:.2f} "
        f"on {load['cores']:.0f} cores.", "",
        f"p99 per 10 s window (ms, oldest first): {windows}",
    ]  # fmt: skip


def _plot_latency(path: Path, summary: Mapping[str, Any], latencies: Sequence[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    positive = [ms for ms in latencies if ms > 0]
    if positive:
        low, high = min(positive), max(positive)
        ax.hist(
            positive, bins=np.geomspace(low, max(high, low * 1.01), 60).tolist(), color="#4c72b0"
        )
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no decisions", ha="center", transform=ax.transAxes)
    styles = {"p50": ":", "p95": "--", "p99": "-."}
    for name, style in styles.items():
        value = summary["e2e_latency_ms"].get(name)
        if value is not None and value > 0:
            ax.axvline(value, color="black", linestyle=style, label=f"{name} {value:.1f} ms")
    for name, limit in summary["budget_ms"].items():
        style = styles.get(name, "-")
        label = f"budget {name} {limit:g} ms"
        ax.axvline(limit, color="red", linestyle=style, alpha=0.6, label=label)
    ax.set(xlabel="end-to-end latency (ms)", ylabel="decisions", title="End-to-end latency")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _is_fraud(labels: Mapping[str, Label], txn_id: str) -> bool | None:
    label = labels.get(txn_id)
    return None if label is None else label.is_fraud


def _plot_scores(path: Path, decided: Sequence[Decision], labels: Mapping[str, Label]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    bins = np.linspace(0.0, 1.0, 51).tolist()
    for is_fraud, name, colour in ((False, "legit", "#4c72b0"), (True, "fraud", "#c44e52")):
        scores = [d.score for d in decided if _is_fraud(labels, d.txn_id) is is_fraud]
        if scores:
            label = f"{name} ({len(scores)})"
            ax.hist(scores, bins=bins, density=True, alpha=0.6, color=colour, label=label)
    ax.set_yscale("log")
    ax.set(xlabel="ensemble score", ylabel="density", title="Scores of fraud vs legit")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_run_folder(
    out: Path,
    summary: Mapping[str, Any],
    decisions: Sequence[Decision],
    labels: Mapping[str, Label],
) -> list[Path]:
    """Write summary.json, report.md and the two plots into `out` (created); return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    decided = first_decisions(decisions)
    paths = [out / name for name in ("summary.json", "report.md")]
    paths[0].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(_markdown(summary), encoding="utf-8")
    latency_png, scores_png = out / "latency_histogram.png", out / "score_distribution.png"
    _plot_latency(latency_png, summary, [d.latency_ms["end_to_end"] for d in decided])
    _plot_scores(scores_png, decided, labels)
    return [*paths, latency_png, scores_png]
