"""The feature vector of DESIGN.md §4: one definition for training and for serving.

`feature_vector` is the only place a feature is computed. The offline builder
(features/builder.py) and the Redis-backed online store both call it with the card's
earlier events and the merchant's counts, so a parity test can compare them row by row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.geo import SECONDS_PER_DAY, haversine_km, local_hour_and_weekday
from fraudstream.features.transaction import CHANNELS, Transaction
from fraudstream.features.windows import WINDOWS, CardEvent

MERCHANT_COUNT_WINDOW_SECONDS = WINDOWS["1d"]
#: Windows of the merchant risk features, shortest first: each ends a label delay before
#: the transaction, so a fraud of the window has had that long to be reported.
MERCHANT_RISK_WINDOWS: tuple[str, ...] = ("1d", "7d", "30d")
#: The label delay D of `FRAUDSTREAM_LABEL_DELAY_DAYS` when unset.
DEFAULT_LABEL_DELAY_DAYS = 7.0
DEFAULT_LABEL_DELAY_S = DEFAULT_LABEL_DELAY_DAYS * SECONDS_PER_DAY
#: Value of `seconds_since_last` for a card with no transaction in the last 30 days.
NO_RECENT_TRANSACTION_SECONDS = WINDOWS["30d"]
#: Below this gap two transactions are treated as simultaneous for geo-velocity.
MIN_VELOCITY_GAP_SECONDS = 60.0
#: Floor of the 30-day standard deviation in the amount z-score, in currency units.
MIN_AMOUNT_STD = 1.0

_WINDOW_FIELDS = (
    "count",
    "total_amount",
    "mean_amount",
    "distinct_merchants",
    "distinct_countries",
    "night_count",
    "weekend_count",
)

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{field}_{window}" for window in WINDOWS for field in _WINDOW_FIELDS),
    "amount",
    "amount_zscore_30d",
    "seconds_since_last",
    "velocity_kmh",
    "local_hour",
    "local_weekday",
    *(f"channel_{channel}" for channel in CHANNELS),
    "is_new_merchant",
    "is_new_country",
    "merchant_txn_count_1d",
    *(
        f"merchant_{figure}_{window}_delayed"
        for window in MERCHANT_RISK_WINDOWS
        for figure in ("txn_count", "fraud_share")
    ),
)

#: How far a transaction departs from its card's own habits: the features an unsupervised
#: anomaly detector sees. Population-level features (merchant counts, raw window totals)
#: vary widely among legitimate cards and would drown these out.
ANOMALY_FEATURES: tuple[str, ...] = (
    "amount",
    "amount_zscore_30d",
    "seconds_since_last",
    "velocity_kmh",
    "count_1h",
    "total_amount_1h",
    "distinct_merchants_1h",
    "night_count_1d",
    "local_hour",
    "is_new_merchant",
    "is_new_country",
)


@dataclass(frozen=True, slots=True)
class MerchantCounts:
    """What the merchant's history says at the transaction's time t (point-in-time).

    `txn_count_1d` counts its transactions in the day before t. For each window w of
    `MERCHANT_RISK_WINDOWS` and the label delay D, `delayed_txns` counts those with event
    time in [t - D - w, t - D), and `delayed_frauds` those of them labelled fraud by a
    label that arrived before t: a merchant compromised weeks ago has no recent frauds
    there, one compromised now does once its first chargebacks are in.
    """

    txn_count_1d: int
    delayed_txns: tuple[int, ...]
    delayed_frauds: tuple[int, ...]


#: The counts of a merchant with no history (or when the store could not be asked).
NO_MERCHANT_HISTORY = MerchantCounts(
    0, (0,) * len(MERCHANT_RISK_WINDOWS), (0,) * len(MERCHANT_RISK_WINDOWS)
)


def _velocity_kmh(txn: Transaction, prior: Sequence[CardEvent]) -> float:
    """Speed implied by travelling from the card's last located event to this one."""
    if txn.lat is None or txn.lon is None:
        return 0.0
    for event in reversed(prior):
        if event.lat is not None and event.lon is not None:
            distance = haversine_km(event.lat, event.lon, txn.lat, txn.lon)
            gap = max(txn.event_time - event.event_time, MIN_VELOCITY_GAP_SECONDS)
            return distance / (gap / 3600.0)
    return 0.0


@dataclass(slots=True)
class _WindowPass:
    """What one newest-to-oldest pass over a card's prior events yields."""

    values: list[float]  # the seven aggregates of each window, in `WINDOWS` order
    start_30d: int  # index in `prior` of the first event inside the 30-day window
    merchants_30d: set[str]
    countries_30d: set[str]


def _window_values(prior: Sequence[CardEvent], t: float) -> _WindowPass:
    """The seven aggregates of every window, in one newest-to-oldest pass over `prior`.

    Equal to `aggregate()` of each window's events (checked by a property test), but the
    windows are nested, so one pass serves all four, and its 30-day merchant and country
    sets answer the is-new questions too: the hot path of every decision.
    """
    values: list[float] = []
    count = nights = weekends = 0
    total = 0.0
    merchants: set[str] = set()
    countries: set[str] = set()
    position = len(prior) - 1
    for length in WINDOWS.values():
        start = t - length
        while position >= 0 and prior[position].event_time >= start:
            event = prior[position]
            count += 1
            total += event.amount
            merchants.add(event.merchant_id)
            countries.add(event.country)
            nights += event.night
            weekends += event.weekend
            position -= 1
        values += (count, total, total / count if count else 0.0, len(merchants),
                   len(countries), nights, weekends)  # fmt: skip
    return _WindowPass(values, position + 1, merchants, countries)


def feature_vector(
    txn: Transaction, prior: Sequence[CardEvent], merchant: MerchantCounts
) -> NDArray[np.float64]:
    """Features of `txn` in `FEATURE_NAMES` order.

    `prior` holds the card's events strictly before `txn` (sorted, oldest first; anything
    older than 30 days is ignored), `merchant` the merchant counts at `txn.event_time`.
    """
    t = txn.event_time
    windows = _window_values(prior, t)
    values = windows.values
    window_30d = prior[windows.start_30d :]

    amounts = [event.amount for event in window_30d]
    if len(amounts) >= 2:
        mean = sum(amounts) / len(amounts)
        std = math.sqrt(sum((a - mean) ** 2 for a in amounts) / len(amounts))
        zscore = (txn.amount - mean) / max(std, MIN_AMOUNT_STD)
    else:
        zscore = 0.0
    since_last = t - window_30d[-1].event_time if window_30d else NO_RECENT_TRANSACTION_SECONDS
    hour, weekday = local_hour_and_weekday(t, txn.country)

    values += (
        txn.amount,
        zscore,
        since_last,
        _velocity_kmh(txn, window_30d),
        hour,
        weekday,
        *(float(txn.channel == channel) for channel in CHANNELS),
        float(txn.merchant_id not in windows.merchants_30d),
        float(txn.country not in windows.countries_30d),
        merchant.txn_count_1d,
    )
    for txns, frauds in zip(merchant.delayed_txns, merchant.delayed_frauds, strict=True):
        values += (txns, min(1.0, frauds / max(1, txns)))
    return np.asarray(values, dtype=np.float64)
