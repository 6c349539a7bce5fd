"""Tests for stream/tools/tail.py: the line a person reads, the JSON a script reads, filters."""

from __future__ import annotations

import json

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.stream.tools.tail import (
    TailOptions,
    card_matcher,
    format_decision_json,
    format_decision_line,
    wanted,
)
from tests.support.decisions import a_decision

KEY = "a test key, never use it elsewhere: 0123456789"


def features_with_amount(amount: float) -> tuple[float, ...]:
    return tuple(amount if name == "amount" else 0.0 for name in FEATURE_NAMES)


def test_line_shows_time_card_amount_outcome_score_top_reasons_and_latency() -> None:
    decision = a_decision(
        "t9", card_id="pseudo-card", event_time=1_767_225_600.0, decision="review",
        score=0.41234, features=features_with_amount(912.5),
        reasons=("amount=912.5 (+0.88)", "count_1h=4 (+0.50)", "rule: night", "fourth"),
        latency_ms={"end_to_end": 14.26, "features": 2.0},
    )  # fmt: skip

    line = format_decision_line(decision)

    assert line.startswith("2026-01-01 00:00:00  card pseudo-card  amount   912.50  REVIEW")
    assert "score 0.4123" in line
    assert "amount=912.5 (+0.88), count_1h=4 (+0.50), rule: night" in line
    assert "fourth" not in line, "only the top three reasons"
    assert line.endswith("14.3 ms")


def test_line_marks_stand_in_and_degraded_and_unknown_amount() -> None:
    line = format_decision_line(a_decision(stand_in=True, degraded=True, features=()))

    assert "amount ?" in line
    assert line.endswith("[stand-in] [degraded]")


def test_json_line_is_the_topic_record_with_its_amount() -> None:
    decision = a_decision("t7", decision="decline", features=features_with_amount(20.0))

    parsed = json.loads(format_decision_json(decision))

    assert parsed == decision.to_dict() | {"amount": 20.0}


def test_card_filter_matches_a_raw_id_through_its_pseudonym_and_a_pseudonym_as_given() -> None:
    ids = IdPseudonyms(KEY)
    card_ids = card_matcher(["c00042", ids.card("c00099")], ids)
    options = TailOptions()

    assert wanted(a_decision(card_id=ids.card("c00042")), options, card_ids)
    assert wanted(a_decision(card_id=ids.card("c00099")), options, card_ids)
    assert not wanted(a_decision(card_id=ids.card("c00043")), options, card_ids)
    assert not wanted(a_decision(card_id="c00042"), options, card_matcher(["c00041"], ids))


def test_outcome_filter_keeps_only_the_named_outcomes() -> None:
    options = TailOptions(outcomes=frozenset({"review", "decline"}))

    assert [o for o in ("approve", "review", "decline")
            if wanted(a_decision(decision=o), options, set())] == ["review", "decline"]  # fmt: skip
