"""Where test periods lie and which transactions they keep (stream/offline/protocol.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.stream.offline.protocol import (
    HeldOutPeriod,
    ProtocolError,
    known_compromised,
    prequential_periods,
)

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
NAN = float("nan")


def test_the_test_period_starts_at_the_first_midnight_one_delay_after_fitting() -> None:
    fit_end = T0 + 10.5 * DAY
    period = HeldOutPeriod.after(fit_end, delay_days=7, last_event=T0 + 30.2 * DAY)
    assert (period.start, period.end) == (T0 + 18 * DAY, T0 + 31 * DAY)
    times = np.array([T0 + 10.6 * DAY, T0 + 17.5 * DAY, T0 + 17.99 * DAY, T0 + 18 * DAY])
    # The first three lie in the gap: their labels were not all known when the model went live.
    assert period.holds(times).tolist() == [False, False, False, True]


def test_no_delay_starts_the_test_at_the_next_midnight() -> None:
    assert HeldOutPeriod.after(T0 + 3.2 * DAY, 0, T0 + 9 * DAY).start == T0 + 4 * DAY


def test_a_fraud_is_known_on_the_day_one_delay_and_one_day_later() -> None:
    # Card x: a fraud on day 0. With a 7-day delay the Handbook adds it to the known set on
    # day 8 (day 0 = test day - delay - 1), not on day 7.
    cards = ["x", "x", "x", "y", "z"]
    times = np.array([T0 + 0.5 * DAY, T0 + 7.9 * DAY, T0 + 8.1 * DAY, T0 + 9 * DAY, T0 + 9 * DAY])
    is_fraud = np.array([1.0, 0.0, 0.0, 0.0, NAN])
    known = known_compromised(cards, times, is_fraud, delay_days=7)
    assert known.tolist() == [False, False, True, False, False]


def test_only_a_card_with_an_earlier_fraud_is_known() -> None:
    # Card w's fraud comes on day 20: its day-9 transaction is not known compromised, nor is
    # a card whose only transaction is unlabelled, nor a card with legitimate labels only.
    cards = ["w", "w", "v", "u"]
    times = np.array([T0 + 9 * DAY, T0 + 20 * DAY, T0 + 30 * DAY, T0 + 30 * DAY])
    is_fraud = np.array([0.0, 1.0, NAN, 0.0])
    assert known_compromised(cards, times, is_fraud, delay_days=2).tolist() == [False] * 4
    cards.append("w")
    times = np.append(times, T0 + 30 * DAY)
    is_fraud = np.append(is_fraud, 0.0)
    assert known_compromised(cards, times, is_fraud, delay_days=2).tolist()[-1] is True


def test_prequential_folds_are_back_to_back_at_the_end_each_after_a_delay() -> None:
    periods = prequential_periods(T0, T0 + 59.7 * DAY, folds=3, fold_days=7, delay_days=7)
    assert [(p.start - T0) / DAY for p in periods] == [39, 46, 53]
    assert [(p.end - T0) / DAY for p in periods] == [46, 53, 60]
    assert [(p.start - p.fit_end) / DAY for p in periods] == [7, 7, 7]


def test_too_many_folds_for_the_stream_say_what_to_change() -> None:
    with pytest.raises(ProtocolError, match="give fewer --folds"):
        prequential_periods(T0, T0 + 20 * DAY, folds=2, fold_days=7, delay_days=7)
