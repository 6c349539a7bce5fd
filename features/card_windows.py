"""Card-window features of a whole history at once: the offline builder's fast path.

`card_feature_columns` gives every transaction its `CARD_FEATURE_NAMES`, equal to the bit
to `definitions.card_features` fed row by row through `windows.CardHistory` (tested on
generated streams with edge cases), at NumPy speed instead of a Python loop per row:

- Rows are grouped by card, keeping the `(event_time, txn_id)` order inside each card,
  so a window is a range `[start, row)` of that order; `start` comes from one
  `searchsorted` per window on integer keys (card, rank of the time), then the
  `MAX_CARD_EVENTS` cap.
- Counts, night and weekend counts are differences of integer prefix sums. Totals and the
  sum of squares are differences of prefix sums of the amounts as exact integers (units of
  a power of two small enough for every amount), divided once: that is the exactly
  rounded sum `math.fsum` gives.
- Distinct merchants (countries) of `[start, row)`: an event counts for the rows after it
  until its merchant's next event on the card or the last row whose window still holds
  it, so each event adds 1 over a range of rows; a difference array sums the ranges.
- Geo-velocity calls `geo.haversine_km` itself, per row: NumPy's vectorised sine may differ
  from the C library's in the last bit.

In time order a card's window state is the card's latest events: retention and
`STORED_CARD_EVENTS` only ever drop events no 30-day window can see. A card that reuses
a `txn_id` is the exception (`CardHistory` ignores the second event), so its rows are left
to the caller, which replays them through the reference (`needs_reference`).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.features import windows
from fraudstream.features.definitions import (
    CARD_FEATURE_NAMES,
    MIN_AMOUNT_STD,
    MIN_VELOCITY_GAP_SECONDS,
    NO_RECENT_TRANSACTION_SECONDS,
)
from fraudstream.features.geo import (
    EPOCH_WEEKDAY,
    FIRST_WEEKEND_DAY,
    NIGHT_END_HOUR,
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    haversine_km,
    utc_offset_seconds,
)
from fraudstream.features.transaction import CHANNELS, Transaction

_Rows = NDArray[np.int64]


def distinct_codes(values: Sequence[str]) -> tuple[_Rows, list[str]]:
    """Each value's index among the distinct values, and those values in first-seen order
    (a dict: faster than sorting a million strings)."""
    index = {value: code for code, value in enumerate(dict.fromkeys(values))}
    return np.fromiter(map(index.__getitem__, values), np.int64, len(values)), list(index)


def _column(txns: Sequence[Transaction], field: str) -> list[Any]:
    return list(map(operator.attrgetter(field), txns))


class _CardOrder:
    """Rows grouped by card, each card's rows in time order: position g holds row `rows[g]`."""

    def __init__(self, card_code: _Rows, times: NDArray[np.float64]) -> None:
        self.rows = np.argsort(card_code, kind="stable")
        self.card = card_code[self.rows]
        self.times = times[self.rows]
        # Times as ranks, so that (card, time) fits one sortable integer.
        self._distinct_times = np.unique(self.times)
        self._scale = len(self._distinct_times) + 1
        self._event_keys = self._key(self.times)

    def _key(self, times: NDArray[np.float64]) -> _Rows:
        """(card, number of distinct event times below `times`) as one integer."""
        return self.card * self._scale + np.searchsorted(self._distinct_times, times)

    def window_start(self, length: float) -> _Rows:
        """First position of each row's window `[event_time - length, event_time)`, capped
        to the row's latest `MAX_CARD_EVENTS` predecessors."""
        start = np.searchsorted(self._event_keys, self._key(self.times - length), side="left")
        return np.maximum(start, np.arange(len(start), dtype=np.int64) - windows.MAX_CARD_EVENTS)


def _neighbours(order: _CardOrder, value: _Rows) -> tuple[_Rows, _Rows]:
    """For each position, the previous and next position of the same card with the same
    value (-1 and len when there is none)."""
    n = len(value)
    key = order.card * (int(value.max(initial=0)) + 1) + value
    by_key = np.argsort(key, kind="stable")
    same = key[by_key][1:] == key[by_key][:-1]
    previous = np.full(n, -1, dtype=np.int64)
    following = np.full(n, n, dtype=np.int64)
    previous[by_key[1:][same]] = by_key[:-1][same]
    following[by_key[:-1][same]] = by_key[1:][same]
    return previous, following


