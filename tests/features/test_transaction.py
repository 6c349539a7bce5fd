"""The transaction and label parsers: hostile records raise `InvalidTransaction`, nothing else."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fraudstream.features.transaction import (
    InvalidTransaction,
    Transaction,
    parse_label,
    parse_transaction,
)

A_TRANSACTION: dict[str, Any] = {
    "txn_id": "t-1",
    "card_id": "c-1",
    "merchant_id": "m-1",
    "amount": 12.5,
    "currency": "EUR",
    "country": "FR",
    "channel": "pos",
    "event_time": 1_767_225_600.0,
    "lat": 48.85,
    "lon": 2.35,
}
A_LABEL: dict[str, Any] = {
    "txn_id": "t-1",
    "is_fraud": True,
    "scenario": "card_testing",
    "label_time": 1_767_312_000.0,
}


def with_raw(field: str, literal: bytes) -> bytes:
    """A_TRANSACTION as JSON bytes, with `field`'s value replaced by a raw JSON literal."""
    return orjson.dumps({**A_TRANSACTION, field: 0}).replace(
        f'"{field}":0'.encode(), f'"{field}":'.encode() + literal
    )


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, r"^tombstone: null value$"),
        (with_raw("amount", b"1" + b"0" * 400), "not valid JSON: number is infinity"),
        (with_raw("amount", b"9" * 5_000), "not valid JSON: number is infinity"),
        (with_raw("amount", b"1e400"), "not valid JSON: number is infinity"),
        (with_raw("amount", b"[" * 5_000 + b"]" * 5_000), "not valid JSON: depth limit"),
        (with_raw("txn_id", b'"\\ud800"'), "not valid JSON: no low surrogate"),
        (with_raw("txn_id", b'"\xed\xa0\x80"'), "not valid JSON: str is not valid UTF-8"),
        (with_raw("txn_id", b'"\xff"'), "not valid JSON: str is not valid UTF-8"),
        ({**A_TRANSACTION, "amount": 10**400}, "'amount' must be finite, got an integer of"),
        ({**A_TRANSACTION, "lat": -(10**5_000)}, "'lat' must be finite, got an integer of"),
        ({**A_TRANSACTION, "txn_id": 10**5_000}, "'txn_id' must be a non-empty string"),
        ({**A_TRANSACTION, "txn_id": nested(5_000)}, "nested too deep to print"),
        ({**A_TRANSACTION, "txn_id": "t\ud800"}, r"'txn_id' must be text encodable as UTF-8"),
        ({**A_TRANSACTION, "merchant_id": "\udfff"}, r"a lone surrogate\)$"),
    ],
    ids=[
        "tombstone", "int-400-digits", "int-5000-digits", "float-1e400", "nested-5000",
        "escaped-lone-surrogate", "utf8-encoded-surrogate", "invalid-utf8",
        "mapping-int-too-big-for-float", "mapping-int-beyond-str-limit",
        "mapping-int-where-text", "mapping-nested-where-text", "mapping-lone-surrogate",
        "mapping-lone-low-surrogate",
    ],
)  # fmt: skip
def test_hostile_records_are_rejected_with_a_message_that_says_why(
    payload: bytes | Mapping[str, Any] | None, message: str
) -> None:
    with pytest.raises(InvalidTransaction, match=message) as caught:
        parse_transaction(payload)
    assert len(str(caught.value)) < 200  # quotes no giant value into the dead letter
    str(caught.value).encode("utf-8")  # and can be written to a topic


@pytest.mark.parametrize("field", ["card_id", "merchant_id"])
@pytest.mark.parametrize(
    ("value", "described"),
    [
        (4111111111111111, "a value of type int"),
        (["4111111111111111"], "a value of type list"),
        ("4111111111111111\ud800", "a string of 17 characters (a lone surrogate)"),
        ("4111111111111111" * 9, None),  # too long: the message names the limit only
    ],
)  # fmt: skip
def test_an_error_about_a_card_or_merchant_id_never_quotes_it(
    field: str, value: object, described: str | None
) -> None:
    with pytest.raises(InvalidTransaction) as caught:
        parse_transaction({**A_TRANSACTION, field: value})
    message = str(caught.value)
    assert "4111" not in message and field in message
    assert described is None or message.endswith(f"got {described}")


