"""Business rules in the worker: they override the model in precedence order, every
decision names the rules that fired and the rule set's version, and an edited rules file
takes over only once it is valid (an invalid edit keeps the last good rules, logged once)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest

from fraudstream.features.pseudonyms import IdPseudonyms, new_id_hash_key
from fraudstream.stream.worker.metrics import WorkerMetrics
from fraudstream.stream.worker.pipeline import BatchOutcome, IncomingRecord
from fraudstream.stream.worker.rules_watch import RulesWatch
from fraudstream.thresholds.rules.fileformat import parse_rules
from tests.stream.worker.test_pipeline import close, in_memory, make_pipeline, records

IDS = IdPseudonyms(new_id_hash_key())


def rules_text(blocked_card: str, allowed_card: str) -> str:
    return f"""
lists:
  stolen: {{field: card_id, values: ['{blocked_card}']}}
  staff: {{field: card_id, values: ['{allowed_card}']}}
block: [stolen]
allow: [staff]
rules:
  - id: any-amount
    when: amount > 0
    action: review
    priority: 1
  - id: big-amount
    when: amount > 0 and amount < 1000000
    action: decline
    priority: 5
"""


def decide(batch: list[IncomingRecord], text: str, registry: Path) -> BatchOutcome:
    async def run() -> BatchOutcome:
        pipeline = make_pipeline(in_memory(), registry, ids=IDS)
        pipeline.rule_set = parse_rules(text).with_ids(card=IDS.card, merchant=IDS.merchant)
        try:
            return await pipeline.process(batch)
        finally:
            await close(pipeline)

    return asyncio.run(run())


def test_lists_then_rules_by_priority_override_the_model(trained_registry: Path) -> None:
    batch = records(3, seed=8)
    cards = [json.loads(record.value or b"")["card_id"] for record in batch]
    text = rules_text(blocked_card=cards[0], allowed_card=cards[1])
    outcome = decide(batch, text, trained_registry)

    blocked, allowed, other = outcome.decisions
    assert (blocked.decision, blocked.rules) == ("decline", ("stolen", "big-amount", "any-amount"))
    assert (allowed.decision, allowed.rules) == ("approve", ("staff", "big-amount", "any-amount"))
    assert (other.decision, other.rules) == ("decline", ("big-amount", "any-amount"))
    version = parse_rules(text).version
    assert all(d.rules_version == version for d in outcome.decisions)
    assert "rule: stolen" in blocked.reasons and "rule: any-amount" in other.reasons
    assert outcome.rules_decided == {("stolen", "decline"): 1, ("staff", "allow"): 1,
                                     ("big-amount", "decline"): 1}  # fmt: skip
    assert outcome.rules_fired[("any-amount", "review")] == 3

    metrics = WorkerMetrics()
    metrics.observe_batch(outcome)
    sample = metrics.registry.get_sample_value
    assert sample("fraudstream_rule_fired_total", {"rule": "any-amount", "action": "review"}) == 3
    assert sample("fraudstream_rule_decided_total", {"rule": "staff", "action": "allow"}) == 1


def test_without_rules_the_model_decides_and_no_rule_is_named(trained_registry: Path) -> None:
    outcome = decide(records(20, seed=8), "", trained_registry)
    assert all(d.rules == () for d in outcome.decisions)
    assert not any(reason.startswith("rule: ") for d in outcome.decisions for reason in d.reasons)


def write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))  # a distinct stamp per edit, however fast


VALID = "rules:\n  - id: r1\n    when: amount > 100\n    action: review\n"
ALSO_VALID = "rules:\n  - id: r2\n    when: amount > 200\n    action: decline\n"


def test_an_invalid_edit_keeps_the_last_good_rules_and_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rules.yaml"
    write(path, VALID, 1_000_000_000)
    complaints: list[str] = []
    watch = RulesWatch(path, IDS, on_invalid=complaints.append)
    assert [rule.id for rule in watch.rule_set.rules] == ["r1"]
    good_version = watch.rule_set.version

    write(path, VALID.replace("amount", "amuont"), 2_000_000_000)
    with caplog.at_level(logging.ERROR):
        assert watch.check() is False
        assert watch.check() is False  # the same bad content: not reported again
    assert watch.rule_set.version == good_version
    assert len(complaints) == 1 and "amuont" in complaints[0] and ":3:" in complaints[0]
    assert watch.invalid_because == complaints[0]
    assert sum("keeping rules" in record.message for record in caplog.records) == 1

    write(path, ALSO_VALID, 3_000_000_000)
    assert watch.check() is True
    assert [rule.id for rule in watch.rule_set.rules] == ["r2"]
    assert watch.invalid_because is None
    assert watch.check() is False  # unchanged


def test_a_worker_starting_on_an_invalid_or_missing_file_decides_without_rules(
    tmp_path: Path,
) -> None:
    missing = RulesWatch(tmp_path / "absent.yaml", IDS)
    assert missing.rule_set.rules == () and missing.rule_set.version == ""
    assert missing.invalid_because is not None and "absent.yaml" in missing.invalid_because

    path = tmp_path / "rules.yaml"
    write(path, "rules: [", 1_000_000_000)
    broken = RulesWatch(path, IDS)
    assert broken.rule_set.rules == () and broken.invalid_because is not None
    write(path, VALID, 2_000_000_000)
    assert broken.check() is True and broken.rule_set.rules[0].id == "r1"


def test_card_ids_in_the_file_are_matched_through_the_worker_pseudonyms(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, "lists:\n  stolen: {field: card_id, values: [card-1]}\nblock: [stolen]\n", 1)
    watch = RulesWatch(path, IDS)
    assert IDS.card("card-1") in watch.rule_set.lists["stolen"].values
    assert "card-1" not in watch.rule_set.lists["stolen"].values
