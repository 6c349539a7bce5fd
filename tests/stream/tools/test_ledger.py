"""The ledger accounts for every record: decided, dead-lettered, or lost, and when."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from fraudstream.features.pseudonyms import IdPseudonyms, new_id_hash_key
from fraudstream.stream.contract import DeadLetter
from fraudstream.stream.tools.ledger import TopicRecord, account, read_topic
from fraudstream.stream.tools.loadtest_traffic import produce_at_rate
from fraudstream.stream.tools.services import EmbeddedBroker

A_TRANSACTION = {
    "txn_id": "t-1", "card_id": "c-1", "merchant_id": "m-1", "amount": 12.5,
    "currency": "EUR", "country": "FR", "channel": "pos", "event_time": 1_767_225_600.0,
}  # fmt: skip


def transaction(txn_id: str) -> bytes:
    return orjson.dumps({**A_TRANSACTION, "txn_id": txn_id})


def on_topic(values: list[bytes | None], times: list[float]) -> list[TopicRecord]:
    return [
        TopicRecord(0, n, at, value)
        for n, (value, at) in enumerate(zip(values, times, strict=True))
    ]


def decision(txn_id: str, **marks: bool) -> bytes:
    return orjson.dumps({"txn_id": txn_id, "degraded": False, "stand_in": False, **marks})


IDS = IdPseudonyms(new_id_hash_key())


def letter(raw: bytes | None) -> bytes:
    return DeadLetter.of(raw or b"", "why", "validate", IDS).to_json_bytes()


def test_each_record_is_decided_dead_lettered_or_lost() -> None:
    inputs = on_topic(
        [transaction("t-1"), None, None, b"{junk", transaction("t-2"), transaction("t-3")],
        [10.0, 11.0, 12.0, 13.0, 14.0, 15.0],
    )
    decisions = on_topic(
        [decision("t-1"), decision("t-1", degraded=True), decision("t-3", stand_in=True)],
        [20.0, 30.0, 21.0],
    )
    # Two tombstones need two letters: one is lost; the junk and t-2 have none.
    letters = on_topic([letter(None), letter(b"{other")], [22.0, 23.0])
    ledger = account(inputs, decisions, letters, IDS, committed={0: 4})
    assert (ledger.records_in, ledger.decided, ledger.dead_lettered) == (6, 2, 1)
    assert ledger.lost == 3 and ledger.lost_skipped == 2  # offsets 2 and 3 lie below 4
    assert ledger.duplicates == 1 and ledger.decision_records == 3
    assert (ledger.degraded, ledger.stand_in) == (1, 1)
    assert ledger.accounted_at == [20.0, 22.0, None, None, None, 21.0]
    assert len(ledger.lost_examples) == 3


def test_recovery_is_when_the_last_record_produced_before_the_fault_end_was_decided() -> None:
    inputs = on_topic([transaction(f"t-{n}") for n in range(3)], [10.0, 11.0, 20.0])
    decisions = on_topic([decision("t-0"), decision("t-1"), decision("t-2")], [16.0, 17.5, 20.1])
    ledger = account(inputs, decisions, [], IDS)
    assert ledger.recovery_s(fault_end=15.0) == pytest.approx(2.5)
    assert ledger.recovery_s(fault_end=18.0) == 0.0  # all decided before the fault ended
    # A broker that lost everything produced before the end: until its first record.
    assert ledger.recovery_s(fault_end=5.0) == pytest.approx(11.0)
    assert ledger.longest_wait_s() == pytest.approx(6.5)


def test_recovery_never_comes_when_a_record_due_is_lost() -> None:
    inputs = on_topic([transaction("t-0"), transaction("t-1")], [10.0, 11.0])
    ledger = account(inputs, on_topic([decision("t-1")], [12.0]), [], IDS)
    assert ledger.recovery_s(fault_end=11.5) is None


@pytest.mark.integration
def test_read_topic_returns_the_last_batch_too(broker: EmbeddedBroker) -> None:
    """Tansu answers ListOffsets(latest) with the last batch's base offset; reading up to
    that would drop the batch."""
    broker.create_topics(["ledger.read"], 2)
    pairs = [(f"k{n % 5}".encode(), transaction(f"t-{n}")) for n in range(300)]
    asyncio.run(produce_at_rate(broker.bootstrap, "ledger.read", pairs, 1000.0))
    records = read_topic(broker.bootstrap, "ledger.read")
    assert sorted(record.value or b"" for record in records) == sorted(v for _, v in pairs)
