"""Sliding-window state per card and per merchant: pure data structures, no storage.

The offline builder keeps these in memory; the online store (features/store.py) persists the
same events in Redis and rebuilds them, so both paths aggregate with the same code.

Semantics, shared by both paths and checked against brute force in the property tests:
- Events are ordered by `(event_time, txn_id)`. A transaction's window features use only
  events strictly before it in that order, inside `[event_time - window, event_time)`.
- Adding an event whose `txn_id` is already held is a no-op (at-least-once delivery).
- Events older than `RETENTION_SECONDS` before the newest event seen are dropped. The
  retention is the longest window plus `ALLOWED_LATENESS_SECONDS`, so an event that arrives
  out of order by less than that still sees its complete history.
- A transaction sees at most `MAX_CARD_EVENTS` of its card's earlier events, the latest
  ones, and a card keeps at most `STORED_CARD_EVENTS`: a card-testing bot's card cannot grow
  one window without bound (its counts saturate at the cap). Both paths agree as long as a
  transaction arrives fewer than `STORED_CARD_EVENTS - MAX_CARD_EVENTS` events late.
- A merchant's windows end a label delay before the transaction asking, so a merchant keeps
  its transactions and fraud labels that delay longer (`merchant_retention_seconds`).
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from fraudstream.features.geo import SECONDS_PER_DAY, is_night, is_weekend, local_hour_and_weekday
from fraudstream.features.transaction import Transaction

WINDOWS: dict[str, float] = {
    "1h": 3600.0,
    "1d": SECONDS_PER_DAY,
    "7d": 7 * SECONDS_PER_DAY,
    "30d": 30 * SECONDS_PER_DAY,
}
LONGEST_WINDOW_SECONDS = max(WINDOWS.values())
ALLOWED_LATENESS_SECONDS = SECONDS_PER_DAY
RETENTION_SECONDS = LONGEST_WINDOW_SECONDS + ALLOWED_LATENESS_SECONDS
#: Earlier events a transaction's features see at most: 7 an hour, every hour, for 30 days.
#: (The Redis script reading a window once failed past ~8,000: "too many results to unpack".)
MAX_CARD_EVENTS = 5_000
#: Events a card's window keeps: the slack above `MAX_CARD_EVENTS` serves late arrivals.
STORED_CARD_EVENTS = 2 * MAX_CARD_EVENTS


@dataclass(frozen=True, slots=True)
class CardEvent:
    """What a card's window needs to remember about one of its transactions."""

    txn_id: str
    event_time: float
    amount: float
    merchant_id: str
    country: str
    lat: float | None
    lon: float | None
    night: bool
    weekend: bool

    @property
    def key(self) -> tuple[float, str]:
        return (self.event_time, self.txn_id)

    @classmethod
    def from_transaction(cls, txn: Transaction) -> CardEvent:
        hour, weekday = local_hour_and_weekday(txn.event_time, txn.country)
        return cls(
            txn_id=txn.txn_id,
            event_time=txn.event_time,
            amount=txn.amount,
            merchant_id=txn.merchant_id,
            country=txn.country,
            lat=txn.lat,
            lon=txn.lon,
            night=is_night(hour),
            weekend=is_weekend(weekday),
        )


@dataclass(frozen=True, slots=True)
class WindowAggregate:
    """Aggregates of one window; `mean_amount` is 0 for an empty window."""

    count: int
    total_amount: float
    mean_amount: float
    distinct_merchants: int
    distinct_countries: int
    night_count: int
    weekend_count: int


def aggregate(events: Iterable[CardEvent]) -> WindowAggregate:
    """Aggregate a window's events (the brute-force definition the store must match)."""
    count = 0
    total = 0.0
    merchants: set[str] = set()
    countries: set[str] = set()
    nights = weekends = 0
    for event in events:
        count += 1
        total += event.amount
        merchants.add(event.merchant_id)
        countries.add(event.country)
        nights += event.night
        weekends += event.weekend
    return WindowAggregate(
        count=count,
        total_amount=total,
        mean_amount=total / count if count else 0.0,
        distinct_merchants=len(merchants),
        distinct_countries=len(countries),
        night_count=nights,
        weekend_count=weekends,
    )


