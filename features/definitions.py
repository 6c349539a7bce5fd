"""The feature vector of DESIGN.md §4: one definition for training and for serving.

`feature_vector` is the only place a feature is defined. The online stores call it with
the card's earlier events and the merchant's counts (or `feature_vector_from` with a
cached card's running window aggregates, features/window_pass.py, equal to the bit), and
so does the offline builder's per-row reference (features/builder.py `PointInTimeState`),
so a parity test can compare them row by row. The offline builder's fast path computes
the card part for a whole history at once (features/card_windows.py) and is tested equal
to `card_features` to the bit; that is why every sum here is exactly rounded
(`math.fsum`), never order-dependent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.geo import SECONDS_PER_DAY, haversine_km, local_hour_and_weekday
from fraudstream.features.transaction import CHANNELS, Transaction
from fraudstream.features.window_pass import WindowPass, window_pass
from fraudstream.features.windows import WINDOWS, CardEvent

MERCHANT_COUNT_WINDOW_SECONDS = WINDOWS["1d"]
#: Windows of the merchant risk features, shortest first: each ends a label delay before
#: the transaction, so a fraud of the window has had that long to be reported.
MERCHANT_RISK_WINDOWS: tuple[str, ...] = ("1d", "7d", "30d")
#: Their lengths in seconds, in the same order.
MERCHANT_RISK_WINDOW_SECONDS: tuple[float, ...] = tuple(WINDOWS[w] for w in MERCHANT_RISK_WINDOWS)
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

#: Bump when a feature's arithmetic changes without its name changing: cached feature
#: matrices (stream/offline/feature_cache.py) are keyed by it and by the names.
FEATURE_DEFINITION_VERSION = 2

#: What the card's own recent history says (features/card_windows.py computes these for a
#: whole history at once, bit-identical to `card_features`).
CARD_FEATURE_NAMES: tuple[str, ...] = (
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
)
#: What the merchant's history says (`merchant_features`).
MERCHANT_FEATURE_NAMES: tuple[str, ...] = (
    "merchant_txn_count_1d",
    *(
        f"merchant_{figure}_{window}_delayed"
        for window in MERCHANT_RISK_WINDOWS
        for figure in ("txn_count", "fraud_share")
    ),
)
FEATURE_NAMES: tuple[str, ...] = (*CARD_FEATURE_NAMES, *MERCHANT_FEATURE_NAMES)

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


def amount_zscore(amount: float, count: int, total: float, sum_of_squares: float) -> float:
    """How many 30-day standard deviations `amount` lies from the card's 30-day mean.

    From the window's count, exactly rounded total and exactly rounded sum of squared
    amounts, so the value does not depend on the order of the events; 0 below two
    events, and the deviation is floored at `MIN_AMOUNT_STD`.
    """
    if count < 2:
        return 0.0
    mean = total / count
    variance = max(0.0, sum_of_squares / count - mean * mean)
    return (amount - mean) / max(math.sqrt(variance), MIN_AMOUNT_STD)


def card_features(txn: Transaction, prior: Sequence[CardEvent]) -> list[float]:
    """The `CARD_FEATURE_NAMES` of `txn`.

    `prior` holds the card's events strictly before `txn` (sorted, oldest first; anything
    older than 30 days is ignored).
    """
    return card_features_from(txn, window_pass(prior, txn.event_time))


def card_features_from(txn: Transaction, windows: WindowPass) -> list[float]:
    """The `CARD_FEATURE_NAMES` of `txn` from its card's window aggregates at its time."""
    t = txn.event_time
    values = windows.values
    window_30d = windows.events_30d
    since_last = t - window_30d[-1].event_time if window_30d else NO_RECENT_TRANSACTION_SECONDS
    hour, weekday = local_hour_and_weekday(t, txn.country)
    values += (
        txn.amount,
        amount_zscore(
            txn.amount, windows.count_30d, windows.total_30d, windows.sum_of_squares_30d
        ),  # fmt: skip
        since_last,
        _velocity_kmh(txn, window_30d),
        hour,
        weekday,
        *(float(txn.channel == channel) for channel in CHANNELS),
        float(txn.merchant_id not in windows.merchants_30d),
        float(txn.country not in windows.countries_30d),
    )
    return values


def merchant_features(merchant: MerchantCounts) -> tuple[float, ...]:
    """The `MERCHANT_FEATURE_NAMES` from the merchant counts at the transaction's time."""
    values: tuple[float, ...] = (merchant.txn_count_1d,)
    for txns, frauds in zip(merchant.delayed_txns, merchant.delayed_frauds, strict=True):
        values += (txns, min(1.0, frauds / max(1, txns)))
    return values


def feature_vector(
    txn: Transaction, prior: Sequence[CardEvent], merchant: MerchantCounts
) -> NDArray[np.float64]:
    """Features of `txn` in `FEATURE_NAMES` order.

    `prior` holds the card's events strictly before `txn` (sorted, oldest first; anything
    older than 30 days is ignored), `merchant` the merchant counts at `txn.event_time`.
    """
    return feature_vector_from(txn, window_pass(prior, txn.event_time), merchant)


def feature_vector_from(
    txn: Transaction, windows: WindowPass, merchant: MerchantCounts
) -> NDArray[np.float64]:
    """`feature_vector` from the card's window aggregates at `txn`'s time."""
    return np.asarray(
        [*card_features_from(txn, windows), *merchant_features(merchant)], dtype=np.float64
    )