def _distinct_in_window(start: _Rows, following: _Rows) -> _Rows:
    """Distinct values among positions `[start[g], g)` of each g (see the module doc)."""
    n = len(start)
    positions = np.arange(n, dtype=np.int64)
    last_row_holding = np.searchsorted(start, positions, side="right") - 1
    until = np.minimum(following, last_row_holding)
    counted = until > positions
    change = np.bincount(positions[counted] + 1, minlength=n + 1)
    change -= np.bincount(until[counted] + 1, minlength=n + 1)
    return np.cumsum(change[:n])


def _exact_prefix_sums(values: NDArray[np.float64]) -> tuple[NDArray[np.object_], int]:
    """Prefix sums of `values` (>= 0) as exact integers in units of 2**-scale."""
    mantissa, exponent = np.frexp(values)
    integer = (mantissa * 2.0**53).astype(np.int64)  # exact: 53 bits
    shift = exponent.astype(np.int64) - 53
    scale = max(0, -int(shift.min(initial=0)))
    exact = map(operator.lshift, integer.tolist(), (shift + scale).tolist())
    sums = np.fromiter(accumulate(exact, initial=0), dtype=object, count=len(values) + 1)
    return sums, scale


def _window_sums(
    sums: NDArray[np.object_], scale: int, start: _Rows, end: _Rows
) -> NDArray[np.float64]:
    """Exactly rounded sums of positions `[start, end)`: one correctly rounded division."""
    return ((sums[end] - sums[start]) / (1 << scale)).astype(np.float64)


def _local_time(times: NDArray[np.float64], offsets: NDArray[np.float64]) -> tuple[_Rows, _Rows]:
    """Local hour and weekday as `geo.local_hour_and_weekday` computes them."""
    local = times + offsets
    hour = np.floor_divide(local, SECONDS_PER_HOUR).astype(np.int64) % 24
    weekday = (np.floor_divide(local, SECONDS_PER_DAY).astype(np.int64) + EPOCH_WEEKDAY) % 7
    return hour, weekday


def _velocity_kmh(
    order: _CardOrder,
    lat: NDArray[np.float64],
    lon: NDArray[np.float64],
    located: NDArray[np.bool_],
    start_30d: _Rows,
) -> NDArray[np.float64]:
    """Speed from the card's last located event in the 30-day window, as `definitions`."""
    n = len(located)
    positions = np.arange(n, dtype=np.int64)
    last_located = np.maximum.accumulate(np.where(located, positions, -1))
    previous = np.concatenate(([-1], last_located[:-1]))
    moving = located & (previous >= start_30d)
    here, there = positions[moving], previous[moving]
    ends = (lat[there].tolist(), lon[there].tolist(), lat[here].tolist(), lon[here].tolist())
    distance = np.array(list(map(haversine_km, *ends)), dtype=np.float64)
    gap = np.maximum(order.times[here] - order.times[there], MIN_VELOCITY_GAP_SECONDS)
    velocity = np.zeros(n, dtype=np.float64)
    velocity[here] = distance / (gap / 3600.0)
    return velocity


def _is(codes: _Rows, names: list[str], name: str) -> NDArray[np.float64]:
    """1.0 where the coded value is `name`."""
    return (
        (codes == names.index(name)).astype(np.float64) if name in names else np.zeros(len(codes))
    )


def _reused_txn_ids(card: _Rows, txn_code: _Rows) -> NDArray[np.bool_]:
    """Rows of cards on which some `txn_id` occurs twice."""
    pair = card * (int(txn_code.max(initial=0)) + 1) + txn_code
    _, first, counts = np.unique(pair, return_index=True, return_counts=True)
    return np.isin(card, card[first[counts > 1]])


