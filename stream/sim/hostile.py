"""Hostile records: what a careless or malicious producer puts on the transactions topic.

Drawn by hypothesis strategies from the transaction contract (features/transaction.py),
for the chaos bench and its tests (stream/tools/chaos.py): every record here must cost at
most its own dead letter, never its batch, the worker or another record's decision. Each
kind is a strategy over a valid template transaction; `hostile_records` draws a fixed
share of each kind (the rare megabyte records by count, so a mix stays cheap for the
embedded broker) and shuffles them. Needs the dev extra (hypothesis).

Kinds, by `HOSTILE_KINDS` name: Kafka tombstones (None), arbitrary bytes (mostly not UTF-8),
fields of the wrong type (any JSON-like value, NaN and lone surrogates included), integers
beyond a double (`10**400` as a literal), JSON nested thousands deep, lone surrogates
(escaped, or UTF-8-encoded), duplicate keys, JSON that is not an object, records over the
16 KiB contract limit, megabyte records up to the producer's 1 MB limit, event times at
the contract's edges (valid today, hostile to the windows), and conflicting duplicates (a
valid record reusing another's txn_id with other content). Only the last two can be valid
transactions; hostile records otherwise carry txn_ids of their own (`hostile-N`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from fraudstream.features.transaction import MAX_EVENT_TIME, MAX_PAYLOAD_BYTES, MIN_EVENT_TIME

T = TypeVar("T")

#: A record's raw value on the topic; None is a tombstone.
RawValue = bytes | None
#: The largest record the mix holds: under the producers' 1 MiB request limit with room
#: for the key and the batch header.
MAX_RECORD_BYTES = 1_000_000
#: How many megabyte records a mix of 10,000 holds (they cost the embedded broker most).
MEGABYTE_PER_10K = 20

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
    | st.sampled_from([10**400, -(10**400), 2**64, 0, -1, 1e308]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=8,
)  # fmt: skip
FIELDS = ("txn_id", "card_id", "merchant_id", "amount", "currency", "country", "channel",
          "event_time", "lat", "lon")  # fmt: skip
NUMBER_FIELDS = ("amount", "event_time", "lat", "lon")


def _dumps(record: Any) -> bytes:
    """JSON as a hostile producer writes it: ASCII escapes (lone surrogates as `\\ud800`),
    NaN and Infinity as bare words."""
    return json.dumps(record).encode()


def _with_literal(template: dict[str, Any], field: str, literal: bytes) -> bytes:
    """`template` as JSON with `field`'s value replaced by a raw JSON (or not) literal."""
    marker = "\x00MARKER\x00"
    return _dumps({**template, field: marker}).replace(json.dumps(marker).encode(), literal)


def _wrong_types(template: dict[str, Any]) -> st.SearchStrategy[RawValue]:
    changes = st.dictionaries(st.sampled_from(FIELDS) | ANY_TEXT, JSON_LIKE, min_size=1,
                              max_size=4)  # fmt: skip

    def encode(change: dict[str, Any]) -> bytes:
        try:
            return _dumps({**template, **change})
        except ValueError:  # an int beyond Python's digit limit for str()
            return _with_literal(template, "amount", b"9" * 5_000)

    return changes.map(encode)


def _huge_integers(template: dict[str, Any]) -> st.SearchStrategy[RawValue]:
    digits = st.integers(20, 6_000).map(lambda n: b"1" + b"0" * n)
    sign = st.sampled_from([b"", b"-"])
    return st.builds(lambda f, s, d: _with_literal(template, f, s + d),
                     st.sampled_from(FIELDS), sign, digits)  # fmt: skip


def _deep(template: dict[str, Any]) -> st.SearchStrategy[RawValue]:
    def nested(field: str, depth: int, brackets: tuple[bytes, bytes]) -> bytes:
        return _with_literal(template, field, brackets[0] * depth + brackets[1] * depth)

    return st.builds(nested, st.sampled_from(FIELDS), st.integers(500, 20_000),
                     st.sampled_from([(b"[", b"]"), (b'{"a":' , b"}")]))  # fmt: skip


def _surrogates(template: dict[str, Any]) -> st.SearchStrategy[RawValue]:
    lone = st.integers(0xD800, 0xDFFF)
    escaped = st.builds(lambda f, c: _with_literal(template, f, f'"x\\u{c:04x}"'.encode()),
                        st.sampled_from(FIELDS), lone)  # fmt: skip
    encoded = st.builds(
        lambda f, c: _with_literal(template, f, b'"' + chr(c).encode("utf-8", "surrogatepass")
                                   + b'"'),
        st.sampled_from(FIELDS), lone,
    )  # fmt: skip
    return escaped | encoded


def _duplicate_keys(template: dict[str, Any]) -> st.SearchStrategy[RawValue]:
    def twice(field: str, value: Any, last: bool) -> bytes:
        body = _dumps(template)
        extra = f"{json.dumps(field)}: {json.dumps(value)}".encode()
        return body[:-1] + b", " + extra + b"}" if last else b"{" + extra + b", " + body[1:]

    return st.builds(twice, st.sampled_from(FIELDS), JSON_LIKE.filter(_printable),
                     st.booleans())  # fmt: skip