def test_a_tombstone_label_is_rejected_like_a_tombstone_transaction() -> None:
    with pytest.raises(InvalidTransaction, match="^tombstone: null value$"):
        parse_label(None)


def test_of_duplicate_keys_the_last_wins() -> None:
    payload = orjson.dumps(A_TRANSACTION).replace(b'"amount":12.5', b'"amount":1,"amount":2')
    assert parse_transaction(payload).amount == 2.0


def test_an_integer_beyond_64_bits_but_within_a_double_is_a_float() -> None:
    payload = with_raw("amount", str(2**70).encode())
    with pytest.raises(InvalidTransaction, match="'amount' must be in"):
        parse_transaction(payload)  # parsed as 1.18e21: out of range, not a crash


def test_a_zero_amount_authorisation_is_a_transaction_and_a_negative_amount_is_not() -> None:
    assert parse_transaction({**A_TRANSACTION, "amount": 0}).amount == 0.0
    assert parse_transaction(with_raw("amount", b"0.00")).amount == 0.0
    with pytest.raises(InvalidTransaction, match=r"'amount' must be in \[0, 1e\+06\], got -0.01"):
        parse_transaction({**A_TRANSACTION, "amount": -0.01})


def test_non_ascii_text_that_is_valid_unicode_is_accepted() -> None:
    assert parse_transaction({**A_TRANSACTION, "txn_id": "tx-é😀"}).txn_id == "tx-é😀"


# JSON-like values with what a Python mapping may hold and JSON cannot say safely:
# lone surrogates, integers beyond a double, NaN and infinities, deep nesting.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
LEAVES = (
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
    | st.sampled_from([10**400, -(10**400), 2**64, 0, -1, 1e308])
)  # fmt: skip
JSON_LIKE = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner,
                                                                        max_size=4),
    max_leaves=12,
)  # fmt: skip
TRANSACTION_CHANGES = st.dictionaries(st.sampled_from(sorted(A_TRANSACTION)) | ANY_TEXT,
                                      JSON_LIKE, max_size=4)  # fmt: skip
LABEL_CHANGES = st.dictionaries(st.sampled_from(sorted(A_LABEL)) | ANY_TEXT, JSON_LIKE,
                                max_size=3)  # fmt: skip


def parses_or_rejects(payload: bytes | str | Mapping[str, Any]) -> None:
    """The property: each parser returns its record or raises InvalidTransaction."""
    for parse in (parse_transaction, parse_label):
        try:
            parse(payload)
        except InvalidTransaction as error:
            str(error).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_invalid_transaction(payload: bytes) -> None:
    parses_or_rejects(payload)


@settings(max_examples=200, deadline=None)
@given(TRANSACTION_CHANGES, LABEL_CHANGES)
def test_any_json_like_mapping_parses_or_raises_invalid_transaction(
    transaction_changes: dict[str, Any], label_changes: dict[str, Any]
) -> None:
    parses_or_rejects({**A_TRANSACTION, **transaction_changes})
    parses_or_rejects({**A_LABEL, **label_changes})


@settings(max_examples=200, deadline=None)
@given(TRANSACTION_CHANGES)
def test_any_json_like_record_as_bytes_parses_or_raises_invalid_transaction(
    changes: dict[str, Any],
) -> None:
    try:  # ensure_ascii: lone surrogates travel as \ud800 escapes, as a hostile producer's
        payload = json.dumps({**A_TRANSACTION, **changes})
    except ValueError:  # an int Python will not print (beyond its digit limit)
        assume(False)
    parses_or_rejects(payload.encode())
    parses_or_rejects(payload)


def test_a_valid_record_still_parses() -> None:
    assert parse_transaction(orjson.dumps(A_TRANSACTION)) == Transaction(**A_TRANSACTION)