def card_feature_columns(
    ordered: Sequence[Transaction], out: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Write the `CARD_FEATURE_NAMES` of every row of `ordered` (sorted by
    `(event_time, txn_id)`) into `out` (rows x names), one column at a time (a million
    rows: each column is 8 MB, the matrix 300).

    Returns which rows belong to cards that reuse a `txn_id`: their values here are not
    the reference's, and the caller must compute them row by row.
    """
    order = _CardOrder(
        distinct_codes(_column(ordered, "card_id"))[0],
        np.array(_column(ordered, "event_time"), dtype=np.float64),
    )
    event_row = np.empty_like(order.rows)  # position in card order of each row
    event_row[order.rows] = np.arange(len(ordered), dtype=np.int64)
    for index, values in zip(
        range(len(CARD_FEATURE_NAMES)), _columns_in_card_order(order, ordered), strict=True
    ):
        out[:, index] = values[event_row]
    txn_code = distinct_codes(_column(ordered, "txn_id"))[0]
    return _reused_txn_ids(order.card, txn_code[order.rows])[event_row]


def _columns_in_card_order(
    order: _CardOrder, ordered: Sequence[Transaction]
) -> Iterator[NDArray[np.float64]]:
    """The card feature columns in `CARD_FEATURE_NAMES` order, rows in `order`.

    Fields are read in event order, the order the transactions were parsed in and so lie
    in memory: in card order every read would miss the CPU cache (3x slower at 1 M).
    """
    n = len(ordered)
    rows, times = order.rows, order.times
    amount = np.array(_column(ordered, "amount"), dtype=np.float64)[rows]
    merchant = distinct_codes(_column(ordered, "merchant_id"))[0][rows]
    country, country_names = distinct_codes(_column(ordered, "country"))
    offsets = np.array([utc_offset_seconds(name) for name in country_names], dtype=np.float64)
    country = country[rows]
    lat_or_none, lon_or_none = _column(ordered, "lat"), _column(ordered, "lon")
    located = np.array(
        [
            lat is not None and lon is not None
            for lat, lon in zip(lat_or_none, lon_or_none, strict=True)
        ]
    )[rows]
    lat = np.array([0.0 if value is None else value for value in lat_or_none])[rows]
    lon = np.array([0.0 if value is None else value for value in lon_or_none])[rows]
    hour, weekday = _local_time(times, offsets[country])
    channel, channel_names = distinct_codes(_column(ordered, "channel"))
    channel = channel[rows]

    positions = np.arange(n, dtype=np.int64)
    amount_sums, amount_scale = _exact_prefix_sums(amount)
    night_sums = np.concatenate(([0], np.cumsum(hour < NIGHT_END_HOUR)))
    weekend_sums = np.concatenate(([0], np.cumsum(weekday >= FIRST_WEEKEND_DAY)))
    previous_merchant, next_merchant = _neighbours(order, merchant)
    previous_country, next_country = _neighbours(order, country)

    for length in windows.WINDOWS.values():
        start = order.window_start(length)
        count = positions - start
        total = _window_sums(amount_sums, amount_scale, start, positions)
        mean = np.divide(total, count, out=np.zeros(n), where=count > 0)
        yield from (
            count.astype(np.float64),
            total,
            mean,
            _distinct_in_window(start, next_merchant).astype(np.float64),
            _distinct_in_window(start, next_country).astype(np.float64),
            (night_sums[positions] - night_sums[start]).astype(np.float64),
            (weekend_sums[positions] - weekend_sums[start]).astype(np.float64),
        )
    start_30d, count_30d, total_30d = start, count, total

    square_sums, square_scale = _exact_prefix_sums(amount * amount)
    squares_30d = _window_sums(square_sums, square_scale, start_30d, positions)
    several = count_30d >= 2
    mean_30d = np.divide(total_30d, count_30d, out=np.zeros(n), where=several)
    variance = np.maximum(
        0.0, np.divide(squares_30d, count_30d, out=np.zeros(n), where=several) - mean_30d * mean_30d
    )
    zscore = np.where(
        several, (amount - mean_30d) / np.maximum(np.sqrt(variance), MIN_AMOUNT_STD), 0.0
    )
    previous_time = np.concatenate(([0.0], times[:-1]))
    since_last = np.where(count_30d > 0, times - previous_time, NO_RECENT_TRANSACTION_SECONDS)
    yield from (
        amount,
        zscore,
        since_last,
        _velocity_kmh(order, lat, lon, located, start_30d),
        hour.astype(np.float64),
        weekday.astype(np.float64),
        *(_is(channel, channel_names, name) for name in CHANNELS),
        (previous_merchant < start_30d).astype(np.float64),
        (previous_country < start_30d).astype(np.float64),
    )
