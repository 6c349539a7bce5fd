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
from fraudstream.features.pseudonyms import IdPseudonyms, new_id_hash_key
from fraudstream.models.registry import load_version
from fraudstream.stream.contract import (
    MASK,
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
IDS = IdPseudonyms(new_id_hash_key())

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
    "rules": ["night_and_foreign"],
    "rules_version": "r1a2b3c4",
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


def test_a_decision_from_before_rules_reads_as_none_fired() -> None:
    older = {key: value for key, value in A_DECISION.items() if not key.startswith("rules")}
    decision = Decision.from_dict(older)
    assert (decision.rules, decision.rules_version) == ((), "")
    assert decision.to_dict() == {**older, "rules": [], "rules_version": ""}


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


def test_a_record_without_card_fields_is_kept_byte_for_byte() -> None:
    raw = b'{"txn_id": "x1",  "amount": 1.50}'
    letter = dead_letter(raw, "field 'card_id' must be a non-empty string, got None",
                         "validate", IDS)  # fmt: skip
    assert (letter.raw, letter.raw_encoding, letter.raw_masking) == (raw.decode(), "utf-8", "none")
    assert DeadLetter.from_json_bytes(letter.to_json_bytes()) == letter
    assert abs(letter.time - time.time()) < 60


def test_ids_are_replaced_by_their_pseudonyms_at_any_depth_and_other_values_masked() -> None:
    record = {"txn_id": "t1", "card_id": "4111111111111111", "amount": -1,
              "items": [{"merchant_id": "m-secret", "qty": 2}, {"card_id": [4012888888881881]}]}
    raw = json.dumps(record).replace('"card_id"', '"card\\u005fid"', 1).encode()  # escaped
    letter = DeadLetter.of(raw, "field 'amount' must be in [0, 1e+06], got -1", "validate", IDS)
    assert letter.raw_masking == "masked"
    assert json.loads(letter.raw) == {
        "txn_id": "t1", "card_id": IDS.card("4111111111111111"), "amount": -1,
        "items": [{"merchant_id": IDS.merchant("m-secret"), "qty": 2}, {"card_id": MASK}],
    }  # fmt: skip
    wire = letter.to_json_bytes()
    assert not any(secret in wire for secret in (b"4111111111111111", b"m-secret", b"40128888"))
    assert DeadLetter.from_json_bytes(wire) == letter


def test_the_record_is_identified_by_a_keyed_digest_never_a_plain_hash() -> None:
    raw = b'{"card_id": "4111111111111111", "amount": -1}'  # all but the card is visible
    letter = DeadLetter.of(raw, "field 'amount' must be in [0, 1e+06], got -1", "validate", IDS)
    other_key = DeadLetter.of(raw, letter.error, "validate", IdPseudonyms(new_id_hash_key()))
    assert (letter.raw_size, letter.raw_hmac_sha256) == (len(raw), IDS.record_digest(raw))
    assert other_key.raw_hmac_sha256 != letter.raw_hmac_sha256
    assert hashlib.sha256(raw).hexdigest() not in letter.to_json_bytes().decode()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"card_id": "4111111111111111", "amount": NaN}',  # not JSON: no field can be found
        b'"4111111111111111"',  # JSON, but not an object: the value may be the card number
        b"4111111111111111",
        b'[{"card_id": "4111111111111111"}]',
        b'{"card_id": "4111111111111111", "note": "\xff"}',
        b"\xff\xfe 4111111111111111",
        b"",  # a tombstone
        b'{"deep": ' + b"[" * 300 + b'{"card_id": "4111111111111111"}' + b"]" * 300 + b"}",
    ],
    ids=["nan", "json-string", "json-number", "json-array", "invalid-utf8", "binary",
         "tombstone", "deeper-than-orjson-writes"],
)  # fmt: skip
def test_a_record_whose_ids_cannot_be_found_is_withheld_but_identified(raw: bytes) -> None:
    letter = DeadLetter.of(raw, "not valid JSON", "validate", IDS, time=12.5)
    assert (letter.raw, letter.raw_masking, letter.raw_truncated) == ("", "withheld", False)
    assert (letter.raw_size, letter.raw_hmac_sha256) == (len(raw), IDS.record_digest(raw))
    assert b"4111111111111111" not in letter.to_json_bytes()
    assert DeadLetter.from_json_bytes(letter.to_json_bytes()) == letter