class CardHistory:
    """One card's recent events, sorted by `(event_time, txn_id)`, deduplicated by id."""

    __slots__ = ("_events", "_keys", "_txn_ids", "_newest_time")

    def __init__(self, events: Iterable[CardEvent] = ()) -> None:
        """Hold `events`: at once when they are sorted and distinct (as Redis returns a
        card's window), else one `add` at a time, which comes to the same."""
        self._events: list[CardEvent] = list(events)
        self._keys: list[tuple[float, str]] = [event.key for event in self._events]
        self._txn_ids: set[str] = {event.txn_id for event in self._events}
        self._newest_time = float("-inf")
        in_order = all(map(operator.lt, self._keys, self._keys[1:]))
        if in_order and len(self._txn_ids) == len(self._keys):
            if self._keys:
                self._newest_time = self._keys[-1][0]
                self._evict_before(self._newest_time - RETENTION_SECONDS)
                self._evict_oldest(max(0, len(self._events) - STORED_CARD_EVENTS))
            return
        events, self._events, self._keys, self._txn_ids = self._events, [], [], set()
        for event in events:
            self.add(event)

    def __len__(self) -> int:
        return len(self._events)

    @property
    def events(self) -> list[CardEvent]:
        return list(self._events)

    def add(self, event: CardEvent) -> bool:
        """Insert `event`; returns False (and changes nothing) for a known `txn_id`."""
        if event.txn_id in self._txn_ids:
            return False
        position = bisect.bisect_left(self._keys, event.key)
        self._keys.insert(position, event.key)
        self._events.insert(position, event)
        self._txn_ids.add(event.txn_id)
        if event.event_time > self._newest_time:
            self._newest_time = event.event_time
            self._evict_before(self._newest_time - RETENTION_SECONDS)
        if len(self._events) > STORED_CARD_EVENTS:
            self._evict_oldest(len(self._events) - STORED_CARD_EVENTS)
        return True

    def _evict_before(self, cutoff: float) -> None:
        self._evict_oldest(bisect.bisect_left(self._keys, (cutoff, "")))

    def _evict_oldest(self, count: int) -> None:
        if count:
            for event in self._events[:count]:
                self._txn_ids.discard(event.txn_id)
            del self._events[:count]
            del self._keys[:count]

    def before(self, event_time: float, txn_id: str) -> list[CardEvent]:
        """The latest `MAX_CARD_EVENTS` events strictly before `(event_time, txn_id)`,
        oldest first."""
        end = bisect.bisect_left(self._keys, (event_time, txn_id))
        return self._events[max(0, end - MAX_CARD_EVENTS) : end]


def merchant_retention_seconds(label_delay_s: float) -> float:
    """How long a merchant keeps a transaction or fraud label: the longest risk window
    ends `label_delay_s` before the transaction asking, plus the allowed lateness."""
    return label_delay_s + RETENTION_SECONDS


#: A merchant's transaction key `(event_time, txn_id)` or fraud `(event_time, txn_id, label_time)`.
_Entry = TypeVar("_Entry", tuple[float, str], tuple[float, str, float])


def _drop_before(cutoff: tuple[float, str], entries: list[_Entry], txn_ids: set[str]) -> None:
    """Drop the sorted `(event_time, txn_id, ...)` entries below `cutoff`, and their ids."""
    stale = bisect.bisect_left(entries, cutoff)
    if stale:
        for entry in entries[:stale]:
            txn_ids.discard(entry[1])
        del entries[:stale]


class MerchantHistory:
    """A merchant's transactions and fraud labels, both keyed by the transaction's event time.

    A fraud label also keeps its `label_time`: the delayed risk features count a fraud only
    if its chargeback had arrived by the time asked about, which keeps them point-in-time.
    Both are dropped once their transaction is older than `retention_seconds` before the
    newest transaction seen (see `merchant_retention_seconds`).
    """

    __slots__ = ("_txn_keys", "_txn_ids", "_frauds", "_fraud_ids", "_retention")

    def __init__(self, retention_seconds: float) -> None:
        self._txn_keys: list[tuple[float, str]] = []
        self._txn_ids: set[str] = set()
        self._frauds: list[tuple[float, str, float]] = []  # (event_time, txn_id, label_time)
        self._fraud_ids: set[str] = set()
        self._retention = retention_seconds

    def add_transaction(self, event_time: float, txn_id: str) -> bool:
        if txn_id in self._txn_ids:
            return False
        bisect.insort(self._txn_keys, (event_time, txn_id))
        self._txn_ids.add(txn_id)
        cutoff = (self._txn_keys[-1][0] - self._retention, "")
        _drop_before(cutoff, self._txn_keys, self._txn_ids)
        _drop_before(cutoff, self._frauds, self._fraud_ids)
        return True

    def add_fraud_label(self, event_time: float, txn_id: str, label_time: float) -> bool:
        """Record that the transaction `(event_time, txn_id)` was labelled fraud at
        `label_time`; False (no change) when it already was: the first label stands."""
        if txn_id in self._fraud_ids:
            return False
        bisect.insort(self._frauds, (event_time, txn_id, label_time))
        self._fraud_ids.add(txn_id)
        return True

    def transactions_between(self, start: float, event_time: float, txn_id: str) -> int:
        """Transactions in `[start, (event_time, txn_id))`."""
        end = bisect.bisect_left(self._txn_keys, (event_time, txn_id))
        return end - bisect.bisect_left(self._txn_keys, (start, ""))

    def transactions_in(self, start: float, end: float) -> int:
        """Transactions with event time in `[start, end)`."""
        return bisect.bisect_left(self._txn_keys, (end, "")) - bisect.bisect_left(
            self._txn_keys, (start, "")
        )

    def frauds_known_in(self, start: float, end: float, known_before: float) -> int:
        """Transactions with event time in `[start, end)` labelled fraud before `known_before`."""
        first = bisect.bisect_left(self._frauds, (start, ""))
        last = bisect.bisect_left(self._frauds, (end, ""))
        return sum(1 for _, _, label_time in self._frauds[first:last] if label_time < known_before)
