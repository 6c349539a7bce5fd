"""The merchant features of a whole history at once, with NumPy, equal to the per-row ones.

`features/builder.py` replays a stream row by row through `PointInTimeState`; this module
gives the same `MERCHANT_FEATURE_NAMES` columns, to the bit, for every row of a history in
event order, one merchant at a time with `searchsorted` (about 20 times faster at 1 M
transactions, where the per-row merchant windows took 72 % of the build).

Why it equals the per-row path, row r of a merchant at time t:
- a merchant's history holds exactly its earlier rows (event order is `(event_time,
  txn_id)` order), so the 1-day count is the row's rank among the merchant's rows minus
  the rows before `t - 1 day`;
- a delayed window `[t - D - w, t - D)` ends at or before t, so only earlier rows fall in
  it; its bounds are computed with the same floating-point operations as
  `PointInTimeState.merchant_counts` (`end = t - D`, `start = end - w`);
- a fraud (its transaction's time e, its label's time l) counts for row r when
  `start_r <= e < end_r` and `l < t`: with the rows in time order, `start`, `end` and `t`
  never decrease, so those rows form one run, added to a difference array;
- the first label of a transaction stands (the earliest to arrive), as in
  `MerchantHistory.add_fraud_label`; nothing is evicted inside a window, because a
  merchant keeps D + 31 days.
A history in which a `txn_id` repeats is not handled here (the per-row path ignores the
repeat): the caller replays it row by row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.definitions import (
    MERCHANT_COUNT_WINDOW_SECONDS,
    MERCHANT_FEATURE_NAMES,
    MERCHANT_RISK_WINDOW_SECONDS,
)
from fraudstream.features.transaction import Label, Transaction


def first_fraud_labels(labels: Sequence[Label]) -> dict[str, float]:
    """The label time of each fraud-labelled transaction: its earliest label."""
    first: dict[str, float] = {}
    for label in labels:
        if label.is_fraud:
            previous = first.get(label.txn_id)
            if previous is None or label.label_time < previous:
                first[label.txn_id] = label.label_time
    return first


def merchant_feature_columns(
    ordered: Sequence[Transaction], labels: Sequence[Label], label_delay_s: float
) -> NDArray[np.float64]:
    """`MERCHANT_FEATURE_NAMES` for every row of `ordered` (event order, `txn_id`s unique)."""
    n = len(ordered)
    columns = np.zeros((n, len(MERCHANT_FEATURE_NAMES)), dtype=np.float64)
    times = np.fromiter((txn.event_time for txn in ordered), np.float64, n)
    label_time_of = first_fraud_labels(labels)  # labels of other transactions match no row
    rows_of: dict[str, list[int]] = {}
    frauds_of: dict[str, list[int]] = {}
    for row, txn in enumerate(ordered):
        rows_of.setdefault(txn.merchant_id, []).append(row)
        if txn.txn_id in label_time_of:
            frauds_of.setdefault(txn.merchant_id, []).append(row)
    for merchant_id, merchant_rows in rows_of.items():
        rows = np.asarray(merchant_rows, dtype=np.int64)
        t = times[rows]
        columns[rows, 0] = np.arange(len(rows)) - np.searchsorted(
            t, t - MERCHANT_COUNT_WINDOW_SECONDS, "left"
        )
        fraud_rows = frauds_of.get(merchant_id, [])
        fraud_times = times[fraud_rows]
        label_times = np.array([label_time_of[ordered[r].txn_id] for r in fraud_rows])
        end = t - label_delay_s
        known_from = np.searchsorted(t, label_times, "right")  # first row with t > l
        inside_from = np.maximum(np.searchsorted(end, fraud_times, "right"), known_from)
        for position, length in enumerate(MERCHANT_RISK_WINDOW_SECONDS):
            start = end - length
            txns = np.searchsorted(t, end, "left") - np.searchsorted(t, start, "left")
            change = np.zeros(len(rows) + 1, dtype=np.int64)
            inside_to = np.searchsorted(start, fraud_times, "right")
            runs = inside_from < inside_to
            np.add.at(change, inside_from[runs], 1)
            np.add.at(change, inside_to[runs], -1)
            frauds = np.cumsum(change[:-1])
            columns[rows, 1 + 2 * position] = txns
            columns[rows, 2 + 2 * position] = np.minimum(1.0, frauds / np.maximum(1, txns))
    return columns
