"""The hostile mix: every kind present, reproducible, and rejected only as the contract says."""

from __future__ import annotations

from collections import Counter

from fraudstream.features.transaction import (
    MAX_PAYLOAD_BYTES,
    InvalidTransaction,
    parse_transaction,
)
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.sim.hostile import HOSTILE_KINDS, MAX_RECORD_BYTES, hostile_records

VALID = generate_stream(GeneratorConfig(transactions=100, seed=5)).transactions
TEMPLATE = VALID[0].to_dict()
IDS = [txn.txn_id for txn in VALID]


def test_a_mix_holds_every_kind_and_the_same_records_for_the_same_seed() -> None:
    mix = hostile_records(200, TEMPLATE, IDS, random_seed=3)
    assert len(mix) >= 200
    assert set(Counter(kind for kind, _ in mix)) == {*HOSTILE_KINDS, "megabyte"}
    assert hostile_records(200, TEMPLATE, IDS, random_seed=3) == mix


def test_hostile_records_parse_or_raise_invalid_transaction_and_nothing_else() -> None:
    valid_kinds: Counter[str] = Counter()
    for kind, value in hostile_records(300, TEMPLATE, IDS, random_seed=4):
        try:
            txn = parse_transaction(value)
        except InvalidTransaction:
            continue
        valid_kinds[kind] += 1
        # A valid hostile record reuses a txn_id on purpose, or has one of its own.
        assert (txn.txn_id in IDS) == (kind == "conflicting_duplicate")
    assert valid_kinds["conflicting_duplicate"] > 0


def test_big_records_exceed_the_contract_and_fit_the_producer() -> None:
    sizes: dict[str, list[int]] = {"oversized": [], "megabyte": []}
    for kind, value in hostile_records(100, TEMPLATE, IDS, random_seed=6):
        sizes.get(kind, []).append(len(value or b""))
    assert all(MAX_PAYLOAD_BYTES < size <= MAX_RECORD_BYTES for size in sum(sizes.values(), []))
    assert sizes["oversized"] and min(sizes["megabyte"]) >= 200_000
