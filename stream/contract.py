"""The wire contracts of the `decisions` and dead-letter topics (DESIGN §3), in one place.

The worker builds a `Decision` per transaction and a `DeadLetter` per record it could not
decide; every report, tool and test reads them back with `from_dict`. `to_dict` is the JSON
object on the topic, key for key, so a field added here is added everywhere at once.

Decisions are delivered at least once (DESIGN §2): the same `txn_id` may arrive twice, and
readers count the first (`first_decisions`).

A dead letter is bounded whatever the record: it keeps at most
`MAX_DEAD_LETTER_RAW_BYTES` of the raw bytes and `MAX_DEAD_LETTER_ERROR_CHARS` of the
error, so it always fits far under the producer's 1 MB record limit (a letter that cannot
be sent would stop its batch from ever being acked).

A dead letter never holds a card or merchant id in clear (issue 10): `DeadLetter.of`
replaces them by their pseudonyms in the raw record (`mask_card_fields`), withholds a raw
record in which it cannot find them, and identifies the record by a keyed digest, not a
plain hash (a plain hash of a record whose other bytes are known, or guessable, gives its
card number away by trying them all). A decision's `card_id` is the card's pseudonym.

Example:
    >>> ids = IdPseudonyms("an example key, never use it: 0123456789")
    >>> letter = DeadLetter.of(b'{"card_id": "4111111111111111", "amount": -1}',
    ...                        "field 'amount' must be in [0, 1e+06], got -1", "validate",
    ...                        ids, time=0.0)
    >>> letter.raw, letter.raw_masking, letter.raw_size
    ('{"card_id":"eGxG8awbs4cy8OX7eH0mKA","amount":-1}', 'masked', 45)
    >>> letter.raw_hmac_sha256 == ids.record_digest(
    ...     b'{"card_id": "4111111111111111", "amount": -1}')
    True
    >>> DeadLetter.from_json_bytes(letter.to_json_bytes()) == letter
    True
    >>> withheld = DeadLetter.of(b"\\xff{oops", "not valid JSON", "validate", ids, time=0.0)
    >>> withheld.raw, withheld.raw_masking, withheld.raw_size
    ('', 'withheld', 6)
"""

from __future__ import annotations

import base64
import codecs
import time as clock
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.features.transaction import SECRET_FIELDS

#: What a decision can say, in rising order of severity.
OUTCOMES = ("approve", "review", "decline")
#: Where a record was dead-lettered: parsing a transaction, deciding a batch, or a label.
DEAD_LETTER_STAGES = ("validate", "deduplicate", "decide", "labels")
#: Raw bytes a dead letter keeps: 64 KiB, four times the largest valid transaction. As
#: base64 a letter stays under 100 KB; as JSON-escaped text (6 bytes per control
#: character at worst) under 400 KB.
MAX_DEAD_LETTER_RAW_BYTES = 65_536
#: Characters of `error` a dead letter keeps (messages quote field values).
MAX_DEAD_LETTER_ERROR_CHARS = 2_000
#: What a card or merchant id that is not a string becomes (a string becomes its pseudonym).
MASK = "***"
#: `DeadLetter.raw_masking`: raw kept byte for byte (no id field in it), kept with the ids
#: replaced (re-encoded as compact JSON), or withheld (`raw` empty).
RAW_MASKINGS = ("none", "masked", "withheld")


class InvalidRecord(ValueError):
    """A decision or dead letter read back that does not follow the contract."""


