"""The transaction and label contracts of DESIGN.md §3, and their validation.

Everything that crosses a topic or a file is parsed here, so the generator, the offline
builder and the streaming worker agree on one shape. `parse_transaction` is strict: a
record that does not fit raises `InvalidTransaction` with a message naming the field,
which the worker copies into the dead-letter record. It raises nothing else, whatever the
input (a hostile record must cost one dead letter, never its batch):

- a Kafka tombstone (a None value) is rejected as "tombstone: null value";
- JSON is parsed by orjson, which rejects NaN and Infinity, invalid UTF-8, escaped lone
  surrogates (`"\\ud800"`), numbers beyond a double (`1e400`, a 400-digit integer) and
  nesting deeper than 1,024 levels; integers beyond 64 bits but within a double become
  floats; of duplicate keys the last wins (`{"amount": 1, "amount": 2}` has amount 2);
- a decoded mapping (the replay path) may hold what orjson never returns: integers too
  large for a float and strings with lone surrogates, which no UTF-8 topic or Redis key
  can carry; both are rejected naming the field.

Error messages quote the offending value, except for `SECRET_FIELDS`: a card number must
not reach the dead-letter topic through an error message, so those are described by type
and length only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

CHANNELS: tuple[str, ...] = ("pos", "ecom", "atm")

#: Oldest and newest event times accepted (2000-01-01 .. 2100-01-01, epoch seconds).
MIN_EVENT_TIME = 946_684_800.0
MAX_EVENT_TIME = 4_102_444_800.0
#: Largest single amount accepted; anything above is a unit or parsing error upstream.
MAX_AMOUNT = 1_000_000.0
#: Largest raw record accepted, in bytes.
MAX_PAYLOAD_BYTES = 16_384
#: Fields whose values error messages never quote (a card id may be a card number).
SECRET_FIELDS = frozenset({"card_id", "merchant_id"})


class InvalidTransaction(ValueError):
    """A record that does not satisfy the transaction contract; the message names why."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """One card transaction. `event_time` is epoch seconds (UTC); `amount` >= 0: a $0.00
    authorisation (account verification) is a real transaction, and a classic card-testing
    probe, so it is scored like any other; a refund is not a transaction here."""

    txn_id: str
    card_id: str
    merchant_id: str
    amount: float
    currency: str
    country: str
    channel: str
    event_time: float
    lat: float | None = None
    lon: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready contract form (optional coordinates omitted when absent)."""
        record: dict[str, Any] = {
            "txn_id": self.txn_id,
            "card_id": self.card_id,
            "merchant_id": self.merchant_id,
            "amount": self.amount,
            "currency": self.currency,
            "country": self.country,
            "channel": self.channel,
            "event_time": self.event_time,
        }
        if self.lat is not None and self.lon is not None:
            record["lat"] = self.lat
            record["lon"] = self.lon
        return record

    def digest(self) -> str:
        """128 bits of its content: equal for a redelivery, different for a reused txn_id."""
        canonical = orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(canonical, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Label:
    """The delayed truth about one transaction; `label_time` > the transaction's time."""

    txn_id: str
    is_fraud: bool
    scenario: str
    label_time: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "txn_id": self.txn_id,
            "is_fraud": self.is_fraud,
            "scenario": self.scenario,
            "label_time": self.label_time,
        }


def _shown(value: Any) -> str:
    """`value` for an error message: its repr, at most 80 characters, whatever it is."""
    try:
        shown = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        return f"an integer of {value.bit_length()} bits"
    except RecursionError:
        return f"a {type(value).__name__} nested too deep to print"
    return shown if len(shown) <= 80 else f"{shown[:77]}..."


def _described(field: str, value: Any) -> str:
    """`value` for an error about `field`: quoted, unless the field is secret."""
    if field not in SECRET_FIELDS or value is None:
        return _shown(value)
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if value else "''"
    return f"a value of type {type(value).__name__}"


