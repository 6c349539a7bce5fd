"""Tests for stream/tools/explain.py: one decision walked through, from hand-made records
and from a real demo run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.stream.cli import main
from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.streamfile import read_stream_file
from fraudstream.stream.tools.demo import DemoOptions, run_demo
from fraudstream.stream.tools.explain import (
    DecisionSources,
    explain_decision,
    format_explanation,
)
from fraudstream.stream.tools.run_files import (
    read_decision_records,
)
from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from fraudstream.thresholds.pair import ThresholdPair
from tests.support.decisions import a_decision
from tests.support.worker_runs import setup_run

WEIGHTS = {"xgboost": 0.7, "isolation_forest": 0.3}


def flagged_record(**fields: object) -> dict[str, object]:
    decision = a_decision(
        "t42", card_id="pseudo", decision="review", score=0.62,
        model_scores={"xgboost": 0.8, "isolation_forest": 0.2}, threshold_version="v2",
        model_version="v0001", reasons=("amount=900 (+1.20)",),
        latency_ms={"features": 1.5, "xgboost": 0.4, "end_to_end": 9.0},
        features=tuple(float(n) for n in range(len(FEATURE_NAMES))),
    )  # fmt: skip
    return decision.to_dict() | fields


def test_each_model_contributes_its_normalised_weight_times_its_score() -> None:
    story = explain_decision(DecisionSources(flagged_record(), weights=WEIGHTS))

    rows = {row["model"]: row for row in story["models"]}
    assert rows["xgboost"]["contribution"] == pytest.approx(0.56)
    assert rows["isolation_forest"]["contribution"] == pytest.approx(0.06)
    assert story["ensemble_recomputed"] == pytest.approx(story["score"])


def test_a_model_that_did_not_answer_gets_no_weight_and_shows_its_fallback() -> None:
    record = flagged_record(model_scores={"xgboost": 0.8, "isolation_forest": None},
                            fallbacks={"isolation_forest": "timeout after 50 ms"})  # fmt: skip

    story = explain_decision(DecisionSources(record, weights=WEIGHTS))

    rows = {row["model"]: row for row in story["models"]}
    assert rows["xgboost"]["weight_used"] == pytest.approx(1.0)
    assert rows["isolation_forest"]["weight_used"] == 0.0
    assert rows["isolation_forest"]["contribution"] is None
    assert "isolation_forest: timeout after 50 ms" in format_explanation(story)


def test_walk_through_names_features_threshold_rules_reasons_and_stage_latency() -> None:
    sources = DecisionSources(flagged_record(rules=["night-burst"], rules_version="r3"),
                              weights=WEIGHTS, pair=ThresholdPair("v2", 0.05, 0.7))  # fmt: skip

    text = format_explanation(explain_decision(sources))

    assert text.startswith("# Decision for t42: REVIEW (score 0.6200)")
    column = FEATURE_NAMES.index("amount")
    assert f"| amount | {column} |" in text, "features by name, in FEATURE_NAMES order"
    assert "pair v2: review at score >= 0.0500, decline at >= 0.7000" in text
    assert "night-burst (rules version r3)" in text
    assert "score 0.6200 -> REVIEW by the thresholds; rule night-burst decided REVIEW" in text
    assert "- amount=900 (+1.20)" in text
    assert "| features | 1.50 |" in text and "| end_to_end | 9.00 |" in text


def test_without_rules_or_pair_values_the_walk_through_says_so() -> None:
    text = format_explanation(explain_decision(DecisionSources(flagged_record())))

    assert "## 5. Rules fired\n\nnone\n" in text
    assert "review/decline values were not found" in text
    assert "| xgboost | 0.8000 | ? | ? | ? | - |" in text


def test_a_rule_that_overrode_the_thresholds_is_shown_against_them() -> None:
    record = flagged_record(decision="decline", rules=["card-testing"], rules_version="r3")
    sources = DecisionSources(record, weights=WEIGHTS, pair=ThresholdPair("v2", 0.05, 0.7))
    text = format_explanation(explain_decision(sources))

    assert "score 0.6200 -> REVIEW by the thresholds; rule card-testing decided DECLINE" in text


def test_the_rules_that_fired_are_named_with_their_version() -> None:
    record = flagged_record(rules=["stolen-cards", "card-testing"], rules_version="635b1919a3a7")
    text = format_explanation(explain_decision(DecisionSources(record)))

    assert "## 5. Rules fired\n\nstolen-cards, card-testing (rules version 635b1919a3a7)\n" in text
    # The pair is unknown here: what the thresholds alone would say is not claimed.
    assert "score 0.6200 -> ? by the thresholds; rule stolen-cards decided REVIEW" in text


def test_json_walk_through_round_trips() -> None:
    story = explain_decision(DecisionSources(flagged_record(), weights=WEIGHTS))

    assert json.loads(json.dumps(story)) == story


@pytest.mark.integration
def test_a_demo_run_is_explained_and_tailed_through_the_cli(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    env, _ = setup_run(broker, redis_server, trained_registry, tmp_path)
    for name, value in env.items():  # the demo, tail and explain read the same variables
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    run_demo(Settings.from_env(), DemoOptions(transactions=300, rate=200.0, out=out))
    capsys.readouterr()
    records = read_decision_records(out / "decisions.jsonl")
    transactions, _ = read_stream_file(out / "transactions.jsonl")
    assert len(transactions) == 300 and {r["txn_id"] for r in records} == {
        t.txn_id for t in transactions}
    flagged = [r for r in records if r["decision"] != "approve"] or records
    chosen = flagged[0]

    assert main(["explain", chosen["txn_id"], "--run", str(out), "--json"]) == 0
    story = json.loads(capsys.readouterr().out)

    assert (story["txn_id"], story["decision"], story["score"]) == (
        chosen["txn_id"], chosen["decision"], chosen["score"])
    assert {row["model"]: row["score"] for row in story["models"]} == chosen["model_scores"]
    assert all(row["weight"] is not None for row in story["models"]), story["notes"]
    assert story["threshold"]["review"] is not None, story["notes"]
    assert story["transaction"]["txn_id"] == chosen["txn_id"]
    assert story["features"]["amount"] == story["transaction"]["amount"]

    assert main(["explain", chosen["txn_id"], "--timeout", "20"]) == 0, "from the topics"
    assert capsys.readouterr().out.startswith(f"# Decision for {chosen['txn_id']}: ")

    reviews = sum(r["decision"] == "review" for r in records)
    assert main(["tail", "--from-beginning", "--max", "5", "--decision", "review",
                 "--idle-timeout", "5"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == min(5, reviews)
    assert all("  REVIEW " in line for line in lines)

    card = next(t.card_id for t in transactions if t.txn_id == chosen["txn_id"])
    assert main(["tail", "--from-beginning", "--card", card, "--json", "--max", "1",
                 "--idle-timeout", "5"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["card_id"] == chosen["card_id"]
