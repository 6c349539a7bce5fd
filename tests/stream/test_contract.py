"""The decision and dead-letter contracts: round trips, strict parsing, and the README's table."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from fraudstream.features.memory_store import InMemoryFeatureStore, InMemoryScoreStore
from fraudstream.models.registry import load_version
from fraudstream.stream.contract import (
    MAX_DEAD_LETTER_RAW_BYTES,
    DeadLetter,
    Decision,
    InvalidRecord,
    ShadowDecision,
    first_decisions,
)
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.worker.pipeline import (
    DecisionPipeline,
    IncomingRecord,
    ShadowCandidate,
    dead_letter,
)
from fraudstream.thresholds.pair import ThresholdPair
from tests.support.decisions import a_decision

README = Path(__file__).resolve().parents[2] / "README.md"

A_DECISION = {
    "txn_id": "t-1",
    "card_id": "c-7",
    "event_time": 1767225600.5,
    "decision": "review",
    "score": 0.31,
    "model_scores": {"xgboost": 0.4, "isolation_forest": None},
    "fallbacks": {"isolation_forest": "timeout after 50 ms"},
    "threshold_version": "v3",
    "model_version": "v0002",
    "reasons": ["amount_zscore=4.1 (+1.20)", "rule: night_and_foreign"],
    "latency_ms": {"validate": 0.01, "features": 1.2, "xgboost": 0.3, "end_to_end": 9.5},
    "degraded": True,
    "features": [120.0, 3.0],
    "stand_in": False,
}


def documented_fields(heading: str) -> list[str]:
    """Field names of the README table that follows `heading` in its Contracts section."""
    contracts = README.read_text(encoding="utf-8").split("### Contracts", 1)[1]
    table = contracts.split(heading, 1)[1].split("\n\n")[1]
    return re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)


def test_a_decision_survives_the_round_trip_through_json() -> None:
    decision = Decision.from_dict(A_DECISION)
    assert decision.to_dict() == A_DECISION
    assert list(decision.to_dict()) == list(A_DECISION)  # same key order on the wire
    assert json.loads(decision.to_json_bytes()) == A_DECISION
    assert Decision.from_json_bytes(decision.to_json_bytes()) == decision


def test_shadow_is_written_only_when_there_is_one() -> None:
    shadowed = {**A_DECISION, "shadow": {"model_version": "v0003", "score": 0.9,
                                         "decision": "decline"}}  # fmt: skip
    decision = Decision.from_dict(shadowed)
    assert decision.shadow == ShadowDecision("v0003", 0.9, "decline")
    assert decision.to_dict() == shadowed
    assert "shadow" not in Decision.from_dict(A_DECISION).to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"score": None}, "t-1"),
        ({"decision": "maybe"}, "decision must be one of"),
        ({"model_scores": [0.4]}, "t-1"),
    ],
)
def test_a_record_off_contract_is_rejected_with_the_field(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRecord, match=message):
        Decision.from_dict({**A_DECISION, **change})


def test_a_missing_field_is_named() -> None:
    incomplete = {key: value for key, value in A_DECISION.items() if key != "latency_ms"}
    with pytest.raises(InvalidRecord, match="no field 'latency_ms'"):
        Decision.from_dict(incomplete)
    with pytest.raises(InvalidRecord, match="no field 'stage'"):
        DeadLetter.from_dict({"raw": "x", "raw_encoding": "utf-8", "error": "e", "time": 1.0})


def test_dead_letters_keep_the_raw_bytes_as_text_or_base64() -> None:
    text = dead_letter(b'{"txn_id": "x1"}', "field 'card_id' ...", "validate")
    binary = DeadLetter.of(b"\xff\xfe garbage", "not valid JSON", "validate", time=12.5)
    assert (text.raw, text.raw_encoding) == ('{"txn_id": "x1"}', "utf-8")
    assert binary.to_dict() == {"raw": "//4gZ2FyYmFnZQ==", "raw_encoding": "base64",
                                "raw_truncated": False, "raw_size": 10,
                                "raw_sha256": hashlib.sha256(b"\xff\xfe garbage").hexdigest(),
                                "error": "not valid JSON", "stage": "validate",
                                "time": 12.5}  # fmt: skip
    for letter in (text, binary):
        assert DeadLetter.from_json_bytes(letter.to_json_bytes()) == letter
    assert binary.raw_bytes() == b"\xff\xfe garbage"
    assert abs(text.time - time.time()) < 60


def test_a_huge_binary_record_makes_a_small_letter_that_still_identifies_it() -> None:
    payload = bytes(range(256)) * 3_516  # 900 KB, not UTF-8: base64 would make it 1.2 MB
    letter = DeadLetter.of(payload, "payload of 900096 bytes exceeds the limit", "validate")
    wire = letter.to_json_bytes()
    assert len(wire) < 100_000
    assert (letter.raw_encoding, letter.raw_truncated) == ("base64", True)
    assert letter.raw_size == len(payload)
    assert letter.raw_sha256 == hashlib.sha256(payload).hexdigest()
    assert letter.raw_bytes() == payload[:MAX_DEAD_LETTER_RAW_BYTES]
    assert DeadLetter.from_json_bytes(wire) == letter


def test_huge_text_is_cut_on_a_character_boundary_and_stays_text() -> None:
    payload = b"a" + "é".encode() * 600_000  # 2-byte characters: the cut splits one
    letter = DeadLetter.of(payload, "too big", "validate")
    assert (letter.raw_encoding, letter.raw_truncated) == ("utf-8", True)
    kept = letter.raw_bytes()
    assert payload.startswith(kept) and len(kept) == MAX_DEAD_LETTER_RAW_BYTES - 1
    assert letter.raw_size == len(payload)


def test_a_letter_with_a_lone_surrogate_or_a_huge_error_can_still_be_sent() -> None:
    letter = DeadLetter.of(b"{}", "RuntimeError: bad id '\ud800'" + "x" * 100_000, "decide")
    assert len(letter.to_json_bytes()) < 3_000
    assert letter.error.startswith("RuntimeError: bad id '\\ud800'")


def test_a_letter_written_before_the_size_and_digest_fields_reads_back_whole() -> None:
    old = {"raw": "{oops", "raw_encoding": "utf-8", "error": "e", "stage": "validate",
           "time": 1.0}  # fmt: skip
    letter = DeadLetter.from_dict(old)
    assert (letter.raw_truncated, letter.raw_size) == (False, 5)
    assert letter.raw_sha256 == hashlib.sha256(b"{oops").hexdigest()


def test_the_first_copy_of_a_redelivered_decision_counts() -> None:
    first, other, again = a_decision("a", score=0.1), a_decision("b"), a_decision("a", score=0.9)
    assert first_decisions([first, other, again]) == [first, other]


def test_the_readme_documents_every_field_of_both_contracts() -> None:
    assert documented_fields("`decisions` topic") == [*A_DECISION, "shadow"]
    letter = DeadLetter.of(b"x", "e", "validate")
    assert documented_fields("Dead-letter topic") == list(letter.to_dict())


def test_a_decision_made_by_the_pipeline_has_exactly_the_documented_fields(
    trained_registry: Path,
) -> None:
    models = load_version(trained_registry)
    pipeline = DecisionPipeline(InMemoryFeatureStore(), InMemoryScoreStore(), models,
                                models.metadata["weights"], ThresholdPair("test", 0.2, 0.8),
                                timeout_s=5.0)  # fmt: skip
    stream = generate_stream(GeneratorConfig(transactions=100, seed=3))
    batch = [
        IncomingRecord(json.dumps(txn.to_dict()).encode(), time.time())
        for txn in stream.transactions[:20]
    ]

    async def decide() -> tuple[list[Decision], list[Decision]]:
        plain = (await pipeline.process(batch[:10])).decisions
        pipeline.shadow = ShadowCandidate(models, models.metadata["weights"],
                                          ThresholdPair("shadow", 0.0, 0.0))  # fmt: skip
        shadowed = (await pipeline.process(batch[10:])).decisions
        pipeline.close()
        return plain, shadowed

    plain, shadowed = asyncio.run(decide())
    documented = documented_fields("`decisions` topic")
    for decision in plain:
        assert list(decision.to_dict()) == [name for name in documented if name != "shadow"]
        assert Decision.from_json_bytes(decision.to_json_bytes()) == decision
    for decision in shadowed:
        assert list(decision.to_dict()) == documented
        assert Decision.from_json_bytes(decision.to_json_bytes()) == decision
    assert set(plain[0].model_scores) == {"xgboost", "isolation_forest"}
