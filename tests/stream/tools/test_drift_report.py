"""The static-vs-dynamic comparison re-thresholds the same scores and splits at the drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudstream.features.transaction import Label
from fraudstream.stream.contract import Decision
from fraudstream.stream.tools.drift_report import compare_thresholds, write_drift_report
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.pair import ThresholdPair
from tests.support.decisions import a_decision

DRIFT = 1000.0


def decision(txn_id: str, t: float, score: float, outcome: str) -> Decision:
    return a_decision(txn_id, event_time=t, score=score, decision=outcome)


def test_post_drift_figures_for_both_policies(tmp_path: Path) -> None:
    decisions = [
        decision("a", 10.0, 0.9, "decline"),  # before the drift: ignored by the headline
        decision("b", 1010.0, 0.30, "approve"),  # dynamic raised review past 0.3: a miss
        decision("c", 1020.0, 0.05, "approve"),
        decision("d", 1030.0, 0.70, "decline"),
        decision("d", 1030.0, 0.70, "decline"),  # a redelivered copy counts once
    ]
    labels = {
        "a": Label("a", True, "x", 20.0),
        "b": Label("b", True, "x", 2000.0),
        "c": Label("c", False, "legit", 2000.0),
        "d": Label("d", False, "legit", 2000.0),
    }
    cost = CostModel(cost_fn=100.0, cost_fp=10.0, cost_review=1.0)
    result = compare_thresholds(decisions, labels, ThresholdPair("static", 0.2, 0.6), DRIFT, cost)
    # Static on b, c, d: review (1), approve, decline of a legit (10) -> 11 / 3.
    assert result["static"]["cost_per_txn"] == pytest.approx(11 / 3)
    assert result["static"]["recall"] == 1.0 and result["static"]["fpr"] == 0.5
    # Dynamic as decided: missed fraud (100) + declined legit (10) -> 110 / 3.
    assert result["dynamic"]["cost_per_txn"] == pytest.approx(110 / 3)
    assert result["dynamic"]["recall"] == 0.0
    assert result["margin_cost_per_txn"] == pytest.approx(11 / 3 - 110 / 3)
    paths = write_drift_report(tmp_path, result, [{"version": 2, "stream_time": 1015.0}])
    assert json.loads((tmp_path / "drift.json").read_text())["static"]["transactions"] == 3
    assert "did NOT beat" in (tmp_path / "drift.md").read_text()
    assert all(path.stat().st_size > 0 for path in paths)