def test_letters_written_before_masking_read_back_as_they_were_kept() -> None:
    old = {"raw": "//4gZ2FyYmFnZQ==", "raw_encoding": "base64", "raw_truncated": False,
           "raw_size": 10, "raw_sha256": hashlib.sha256(b"\xff\xfe garbage").hexdigest(),
           "error": "not valid JSON", "stage": "validate", "time": 12.5}  # fmt: skip
    letter = DeadLetter.from_dict(old)
    assert (letter.raw_bytes(), letter.raw_size) == (b"\xff\xfe garbage", 10)
    assert (letter.raw_masking, letter.raw_hmac_sha256) == ("none", "")
    older = DeadLetter.from_dict({"raw": "{oops", "raw_encoding": "utf-8", "error": "e",
                                  "stage": "validate", "time": 1.0})  # fmt: skip
    assert (older.raw_truncated, older.raw_size) == (False, 5)
    with pytest.raises(InvalidRecord, match="raw_masking must be one of"):
        DeadLetter.from_dict({**old, "raw_masking": "some"})


def test_a_huge_binary_record_makes_a_small_letter_that_still_identifies_it() -> None:
    payload = bytes(range(256)) * 3_516  # 900 KB, not UTF-8: base64 would make it 1.2 MB
    letter = DeadLetter.of(payload, "payload of 900096 bytes exceeds the limit", "validate", IDS)
    wire = letter.to_json_bytes()
    assert len(wire) < 100_000
    assert (letter.raw, letter.raw_masking) == ("", "withheld")
    assert (letter.raw_size, letter.raw_hmac_sha256) == (len(payload), IDS.record_digest(payload))
    assert DeadLetter.from_json_bytes(wire) == letter


def test_a_huge_record_is_masked_then_cut_on_a_character_boundary() -> None:
    payload = json.dumps({"card_id": "4111111111111111", "note": "a" + "é" * 600_000},
                         ensure_ascii=False).encode()  # 2-byte characters: the cut splits one
    letter = DeadLetter.of(payload, "too big", "validate", IDS)
    assert (letter.raw_encoding, letter.raw_truncated) == ("utf-8", True)
    kept = letter.raw_bytes()
    assert kept.startswith(f'{{"card_id":"{IDS.card("4111111111111111")}","note":"aé'.encode())
    assert len(kept) == MAX_DEAD_LETTER_RAW_BYTES - 1  # one byte of a split "é" dropped
    assert letter.raw_size == len(payload)
    assert len(letter.to_json_bytes()) < 100_000


def test_a_letter_with_a_lone_surrogate_or_a_huge_error_can_still_be_sent() -> None:
    letter = DeadLetter.of(b"{}", "RuntimeError: bad id '\ud800'" + "x" * 100_000, "decide", IDS)
    assert len(letter.to_json_bytes()) < 3_000
    assert letter.error.startswith("RuntimeError: bad id '\\ud800'")


def test_the_first_copy_of_a_redelivered_decision_counts() -> None:
    first, other, again = a_decision("a", score=0.1), a_decision("b"), a_decision("a", score=0.9)
    assert first_decisions([first, other, again]) == [first, other]


def test_the_readme_documents_every_field_of_both_contracts() -> None:
    assert documented_fields("`decisions` topic") == [*A_DECISION, "shadow"]
    letter = DeadLetter.of(b"x", "e", "validate", IDS)
    assert documented_fields("Dead-letter topic") == list(letter.to_dict())


def test_a_decision_made_by_the_pipeline_has_exactly_the_documented_fields(
    trained_registry: Path,
) -> None:
    models = load_version(trained_registry)
    pipeline = DecisionPipeline(InMemoryFeatureStore(), InMemoryScoreStore(), models,
                                models.metadata["weights"], ThresholdPair("test", 0.2, 0.8),
                                timeout_s=5.0, ids=IDS)  # fmt: skip
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