def _decode(payload: bytes | str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if payload is None:
        raise InvalidTransaction("tombstone: null value")
    if isinstance(payload, Mapping):
        return payload
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidTransaction(
            f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    try:
        record = orjson.loads(payload)  # in C; as strict as the module docstring says
    except orjson.JSONDecodeError as error:
        raise InvalidTransaction(f"not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise InvalidTransaction(f"expected a JSON object, got {type(record).__name__}")
    return record


def _text(record: Mapping[str, Any], field: str, max_length: int = 128) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidTransaction(
            f"field {field!r} must be a non-empty string, got {_described(field, value)}"
        )
    if len(value) > max_length:
        raise InvalidTransaction(f"field {field!r} is longer than {max_length} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidTransaction(
                f"field {field!r} must be text encodable as UTF-8, got "
                f"{_described(field, value)} (a lone surrogate)"
            ) from None
    return value


def _number(record: Mapping[str, Any], field: str) -> float:
    value = record.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTransaction(f"field {field!r} must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # only an int can lie beyond a double
        raise InvalidTransaction(
            f"field {field!r} must be finite, got an integer of {int(value).bit_length()} bits"
        ) from None
    if not math.isfinite(number):
        raise InvalidTransaction(f"field {field!r} must be finite, got {_shown(value)}")
    return number


def _optional_coordinate(record: Mapping[str, Any], field: str, bound: float) -> float | None:
    if record.get(field) is None:
        return None
    value = _number(record, field)
    if not -bound <= value <= bound:
        raise InvalidTransaction(f"field {field!r} must lie in [-{bound}, {bound}], got {value}")
    return value


def parse_transaction(payload: bytes | str | Mapping[str, Any] | None) -> Transaction:
    """Validate raw JSON (bytes/str) or a decoded mapping against the contract.

    Raises `InvalidTransaction` naming the first field that does not fit, and nothing else;
    None (a tombstone) is rejected like any bad record.
    """
    record = _decode(payload)
    amount = _number(record, "amount")
    if not 0.0 <= amount <= MAX_AMOUNT:
        raise InvalidTransaction(f"field 'amount' must be in [0, {MAX_AMOUNT:g}], got {amount}")
    event_time = _number(record, "event_time")
    if not MIN_EVENT_TIME <= event_time <= MAX_EVENT_TIME:
        raise InvalidTransaction(
            f"field 'event_time' must be epoch seconds between 2000 and 2100, got {event_time}"
        )
    channel = _text(record, "channel")
    if channel not in CHANNELS:
        raise InvalidTransaction(f"field 'channel' must be one of {CHANNELS}, got {channel!r}")
    currency = _text(record, "currency", max_length=3)
    country = _text(record, "country", max_length=2)
    if len(currency) != 3 or len(country) != 2:
        raise InvalidTransaction(
            f"'currency' must be ISO 4217 (3 letters) and 'country' ISO 3166 alpha-2 "
            f"(2 letters), got {currency!r} and {country!r}"
        )
    lat = _optional_coordinate(record, "lat", 90.0)
    lon = _optional_coordinate(record, "lon", 180.0)
    if (lat is None) != (lon is None):
        raise InvalidTransaction("'lat' and 'lon' must be given together or not at all")
    return Transaction(
        txn_id=_text(record, "txn_id"),
        card_id=_text(record, "card_id"),
        merchant_id=_text(record, "merchant_id"),
        amount=amount,
        currency=currency,
        country=country,
        channel=channel,
        event_time=event_time,
        lat=lat,
        lon=lon,
    )


def parse_label(payload: bytes | str | Mapping[str, Any] | None) -> Label:
    """Validate a label record; raises `InvalidTransaction` like `parse_transaction`."""
    record = _decode(payload)
    is_fraud = record.get("is_fraud")
    if not isinstance(is_fraud, bool | int):
        raise InvalidTransaction(f"field 'is_fraud' must be a boolean, got {_shown(is_fraud)}")
    return Label(
        txn_id=_text(record, "txn_id"),
        is_fraud=bool(is_fraud),
        scenario=_text(record, "scenario"),
        label_time=_number(record, "label_time"),
    )
