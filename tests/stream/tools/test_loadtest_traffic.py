"""The load test's traffic side: the decision clock reads ids exactly, the producer reports.

`decision_txn_id` skips the JSON parse for the common record, so it is held to what
`json.loads` says on every input the worker could write and on awkward ones it never does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.stream.tools.loadtest_traffic import (
    DecisionClock,
    decision_txn_id,
    produce_paced,
)
from fraudstream.stream.tools.services import EmbeddedBroker


def _orjson(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)


def _spaced(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _ascii_escaped(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode()


@pytest.mark.parametrize("encode", [_orjson, _spaced, _ascii_escaped])
@pytest.mark.parametrize(
    "txn_id",
    ["t-123", "", 'say "hi"', "back\\slash", "café", "emoji 🙂", "tab\there", 'txn_id":"x'],
)
def test_txn_id_matches_a_full_parse(encode: Any, txn_id: str) -> None:
    value = encode({"txn_id": txn_id, "card_id": "c-9", "score": 0.5, "reason": "x" * 800})
    assert decision_txn_id(value) == txn_id == json.loads(value)["txn_id"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"card_id":"c-9","txn_id":"t-1"}', "t-1"),  # not the first key
        (b'{"txn_id":"t-1","txn_id":"t-2"}', "t-2"),  # duplicate key: the last one wins
        (b'{"txn_id":"t-1","shadow":{"txn_id":"t-2"}}', "t-1"),  # nested key is not it
        (b'{"shadow":{"txn_id":"t-2"},"txn_id":"t-1"}', "t-1"),
        (b'{"note":"\\"txn_id\\":\\"t-2\\"","txn_id":"t-1"}', "t-1"),  # key inside a string
        (b'{"txn_id":"t\\u00e9-1"}', "t\u00e9-1"),  # unicode escape
        (b'{"txn_id":"t\\"-1"}', 't"-1'),  # escaped quote
        (b'{"txn_id": "t-1" }', "t-1"),
        (b'{ "txn_id":"t-1"}', "t-1"),
        (b'{"card_id":"c-9"}', None),
        (b'{"txn_id":7}', None),
        (b'["txn_id"]', None),
    ],
)
def test_txn_id_of_awkward_records(value: bytes, expected: str | None) -> None:
    assert decision_txn_id(value) == expected


def test_a_record_that_is_not_json_is_an_error() -> None:
    with pytest.raises(ValueError):
        decision_txn_id(b'{"txn_id":"t-1')


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text()
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(
    txn_id=st.text(),
    before=st.dictionaries(st.text(), _values, max_size=3),
    after=st.dictionaries(st.text(), _values, max_size=3),
    encode=st.sampled_from([_orjson, _spaced, _ascii_escaped]),
)
def test_txn_id_is_what_json_loads_reads(
    txn_id: str, before: dict[str, Any], after: dict[str, Any], encode: Any
) -> None:
    document = {**before, "txn_id": txn_id, **after}  # `after` may hold another txn_id
    value = encode(document)
    loaded = json.loads(value)["txn_id"]
    assert decision_txn_id(value) == (loaded if isinstance(loaded, str) else None)


@pytest.mark.integration
def test_clock_starts_at_the_end_and_stamps_what_follows(broker: EmbeddedBroker) -> None:
    topic = "decisions.test-clock"
    broker.create_topics([topic], 2)
    early = [(b"c-1", orjson.dumps({"txn_id": "early"}))]
    _produce(broker.bootstrap, topic, early)
    clock = DecisionClock(broker.bootstrap, topic, 2)
    try:
        before = time.time()
        late = [(f"c-{i}".encode(), orjson.dumps({"txn_id": f"t-{i}"})) for i in range(50)]
        _produce(broker.bootstrap, topic, late + late[:5])  # at least once: repeats
        deadline = time.monotonic() + 20
        while len(clock.seen) < 50 and time.monotonic() < deadline:
            clock.poll(0.05)
    finally:
        clock.close()
    assert set(clock.seen) == {f"t-{i}" for i in range(50)}
    assert all(before <= at <= time.time() for at in clock.seen.values())


@pytest.mark.integration
def test_paced_producer_reports_every_send(broker: EmbeddedBroker, tmp_path: Path) -> None:
    topic = "transactions.test-paced"
    broker.create_topics([topic], 2)
    lines = [(f"c-{i % 7}".encode(), orjson.dumps({"txn_id": f"t-{i}"})) for i in range(200)]
    records, sent = tmp_path / "step.records", tmp_path / "step.sent.json"
    records.write_bytes(b"".join(key + b"\t" + value + b"\n" for key, value in lines))
    produce_paced(broker.bootstrap, topic, str(records), str(sent), 400.0)
    report = json.loads(sent.read_text())
    assert report.keys() == {"seconds", "sent", "acked", "failures", "first_failure", "cpu_s"}
    assert report["failures"] == 0 and report["first_failure"] is None
    assert 0.45 <= report["seconds"] < 5 and report["cpu_s"] > 0
    assert len(report["sent"]) == 200 and report["sent"] == sorted(report["sent"])
    assert all(sent <= acked for sent, acked in zip(report["sent"], report["acked"], strict=True))
    # Record i is due i/rate s after the start: the span of send times is the rate's.
    assert report["sent"][-1] - report["sent"][0] == pytest.approx(199 / 400, abs=0.05)


def _produce(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
    for key, value in pairs:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