def _field(raw: Mapping[str, Any], name: str, what: str) -> Any:
    try:
        return raw[name]
    except KeyError:
        raise InvalidRecord(f"{what} record has no field {name!r}") from None
    except TypeError:
        raise InvalidRecord(f"{what} record must be a JSON object, got {raw!r:.80}") from None


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, in C (orjson): one encode per decision is on the hot path."""
    return orjson.dumps(document)


def _json_loads(value: bytes | str) -> Any:
    """Parse one record; orjson's errors are ValueErrors, as `from_dict`'s readers expect."""
    return orjson.loads(value)


@dataclass(frozen=True, slots=True)
class ShadowDecision:
    """What a shadow candidate (a registry version scored beside the live one) would do."""

    model_version: str
    score: float
    decision: str

    def to_dict(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "score": self.score,
                "decision": self.decision}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ShadowDecision:
        def get(name: str) -> Any:
            return _field(raw, name, "shadow")

        return cls(str(get("model_version")), float(get("score")), str(get("decision")))


@dataclass(frozen=True, slots=True)
class Decision:
    """One transaction's decision, as the `decisions` topic carries it (keyed by card_id).

    Fields, in their order on the wire:

    - `txn_id`, `card_id`: the transaction's; `event_time` its epoch seconds.
    - `decision`: one of `OUTCOMES`; `score`: the ensemble score in [0, 1].
    - `model_scores`: per model name (`models.scorers.ModelName`), its score in [0, 1], or
      None when it timed out or failed and no fallback score was used.
    - `fallbacks`: per model that fell back, why ("timeout after 50 ms", "error: ...",
      with "; used the card's last score" under that policy); empty when none did.
    - `threshold_version`: the pair that decided (`thresholds.pair.ThresholdPair.version`);
      `model_version`: the registry version that scored.
    - `reasons`: top contributing features and fired rules; empty for approvals.
    - `latency_ms`: milliseconds per stage (validate, features, each model, ensemble,
      threshold) and `end_to_end`, from the record's produce time to the decision.
    - `degraded`: true when features or a model were missing.
    - `features`: the feature vector the models saw (for audits and retraining), a list in
      the order of the model version's `feature_names` (its registry metadata;
      `features.definitions.FEATURE_NAMES`): names are published once per version, not
      repeated in every record (they were half of a decision's bytes).
    - `stand_in`: true when the record was already older than the latency budget when
      the worker took it (a backlog): XGBoost alone decided it, without IsolationForest,
      reasons or shadow, so the worker catches up; `reasons` then says why.
    - `shadow`: the shadow candidate's verdict, present only when one is configured.
    - `rules`: ids of the business rules and lists that fired (`thresholds.rules`), in
      precedence order; `rules_version`: the rule set that was in force ("" for none).
      A fired rule's action overrides the model's (see `RuleVerdict`); its id is also
      among `reasons`. Decisions written before rules existed read as none fired.
    """

    txn_id: str
    card_id: str
    event_time: float
    decision: str
    score: float
    model_scores: dict[str, float | None]
    fallbacks: dict[str, str]
    threshold_version: str
    model_version: str
    reasons: tuple[str, ...]
    latency_ms: dict[str, float]
    degraded: bool
    features: tuple[float, ...]
    stand_in: bool = False
    shadow: ShadowDecision | None = field(default=None)
    rules: tuple[str, ...] = ()
    rules_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object on the topic; `shadow` is left out when there is none."""
        document: dict[str, Any] = {
            "txn_id": self.txn_id,
            "card_id": self.card_id,
            "event_time": self.event_time,
            "decision": self.decision,
            "score": self.score,
            "model_scores": {str(name): score for name, score in self.model_scores.items()},
            "fallbacks": {str(name): why for name, why in self.fallbacks.items()},
            "threshold_version": self.threshold_version,
            "model_version": self.model_version,
            "reasons": list(self.reasons),
            "latency_ms": {str(stage): ms for stage, ms in self.latency_ms.items()},
            "degraded": self.degraded,
            "features": list(self.features),
            "stand_in": self.stand_in,
            "rules": list(self.rules),
            "rules_version": self.rules_version,
        }
        if self.shadow is not None:
            document["shadow"] = self.shadow.to_dict()
        return document

    def to_json_bytes(self) -> bytes:
        """The record's value on the `decisions` topic (compact JSON, UTF-8)."""
        return _json_bytes(self.to_dict())

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Decision:
        """Inverse of `to_dict`; raises `InvalidRecord` naming a missing or invalid field."""

        def get(name: str) -> Any:
            return _field(raw, name, "decision")

        outcome = str(get("decision"))
        if outcome not in OUTCOMES:
            raise InvalidRecord(f"decision must be one of {OUTCOMES}, got {outcome!r}")
        shadow = raw.get("shadow")
        try:
            return cls(
                txn_id=str(get("txn_id")),
                card_id=str(get("card_id")),
                event_time=float(get("event_time")),
                decision=outcome,
                score=float(get("score")),
                model_scores={
                    str(name): None if value is None else float(value)
                    for name, value in get("model_scores").items()
                },
                fallbacks={str(name): str(why) for name, why in get("fallbacks").items()},
                threshold_version=str(get("threshold_version")),
                model_version=str(get("model_version")),
                reasons=tuple(str(reason) for reason in get("reasons")),
                latency_ms={str(stage): float(ms) for stage, ms in get("latency_ms").items()},
                degraded=bool(get("degraded")),
                features=tuple(float(value) for value in get("features")),
                stand_in=bool(raw.get("stand_in", False)),
                shadow=None if shadow is None else ShadowDecision.from_dict(shadow),
                rules=tuple(str(rule) for rule in raw.get("rules", ())),
                rules_version=str(raw.get("rules_version", "")),
            )
        except InvalidRecord:
            raise
        except (TypeError, ValueError, AttributeError) as error:
            raise InvalidRecord(f"decision record {raw.get('txn_id')!r}: {error}") from error

    @classmethod
    def from_json_bytes(cls, value: bytes | str) -> Decision:
        """A record value read from the `decisions` topic."""
        return cls.from_dict(_json_loads(value))


def _decoded_raw(raw: str, encoding: str) -> bytes:
    """A dead letter's `raw` field back as bytes."""
    return base64.b64decode(raw) if encoding == "base64" else raw.encode("utf-8")


def mask_card_fields(raw: bytes, ids: IdPseudonyms) -> tuple[bytes, str]:
    """`raw` safe to keep in a dead letter, and which of `RAW_MASKINGS` made it so.

    Only a JSON object says where its ids are: its bytes are kept as they are when no key
    of `SECRET_FIELDS` (card and merchant ids) appears at any depth, else re-encoded with
    each such value replaced: a string by its pseudonym (so the letter names the card as
    decisions and Redis do), anything else by `MASK`. Anything else (not JSON, NaN, invalid
    UTF-8, a bare number that may itself be a card number, a record nested deeper than
    orjson writes) is withheld: b"".
    """
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return b"", "withheld"
    if not isinstance(record, dict):
        return b"", "withheld"
    pending: list[dict[str, Any] | list[Any]] = [record]
    masked = False
    while pending:  # a loop, not recursion: records may nest 1,024 deep
        node = pending.pop()
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(node, dict) and key in SECRET_FIELDS:
                node[key] = ids.of_field(key, value) if isinstance(value, str) else MASK
                masked = True
            elif isinstance(value, dict | list):
                pending.append(value)
    if not masked:
        return raw, "none"
    try:
        return orjson.dumps(record), "masked"
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254)
        return b"", "withheld"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be decided, as the dead-letter topic carries it.

    `raw` holds the record's bytes, card and merchant ids masked (`raw_masking`, see
    `mask_card_fields`), as text (`raw_encoding` "utf-8"; "base64" only in letters written
    before masking, which kept non-UTF-8 records): all of them, or the first
    `MAX_DEAD_LETTER_RAW_BYTES` when `raw_truncated` (a cut drops a character it splits).
    `raw_size` and `raw_hmac_sha256` (hex, keyed like the pseudonyms) describe the whole
    record as consumed, so a truncated, masked or withheld letter still identifies it to
    whoever holds the key. `error` says what was wrong (at most
    `MAX_DEAD_LETTER_ERROR_CHARS`), `stage` where (one of `DEAD_LETTER_STAGES`), `time` when
    (epoch seconds, wall clock of the worker).
    """

    raw: str
    raw_encoding: str
    raw_truncated: bool
    raw_size: int
    raw_hmac_sha256: str
    raw_masking: str
    error: str
    stage: str
    time: float

    @classmethod
    def of(
        cls, raw: bytes, error: str, stage: str, ids: IdPseudonyms, time: float | None = None
    ) -> DeadLetter:
        """The dead letter of `raw` bytes, its ids masked with `ids`, stamped now unless
        `time` is given.

        `error` must not quote a card or merchant id (the contract's messages do not).
        """
        shown, masking = mask_card_fields(raw, ids)
        kept = shown[:MAX_DEAD_LETTER_RAW_BYTES]
        truncated = len(kept) < len(shown)
        try:
            decoder = codecs.getincrementaldecoder("utf-8")()
            payload, encoding = decoder.decode(kept, final=not truncated), "utf-8"
        except UnicodeDecodeError:  # kept bytes passed orjson, so UTF-8: a safety net only
            payload, encoding = base64.b64encode(kept).decode("ascii"), "base64"
        if len(error) > MAX_DEAD_LETTER_ERROR_CHARS:
            error = f"{error[:MAX_DEAD_LETTER_ERROR_CHARS - 3]}..."
        # An exception's message may hold a lone surrogate, which no JSON encoder writes.
        error = error.encode("utf-8", "backslashreplace").decode("utf-8")
        return cls(payload, encoding, truncated, len(raw), ids.record_digest(raw), masking,
                   error, stage, clock.time() if time is None else time)  # fmt: skip

    def raw_bytes(self) -> bytes:
        """The record as kept (masked, or empty when withheld), or its first bytes when
        `raw_truncated`."""
        return _decoded_raw(self.raw, self.raw_encoding)

    def to_dict(self) -> dict[str, Any]:
        return {"raw": self.raw, "raw_encoding": self.raw_encoding,
                "raw_truncated": self.raw_truncated, "raw_size": self.raw_size,
                "raw_hmac_sha256": self.raw_hmac_sha256, "raw_masking": self.raw_masking,
                "error": self.error, "stage": self.stage, "time": self.time}  # fmt: skip

    def to_json_bytes(self) -> bytes:
        """The record's value on the dead-letter topic (compact JSON, UTF-8)."""
        return _json_bytes(self.to_dict())

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DeadLetter:
        """Inverse of `to_dict`; raises `InvalidRecord` naming a missing field.

        A letter written before masking kept the record unmasked ("none") and identified it
        by a plain `raw_sha256`, or by nothing before `raw_size` existed (it then kept the
        whole record): its `raw_hmac_sha256` reads back empty, its size is computed.
        """

        def get(name: str) -> Any:
            return _field(raw, name, "dead-letter")

        encoding = str(get("raw_encoding"))
        if encoding not in ("utf-8", "base64"):
            raise InvalidRecord(f"raw_encoding must be 'utf-8' or 'base64', got {encoding!r}")
        text = str(get("raw"))
        size = int(raw["raw_size"]) if "raw_size" in raw else len(_decoded_raw(text, encoding))
        masking = str(raw.get("raw_masking", "none"))
        if masking not in RAW_MASKINGS:
            raise InvalidRecord(f"raw_masking must be one of {RAW_MASKINGS}, got {masking!r}")
        return cls(text, encoding, bool(raw.get("raw_truncated", False)), size,
                   str(raw.get("raw_hmac_sha256", "")), masking, str(get("error")),
                   str(get("stage")), float(get("time")))  # fmt: skip

    @classmethod
    def from_json_bytes(cls, value: bytes | str) -> DeadLetter:
        """A record value read from the dead-letter topic."""
        return cls.from_dict(_json_loads(value))


def first_decisions(decisions: Iterable[Decision]) -> list[Decision]:
    """One decision per txn_id, the first seen, in arrival order (delivery is at least once)."""
    seen: dict[str, Decision] = {}
    for decision in decisions:
        seen.setdefault(decision.txn_id, decision)
    return list(seen.values())