def _printable(value: Any) -> bool:
    try:
        json.dumps(value)
    except ValueError:
        return False
    return True


def _not_objects() -> st.SearchStrategy[RawValue]:
    return JSON_LIKE.filter(lambda v: not isinstance(v, dict) and _printable(v)).map(_dumps)


def _padded(template: dict[str, Any], low: int, high: int) -> st.SearchStrategy[RawValue]:
    """A valid record with a `padding` field: `low`..`high` bytes, text or binary junk."""

    def pad(size: int, binary: bool) -> bytes:
        if binary:
            return bytes(range(256)) * (size // 256) + bytes(size % 256)
        body = _dumps({**template, "padding": ""})
        return body[:-2] + b"x" * max(0, size - len(body)) + b'"}'

    return st.builds(pad, st.integers(low, high), st.booleans())


def _event_time_edges(template: dict[str, Any]) -> st.SearchStrategy[RawValue]:
    edges = st.floats(MIN_EVENT_TIME - 10.0, MIN_EVENT_TIME + 86_400.0) | st.floats(
        MAX_EVENT_TIME - 86_400.0 * 30, MAX_EVENT_TIME + 10.0
    )
    return edges.map(lambda t: _dumps({**template, "event_time": t}))


def _conflicting(template: dict[str, Any], valid_ids: Sequence[str]) -> st.SearchStrategy[RawValue]:
    amount = st.floats(0.01, 999.0).map(lambda a: round(a, 2))
    return st.builds(lambda txn_id, a: _dumps({**template, "txn_id": txn_id, "amount": a}),
                     st.sampled_from(list(valid_ids)), amount)  # fmt: skip


Kind = Callable[[dict[str, Any], Sequence[str]], st.SearchStrategy[RawValue]]
#: Each kind's share of a mix, and how it is drawn from a template and the valid txn_ids.
HOSTILE_KINDS: dict[str, tuple[float, Kind]] = {
    "tombstone": (0.05, lambda t, ids: st.just(None)),
    "bytes": (0.15, lambda t, ids: st.binary(max_size=300)),
    "wrong_types": (0.27, lambda t, ids: _wrong_types(t)),
    "huge_integer": (0.08, lambda t, ids: _huge_integers(t)),
    "deep_json": (0.07, lambda t, ids: _deep(t)),
    "surrogate": (0.08, lambda t, ids: _surrogates(t)),
    "duplicate_keys": (0.08, lambda t, ids: _duplicate_keys(t)),
    "not_an_object": (0.04, lambda t, ids: _not_objects()),
    "oversized": (0.04, lambda t, ids: _padded(t, MAX_PAYLOAD_BYTES + 1, 4 * MAX_PAYLOAD_BYTES)),
    "event_time_edge": (0.07, lambda t, ids: _event_time_edges(t)),
    "conflicting_duplicate": (0.07, lambda t, ids: _conflicting(t, ids)),
}


def draw(strategy: st.SearchStrategy[T], count: int, random_seed: int) -> list[T]:
    """`count` examples of `strategy`, the same ones for the same seed.

    Hypothesis runs a generate-only search (no shrinking, no example database); a strategy
    with fewer distinct examples than `count` (a tombstone) is repeated.
    """
    drawn: list[T] = []

    @seed(random_seed)
    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def keep(example: T) -> None:
        drawn.append(example)

    keep()
    return [drawn[i % len(drawn)] for i in range(count)]


def hostile_records(
    count: int, template: dict[str, Any], valid_ids: Sequence[str], random_seed: int
) -> list[tuple[str, RawValue]]:
    """`count` hostile (kind, raw value) pairs, shuffled; `template` is a valid transaction.

    Megabyte records are `MEGABYTE_PER_10K` per 10,000 (at least one), every other kind
    gets its share of the rest (at least one, so a small mix may hold a few more than
    `count`); every record but the conflicting duplicates gets a txn_id of its own where
    it still has one.
    """
    megabytes = max(1, round(count * MEGABYTE_PER_10K / 10_000))
    sizes = {kind: max(1, round(share * (count - megabytes)))
             for kind, (share, _) in HOSTILE_KINDS.items()}  # fmt: skip
    sizes["wrong_types"] += max(0, count - megabytes - sum(sizes.values()))
    records: list[tuple[str, RawValue]] = []
    for index, (kind, (_, strategy)) in enumerate(HOSTILE_KINDS.items()):
        own = {**template, "txn_id": f"hostile-{kind}"}
        drawn = draw(strategy(own, valid_ids), sizes[kind], random_seed + index)
        records += [(kind, value) for value in drawn]
    big = _padded({**template, "txn_id": "hostile-megabyte"}, 200_000, MAX_RECORD_BYTES)
    records += [("megabyte", value) for value in draw(big, megabytes, random_seed - 1)]
    random.Random(random_seed).shuffle(records)
    return [(kind, _own_id(value, n)) for n, (kind, value) in enumerate(records)]


def _own_id(value: RawValue, n: int) -> RawValue:
    """`value` with its template txn_id made unique (`hostile-<kind>` -> `hostile-<kind>-n`)."""
    if value is None:
        return None
    return value.replace(b'"hostile-', f'"hostile-{n}-'.encode(), 1)
