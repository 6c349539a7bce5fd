"""Tests for stream/tools/run_report.py: figures from hand-made decisions, and the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudstream.features.transaction import Label
from fraudstream.stream.contract import Decision
from fraudstream.stream.tools.run_report import format_summary, summarize_run, write_run_folder
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.optimise import Constraints
from fraudstream.thresholds.rules import parse_rules
from tests.support.decisions import a_decision

SUMMARY_KEYS = {
    "produced",
    "decided",
    "duplicates",
    "dead_lettered",
    "throughput_tps",
    "e2e_latency_ms",
    "budget_ms",
    "within_budget",
    "stage_latency_ms",
    "decisions",
    "fallbacks",
    "degraded",
    "stand_in",
    "stand_in_share",
    "quality",
    "rules",
}
# t1..t11: action and truth. t11 has no label (its chargeback has not arrived).
ACTIONS = ["decline", "review", "approve", "decline", "review"] + ["approve"] * 6
TRUTH: dict[str, tuple[bool, str]] = {
    "t1": (True, "stolen_card"),
    "t2": (True, "stolen_card"),
    "t3": (True, "card_testing"),
    **{f"t{i}": (False, "legit") for i in range(4, 11)},
}
FALLBACKS: dict[str, dict[str, str]] = {
    "t2": {"xgboost": "timeout"},
    "t3": {"xgboost": "timeout", "isolation_forest": "error"},
}


def decision(i: int, action: str, end_to_end: float) -> Decision:
    txn_id = f"t{i}"
    fallbacks = FALLBACKS.get(txn_id, {})
    latency = {"features": 0.1 * i, "end_to_end": end_to_end}
    if "xgboost" not in fallbacks:
        latency["xgboost"] = 2.0
    return a_decision(
        txn_id,
        card_id=f"c{i % 3}",
        decision=action,
        score={"approve": 0.05, "review": 0.5, "decline": 0.95}[action],
        model_scores={"xgboost": None if fallbacks else 0.5, "isolation_forest": 0.4},
        fallbacks=fallbacks,
        threshold_version="v1",
        latency_ms=latency,
        degraded=bool(fallbacks),
        stand_in=i % 4 == 0,
    )


@pytest.fixture
def decisions() -> list[Decision]:
    made = [decision(i, action, float(i)) for i, action in enumerate(ACTIONS, 1)]
    made.append(decision(1, "approve", 500.0))  # redelivered: the first decision counts
    return made


@pytest.fixture
def labels() -> dict[str, Label]:
    return {
        txn_id: Label(txn_id, is_fraud, scenario, 2e9)
        for txn_id, (is_fraud, scenario) in TRUTH.items()
    }


def test_summary_counts_each_transaction_once_and_measures_latency(
    decisions: list[Decision], labels: dict[str, Label]
) -> None:
    summary = summarize_run(
        decisions,
        labels,
        produced=12,
        dead_lettered=1,
        seconds=2.0,
        budget_ms={"p50": 5, "p99": 20},
    )
    assert set(summary) == SUMMARY_KEYS
    assert (summary["produced"], summary["decided"], summary["duplicates"]) == (12, 11, 1)
    assert summary["dead_lettered"] == 1
    assert summary["throughput_tps"] == pytest.approx(5.5)
    # Latencies 1..11 ms (the duplicate's 500 ms is ignored), linear interpolation.
    assert summary["e2e_latency_ms"] == pytest.approx(
        {"p50": 6.0, "p95": 10.5, "p99": 10.9, "max": 11.0}
    )
    assert summary["within_budget"] == {"p50": False, "p99": True}
    stages = summary["stage_latency_ms"]
    assert set(stages) == {"features", "xgboost", "end_to_end"}
    assert stages["features"] == pytest.approx({"p50": 0.6, "p99": 1.09})
    assert stages["xgboost"] == pytest.approx({"p50": 2.0, "p99": 2.0})
    assert summary["decisions"] == {"approve": 7, "review": 2, "decline": 2}
    assert summary["fallbacks"] == {"isolation_forest": 1, "xgboost": 2}
    assert summary["degraded"] == 2
    assert summary["stand_in"] == 2 and summary["stand_in_share"] == pytest.approx(2 / 11)


def test_quality_uses_each_decision_as_made(
    decisions: list[Decision], labels: dict[str, Label]
) -> None:
    summary = summarize_run(decisions, labels, produced=11, dead_lettered=0, seconds=1.0)
    quality = summary["quality"]
    assert (quality["labelled"], quality["frauds"]) == (10, 3)
    assert quality["precision"] == pytest.approx(2 / 4)  # flagged t1 t2 t4 t5
    assert quality["recall"] == pytest.approx(2 / 3)  # t3 approved
    assert quality["decline_precision"] == pytest.approx(1 / 2)  # t1 fraud, t4 legit
    assert quality["fpr"] == pytest.approx(1 / 7)
    # Missed t3 (5000) + false decline t4 (50) + two reviews (2 * 10), over 10 labelled.
    assert quality["cost_per_txn"] == pytest.approx(507.0)
    assert quality["recall_by_scenario"] == {"card_testing": 0.0, "stolen_card": 1.0}
    assert summary["within_budget"] == {"p50": True, "p95": True, "p99": True}

    cheap = CostModel(cost_fn=100.0, cost_fp=1.0, cost_review=0.0)
    other = summarize_run(decisions, labels, produced=11, dead_lettered=0, seconds=1.0, cost=cheap)
    assert other["quality"]["cost_per_txn"] == pytest.approx(10.1)


def test_review_rate_and_decline_fpr_are_held_against_the_limits(
    decisions: list[Decision], labels: dict[str, Label]
) -> None:
    limits = Constraints(max_fpr=0.1, max_review_rate=0.2)
    summary = summarize_run(
        decisions, labels, produced=11, dead_lettered=0, seconds=1.0, constraints=limits
    )
    quality = summary["quality"]
    assert quality["review_rate"] == pytest.approx(2 / 11)  # t2, t5 of 11 decided
    assert (quality["review_capacity"], quality["review_within_capacity"]) == (0.2, True)
    assert (quality["max_fpr"], quality["fpr_within_cap"]) == (0.1, False)  # 1/7 declined
    assert quality["review_precision"] == pytest.approx(1 / 2)  # t2 fraud, t5 legit
    # One day, 10 labelled decisions: k = 2 cards, c1 (t1 fraud) and c2 (t2 fraud) at the top.
    card = quality["card_precision_at_capacity"]
    assert card == {
        "mean": 1.0,
        "by_day": [{"day": "1970-01-01", "transactions": 10, "k": 2, "precision": 1.0}],
    }
    text = format_summary(summary)
    assert "review 18.18 % (capacity 20 %)   PASS" in text
    assert "decline FPR 14.286 % (cap 10 %)   FAIL" in text
    tighter = Constraints(max_fpr=0.2, max_review_rate=0.1)
    other = summarize_run(
        decisions, labels, produced=11, dead_lettered=0, seconds=1.0, constraints=tighter
    )
    assert "review 18.18 % (capacity 10 %)   FAIL" in format_summary(other)
    assert "decline FPR 14.286 % (cap 20 %)   PASS" in format_summary(other)


def test_no_review_capacity_always_passes_and_has_no_card_precision(
    decisions: list[Decision], labels: dict[str, Label]
) -> None:
    summary = summarize_run(decisions, labels, produced=11, dead_lettered=0, seconds=1.0)
    quality = summary["quality"]
    assert (quality["review_capacity"], quality["review_within_capacity"]) == (None, True)
    assert quality["card_precision_at_capacity"] == {"mean": None, "by_day": []}
    assert "review 18.18 % (no capacity set)   PASS" in format_summary(summary)


def test_undefined_figures_are_none_not_zero() -> None:
    summary = summarize_run([], {}, produced=0, dead_lettered=0, seconds=0.0)
    assert summary["decided"] == 0 and summary["throughput_tps"] == 0.0
    assert summary["e2e_latency_ms"] == dict.fromkeys(("p50", "p95", "p99", "max"))
    assert summary["within_budget"] == {"p50": False, "p95": False, "p99": False}
    assert summary["quality"]["precision"] is None
    assert summary["quality"]["cost_per_txn"] is None
    assert summary["quality"]["review_rate"] is None
    assert not summary["quality"]["fpr_within_cap"]  # no FPR measured is no PASS
    assert "n/a" in format_summary(summary)


def test_unknown_budget_percentile_is_rejected(decisions: list[Decision]) -> None:
    with pytest.raises(ValueError, match="p90"):
        summarize_run(decisions, {}, produced=1, dead_lettered=0, seconds=1.0, budget_ms={"p90": 1})


def test_run_folder_holds_summary_report_and_plots(
    tmp_path: Path, decisions: list[Decision], labels: dict[str, Label]
) -> None:
    summary = summarize_run(
        decisions, labels, produced=12, dead_lettered=1, seconds=2.0,
        constraints=Constraints(max_fpr=0.1, max_review_rate=0.2),
    )  # fmt: skip
    paths = write_run_folder(tmp_path / "run", summary, decisions, labels)

    names = [path.name for path in paths]
    assert names == ["summary.json", "report.md", "latency_histogram.png", "score_distribution.png"]
    assert all(path.stat().st_size > 0 for path in paths)
    assert set(json.loads(paths[0].read_text())) == SUMMARY_KEYS
    report = paths[1].read_text()
    assert "latency_histogram.png" in report and "score_distribution.png" in report
    assert "| p50 | 6.00 | 25 | PASS |" in report
    assert "| stolen_card | 1.000 |" in report
    assert "| review rate (all decisions) | 18.18% | 20.00% | PASS |" in report
    assert "| decline FPR | 14.286% | 10.000% | FAIL |" in report
    assert "| 1970-01-01 | 10 | 2 | 1.000 |" in report
    assert paths[2].read_bytes().startswith(b"\x89PNG")


def test_plain_text_summary_is_short_and_has_the_headline_figures(
    decisions: list[Decision], labels: dict[str, Label]
) -> None:
    summary = summarize_run(decisions, labels, produced=12, dead_lettered=1, seconds=2.0)
    text = format_summary(summary)
    assert len(text.splitlines()) <= 17
    recall = summary["quality"]["recall_by_scenario"]
    assert recall  # the fixture's frauds carry scenarios
    for fragment in (
        "recall by scenario: " + ", ".join(f"{s} {r:.2f}" for s, r in recall.items()),
        "dead-lettered: 1",
        "5.5 decisions/s",
        "latency p99: 10.9 ms   budget 100 ms   PASS",
        "decline 2",
        "507.00",
    ):
        assert fragment in text


def test_each_rule_is_reported_with_its_reviews_against_its_capacity() -> None:
    rule_set = parse_rules(
        "lists:\n  stolen: {field: card_id, values: [c9]}\nblock: [stolen]\nrules:\n"
        "  - {id: odd, when: amount > 1, action: review, review_capacity: 0.1}\n"
        "  - {id: wide, when: amount > 0, action: review}\n"
    )
    decisions = [a_decision(f"t{n}") for n in range(20)]
    decisions[0] = a_decision("t0", decision="decline", rules=("stolen", "odd", "wide"))
    for n in range(1, 5):  # 4 reviews by `odd` of 20 decisions: 2 allowed at 10 %
        decisions[n] = a_decision(f"t{n}", decision="review", rules=("odd", "wide"))
    decisions[5] = a_decision("t5", decision="review", rules=("wide",))
    limits = Constraints(max_review_rate=0.2)
    summary = summarize_run(
        decisions, {}, produced=20, dead_lettered=0, seconds=1.0, constraints=limits,
        rule_set=rule_set,
    )  # fmt: skip

    rows = {row["id"]: row for row in summary["rules"]}
    assert rows["stolen"] == {
        "id": "stolen", "action": "decline", "matched": 1, "decided": 1, "reviews": 0,
        "review_share": 0.0, "review_capacity": None, "over_capacity_reviews": None,
    }  # fmt: skip
    assert (rows["odd"]["matched"], rows["odd"]["decided"], rows["odd"]["reviews"]) == (5, 4, 4)
    assert (rows["odd"]["review_capacity"], rows["odd"]["over_capacity_reviews"]) == (0.1, 2)
    assert (rows["wide"]["matched"], rows["wide"]["reviews"]) == (6, 1)
    assert (rows["wide"]["review_capacity"], rows["wide"]["over_capacity_reviews"]) == (0.2, 0)
    text = format_summary(summary)
    assert "odd (review): matched 5, decided 4, reviews 20.00% (capacity 10.00%)   OVER by 2" in (
        text
    )
    assert "wide (review): matched 6, decided 1, reviews 5.00% (capacity 20.00%)   PASS" in text
