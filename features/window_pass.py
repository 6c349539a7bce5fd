"""A card's window aggregates at one instant: one pass over its events, or kept running.

`window_pass` is the definition: one newest-to-oldest pass over the card's events before
a transaction. `RunningCardHistory` keeps the same aggregates up to date as events are
added, so a transaction that arrives after every event its card holds (the usual case
online) costs a few dictionary updates instead of a pass over its month of history, and a
card-testing bot's card at the `MAX_CARD_EVENTS` cap costs no more than any other. Both
give the same `WindowPass` to the bit (a property test replays random, late and
duplicated arrivals through both); a late transaction, and a card's first (it may be a
cold card, seen once), are served by the pass.

Totals are exactly rounded sums, as `math.fsum` gives: the running path keeps them as
exact integers in units of a power of two and divides once when asked, so the order in
which events entered and left a window cannot change the result.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Container, Sequence
from dataclasses import dataclass

from fraudstream.features import windows
from fraudstream.features.windows import WINDOWS, CardEvent, CardHistory

_LENGTHS = tuple(WINDOWS.values())
#: Amounts are held as integers in units of 2**-_AMOUNT_BITS, their squares in units of
#: 2**-_SQUARE_BITS: exact for every amount >= 2**-11 (a twentieth of a cent). A card
#: with a smaller amount in its history is served by the pass.
_AMOUNT_BITS = 64
_SQUARE_BITS = 128
#: Where the 30-day window's seven values start in `WindowPass.values`.
_MONTH_VALUES = 7 * (len(_LENGTHS) - 1)


@dataclass(slots=True)
class WindowPass:
    """The window aggregates of a card before one transaction at time t."""

    values: list[float]  # count, total, mean, merchants, countries, nights, weekends per window
    sum_of_squares_30d: float  # exactly rounded sum of each amount squared (rounded)
    merchants_30d: Container[str]
    countries_30d: Container[str]
    events_30d: Sequence[CardEvent]  # oldest first

    @property
    def count_30d(self) -> int:
        return int(self.values[_MONTH_VALUES])

    @property
    def total_30d(self) -> float:
        return self.values[_MONTH_VALUES + 1]


def window_pass(prior: Sequence[CardEvent], t: float) -> WindowPass:
    """The aggregates of every window, in one newest-to-oldest pass over `prior` (the card's
    events before the transaction, oldest first).

    Equal to `windows.aggregate()` of each window's events (checked by a property test);
    the windows are nested, so one pass serves all four.
    """
    values: list[float] = []
    nights = weekends = 0
    amounts: list[float] = []
    merchants: set[str] = set()
    countries: set[str] = set()
    position = len(prior) - 1
    for length in _LENGTHS:
        start = t - length
        while position >= 0 and prior[position].event_time >= start:
            event = prior[position]
            amounts.append(event.amount)
            merchants.add(event.merchant_id)
            countries.add(event.country)
            nights += event.night
            weekends += event.weekend
            position -= 1
        count = len(amounts)
        total = math.fsum(amounts)
        values += (count, total, total / count if count else 0.0, len(merchants),
                   len(countries), nights, weekends)  # fmt: skip
    return WindowPass(values, math.fsum([a * a for a in amounts]), merchants, countries,
                      prior[position + 1 :])  # fmt: skip


def _exact(event: CardEvent) -> bool:
    """Whether the event's amount is a whole number of 2**-_AMOUNT_BITS units; its square
    (rounded) then is one of 2**-_SQUARE_BITS units, unless it overflows."""
    return (event.amount * 2.0**_AMOUNT_BITS).is_integer() and abs(event.amount) < 1e150


def _exact_amount(event: CardEvent) -> tuple[int, int]:
    """An `_exact` event's amount and its square (as `window_pass` rounds it) as integers:
    scaling by a power of two is exact."""
    amount = event.amount
    return int(amount * 2.0**_AMOUNT_BITS), int(amount * amount * 2.0**_SQUARE_BITS)


class _Window:
    """One window's running aggregates over the history's events `[start, end)`, all of
    whose amounts have an exact form (recomputed when an event leaves: cheaper in memory
    than keeping it)."""

    __slots__ = ("length", "start", "count", "total", "squares", "merchants", "countries",
                 "nights", "weekends")  # fmt: skip

    def __init__(self, length: float) -> None:
        self.length = length
        self.start = 0
        self.count = self.total = self.squares = self.nights = self.weekends = 0
        self.merchants: dict[str, int] = {}
        self.countries: dict[str, int] = {}

    def enter(self, event: CardEvent, amount: int, square: int) -> None:
        self.count += 1
        self.total += amount
        self.squares += square
        self.nights += event.night
        self.weekends += event.weekend
        self.merchants[event.merchant_id] = self.merchants.get(event.merchant_id, 0) + 1
        self.countries[event.country] = self.countries.get(event.country, 0) + 1

    def leave(self, event: CardEvent) -> None:
        amount, square = _exact_amount(event)
        self.count -= 1
        self.total -= amount
        self.squares -= square
        self.nights -= event.night
        self.weekends -= event.weekend
        _decrement(self.merchants, event.merchant_id)
        _decrement(self.countries, event.country)

    def values(self) -> tuple[float, ...]:
        total = self.total / (1 << _AMOUNT_BITS)  # int / int: correctly rounded, as fsum
        count = self.count
        return (count, total, total / count if count else 0.0, len(self.merchants),
                len(self.countries), self.nights, self.weekends)  # fmt: skip


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


class RunningCardHistory(CardHistory):
    """A `CardHistory` that also keeps its window aggregates running (see the module doc).

    The running windows hold the events `[window.start, len)` of the history and move on
    as time does. An event inserted before the newest, or an amount with no exact integer
    form, drops them; they are rebuilt once at the next query that comes after every event
    (and finds no such amount in its 30 days).
    """

    __slots__ = ("_windows", "_asked_at", "_asked_before")

    def __init__(self, events: Sequence[CardEvent] = ()) -> None:
        self._windows: list[_Window] | None = None
        self._asked_at = float("-inf")
        self._asked_before = False
        super().__init__(events)

    def add(self, event: CardEvent) -> bool:
        if event.txn_id in self._txn_ids:
            return False
        late = bool(self._keys) and event.key < self._keys[-1]
        if self._windows is not None and (late or not _exact(event)):
            self._windows = None  # before `super().add` evicts: the windows hold no late event
        super().add(event)
        if self._windows is not None:
            amount, square = _exact_amount(event)
            for window in self._windows:
                window.enter(event, amount, square)
        return True

    def _evict_oldest(self, count: int) -> None:
        if count and self._windows is not None:
            for window in self._windows:
                for event in self._events[window.start : count]:
                    window.leave(event)
                window.start = max(0, window.start - count)
        super()._evict_oldest(count)

    def pass_before(self, event_time: float, txn_id: str) -> WindowPass:
        """`window_pass(self.before(event_time, txn_id), event_time)`, from the running
        windows when the transaction comes after every event held. Use it before the next
        `add`: its merchant and country sets are the running windows' own."""
        after_all = not self._keys or (event_time, txn_id) > self._keys[-1]
        asked_before, self._asked_before = self._asked_before, True
        if (
            not after_all
            or event_time < self._asked_at
            or not (self._windows is not None or asked_before and self._build(event_time))
        ):  # a card asked once (a cold one) is served by the pass: a build costs more
            return window_pass(self.before(event_time, txn_id), event_time)
        assert self._windows is not None
        self._asked_at = event_time
        events = self._events
        values: list[float] = []
        seen_from = len(events) - windows.MAX_CARD_EVENTS  # what a transaction sees at most
        for window in self._windows:
            start, cutoff = window.start, event_time - window.length
            while start < len(events) and (start < seen_from or events[start].event_time < cutoff):
                window.leave(events[start])
                start += 1
            window.start = start
            values += window.values()
        month = self._windows[-1]
        return WindowPass(values, month.squares / (1 << _SQUARE_BITS), month.merchants,
                          month.countries, events[month.start :])  # fmt: skip

    def _build(self, event_time: float) -> bool:
        """Build the windows, each from the events it holds at `event_time`; False when
        an amount in them has no exact form."""
        seen_from = max(0, len(self._events) - windows.MAX_CARD_EVENTS)
        starts = [
            max(seen_from, bisect.bisect_left(self._keys, (event_time - length, "")))
            for length in _LENGTHS
        ]
        if not all(map(_exact, self._events[min(starts) :])):
            return False
        self._windows = [_Window(length) for length in _LENGTHS]
        for window, start in zip(self._windows, starts, strict=True):
            window.start = start
            for event in self._events[start:]:
                amount, square = _exact_amount(event)
                window.enter(event, amount, square)
        return True
