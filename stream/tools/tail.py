"""`fraudstream tail`: follow the `decisions` topic, one readable line per decision.

A reader thread reads the topic and hands each record to the caller's thread
(`topic_reader.arrivals`), so Ctrl-C, `max_lines` and `idle_timeout_s` are handled where
the lines are printed. Card ids in decisions are pseudonyms (features/pseudonyms.py): a card filter
matches the pseudonym of the id given, or the id itself when it already is one.

Example of a line (event time UTC, card pseudonym, amount, outcome, score, top reasons,
end-to-end latency):

    2026-01-04 09:12:44  card tiiIMPPH5OgLmJ8Le3nK2w  amount   912.50  REVIEW   score 0.2113  \
amount_zscore_30d=6.1 (+1.92), amount=912.5 (+0.88)  14.2 ms
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Collection
from dataclasses import dataclass

import orjson

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.stream.contract import Decision
from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.services import kafka_bootstrap
from fraudstream.stream.tools.topic_reader import arrivals

#: How many of a decision's reasons its line shows (the worker ranks them, strongest first).
TOP_REASONS_SHOWN = 3
#: The reader's fetch wait: a person reads the lines, a few hundred ms is unnoticeable.
TAIL_FETCH_MAX_WAIT_MS = 200
#: How long the reader may take to connect and find the topic's end.
READER_START_TIMEOUT_S = 30.0
_AMOUNT_COLUMN = FEATURE_NAMES.index("amount")


@dataclass(frozen=True)
class TailOptions:
    """What to show: outcomes (of `contract.OUTCOMES`; all when empty), cards (raw ids or
    pseudonyms; all when empty); where to start; when to stop (`max_lines`, or
    `idle_timeout_s` without a new decision; None: follow until interrupted)."""

    outcomes: frozenset[str] = frozenset()
    cards: tuple[str, ...] = ()
    as_json: bool = False
    from_beginning: bool = False
    max_lines: int | None = None
    idle_timeout_s: float | None = None


def decision_amount(decision: Decision) -> float | None:
    """The transaction's amount, from the feature vector (None when it carries none)."""
    if len(decision.features) <= _AMOUNT_COLUMN:
        return None
    return decision.features[_AMOUNT_COLUMN]


def event_time_text(epoch_s: float) -> str:
    """Epoch seconds as `YYYY-MM-DD HH:MM:SS` in UTC."""
    moment = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def format_decision_line(decision: Decision) -> str:
    """One decision as a line for a person watching the stream."""
    amount = decision_amount(decision)
    reasons = ", ".join(decision.reasons[:TOP_REASONS_SHOWN]) or "-"
    flags = "".join(
        f" [{flag}]" for flag, on in (("stand-in", decision.stand_in),
                                      ("degraded", decision.degraded)) if on
    )  # fmt: skip
    latency = decision.latency_ms.get("end_to_end")
    return (
        f"{event_time_text(decision.event_time)}  card {decision.card_id}  "
        f"amount {'?' if amount is None else f'{amount:8.2f}'}  "
        f"{decision.decision.upper():<7}  score {decision.score:.4f}  {reasons}  "
        f"{'?' if latency is None else f'{latency:.1f}'} ms{flags}"
    )


def format_decision_json(decision: Decision) -> str:
    """One decision as one JSON object: the topic's record plus its `amount`."""
    return orjson.dumps(decision.to_dict() | {"amount": decision_amount(decision)}).decode()


def card_matcher(cards: Collection[str], pseudonyms: IdPseudonyms | None) -> set[str]:
    """The card ids a decision may carry to match `cards`: each as given (a pseudonym) and,
    with the key, its pseudonym (a raw id)."""
    wanted = set(cards)
    if pseudonyms is not None:
        wanted |= {pseudonyms.card(card) for card in cards}
    return wanted


def wanted(decision: Decision, options: TailOptions, card_ids: Collection[str]) -> bool:
    if options.outcomes and decision.decision not in options.outcomes:
        return False
    return not card_ids or decision.card_id in card_ids


def tail_decisions(
    settings: Settings, options: TailOptions, write: Callable[[str], None],
    *, on_unreadable: Callable[[str], None] = lambda _message: None,
) -> int:  # fmt: skip
    """Follow `settings.topic_decisions` on `settings.kafka_url`, writing one line per
    wanted decision; returns how many were written. Ctrl-C ends it cleanly.

    A record that is not a decision is reported to `on_unreadable` and skipped.
    """
    if settings.kafka_url is None:
        raise ValueError("tail needs FRAUDSTREAM_KAFKA_URL, the broker the workers use")
    pseudonyms = None if settings.id_hash_key is None else IdPseudonyms(settings.id_hash_key)
    card_ids = card_matcher(options.cards, pseudonyms)
    records = arrivals(
        kafka_bootstrap(settings.kafka_url), [settings.topic_decisions], settings.partitions,
        from_end=not options.from_beginning, fetch_max_wait_ms=TAIL_FETCH_MAX_WAIT_MS,
        security=settings.kafka_security, ready_timeout_s=READER_START_TIMEOUT_S,
        idle_timeout_s=options.idle_timeout_s,
    )  # fmt: skip
    written = 0
    try:
        for _topic, value in records:
            try:
                decision = Decision.from_json_bytes(value)
            except ValueError as error:  # not JSON, or not the contract
                on_unreadable(f"skipped a record that is not a decision: {error}")
                continue
            if wanted(decision, options, card_ids):
                write(format_decision_json(decision) if options.as_json
                      else format_decision_line(decision))  # fmt: skip
                written += 1
                if options.max_lines is not None and written >= options.max_lines:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        records.close()  # stops the reader
    return written
