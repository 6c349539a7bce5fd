"""Tests for stream/tools/decision_sources.py on a hand-made run folder (the demo run itself
is tested through the CLI in test_explain.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.decision_sources import DecisionNotFound, sources_from_run
from fraudstream.stream.tools.run_files import write_decisions, write_threshold_history
from fraudstream.thresholds.pair import ThresholdPair
from tests.support.decisions import a_decision


def test_run_folder_gives_the_first_decision_and_the_published_pair(tmp_path: Path) -> None:
    first = a_decision("t1", score=0.3, threshold_version="v2", model_version="v0001")
    write_decisions(tmp_path / "decisions.jsonl",
                    [a_decision("t0"), first, a_decision("t1", score=0.9)])  # fmt: skip
    write_threshold_history(tmp_path / "threshold_history.json",
                            [{"version": 1, "review": 0.1, "decline": 0.8, "reason": "initial"},
                             {"version": 2, "review": 0.2, "decline": 0.9, "reason": "labels"}])

    sources = sources_from_run(tmp_path, "t1", Settings(), tmp_path / "no-registry")

    assert sources.record == first.to_dict()
    assert sources.pair == ThresholdPair("v2", 0.2, 0.9)
    assert sources.weights is None and sources.transaction is None
    assert any("weights and static pair unknown" in note for note in sources.notes)
    with pytest.raises(DecisionNotFound, match="no decision for 't404'"):
        sources_from_run(tmp_path, "t404", Settings(), tmp_path / "no-registry")


def test_a_run_folder_transaction_is_found_past_records_that_break_the_contract(
    tmp_path: Path,
) -> None:
    write_decisions(tmp_path / "decisions.jsonl", [a_decision("t1")])
    stream = generate_stream(GeneratorConfig(transactions=100, seed=1))
    wanted = replace(stream.transactions[1], txn_id="t1")
    (tmp_path / "transactions.jsonl").write_text(
        '{"txn_id": "t0", "amount": -1}\n' + json.dumps(wanted.to_dict()) + "\n"
    )

    sources = sources_from_run(tmp_path, "t1", Settings(), tmp_path / "no-registry")

    assert sources.transaction == wanted
    rejected = tmp_path / "transactions.rejected.jsonl"
    assert any("skipped 1 record that breaks" in note and str(rejected) in note
               for note in sources.notes)  # fmt: skip
    assert json.loads(rejected.read_text())["line"] == 1
