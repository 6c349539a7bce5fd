"""The offline path, evaluation protocols: which transactions a test period may hold.

Two rules of the Fraud Detection Handbook's protocol (Le Borgne et al., `get_train_test_set`
and `prequentialSplit` in its shared functions; docs/evaluation.md) keep a test honest:

- Label delay: a fraud is known only some days after it happened, so a model deployed at
  time t has learnt from transactions up to one delay before t. A test period starts one
  delay after the last transaction training or validation saw (at the next UTC midnight,
  so that every test day is a whole day for the per-day card metrics).
- Known-compromised cards: a card with a fraud that happened more than one delay before a
  test day began is known compromised that day and blocked; its transactions are not the
  model's to catch, and keeping them would credit it with easy frauds.

Pure: epoch seconds and arrays in, periods and masks out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fraudstream.models.metrics import SECONDS_PER_DAY


class ProtocolError(ValueError):
    """The stream is too short for the protocol asked of it; the message says what to give."""


def day_start(event_time: float) -> float:
    """The UTC midnight at or before `event_time`."""
    return math.floor(event_time / SECONDS_PER_DAY) * SECONDS_PER_DAY


@dataclass(frozen=True)
class HeldOutPeriod:
    """Epoch seconds: the model was fitted on transactions before `fit_end`; the test holds
    the whole UTC days from `start` (at least one label delay after `fit_end`) to `end`,
    exclusive."""

    fit_end: float
    start: float
    end: float

    @classmethod
    def after(cls, fit_end: float, delay_days: float, last_event: float) -> HeldOutPeriod:
        """The single split's test: from the first midnight one delay after `fit_end` to the
        end of the day of `last_event`."""
        start = math.ceil(fit_end / SECONDS_PER_DAY + delay_days) * SECONDS_PER_DAY
        return cls(fit_end=fit_end, start=start, end=day_start(last_event) + SECONDS_PER_DAY)

    def holds(self, event_times: NDArray[np.float64]) -> NDArray[np.bool_]:
        return (event_times >= self.start) & (event_times < self.end)


def prequential_periods(
    first_event: float, last_event: float, folds: int, fold_days: int, delay_days: float
) -> list[HeldOutPeriod]:
    """`folds` test periods of `fold_days` whole UTC days, back to back, oldest first, the
    last one ending with the day of `last_event`; each is fitted on what lies before one
    delay ahead of its start.

    Raises `ProtocolError` when the oldest fold leaves no time to fit on.
    """
    if folds < 1 or fold_days < 1:
        raise ProtocolError(f"need at least one fold of one day, got {folds} of {fold_days}")
    end = day_start(last_event) + SECONDS_PER_DAY
    fold_s = fold_days * SECONDS_PER_DAY
    periods = [
        HeldOutPeriod(fit_end=start - delay_days * SECONDS_PER_DAY, start=start, end=start + fold_s)
        for start in (end - (folds - fold) * fold_s for fold in range(folds))
    ]
    if periods[0].fit_end <= first_event:
        span_days = (last_event - first_event) / SECONDS_PER_DAY
        raise ProtocolError(
            f"the stream spans {span_days:.1f} days: {folds} folds of {fold_days} days after "
            f"a label delay of {delay_days:g} days leave the oldest fold nothing to train on; "
            "give fewer --folds, a smaller --fold-days or a longer stream"
        )
    return periods


def known_compromised(
    card_ids: Sequence[str],
    event_times: NDArray[np.float64],
    is_fraud: NDArray[np.float64],
    delay_days: float,
) -> NDArray[np.bool_]:
    """True for each transaction whose card had a fraud before its day's start less one delay.

    A fraud on day d - delay - 1 is known on day d, one on day d - delay is not: the
    Handbook's `get_train_test_set` adds, for each test day, the frauds of the day one
    delay plus one earlier to the known set. `is_fraud` is 1, 0 or NaN (no label).
    """
    first_fraud: dict[str, float] = {}
    for card, time, fraud in zip(card_ids, event_times, is_fraud, strict=True):
        if fraud == 1:
            first_fraud[card] = min(first_fraud.get(card, math.inf), float(time))
    delay_s = delay_days * SECONDS_PER_DAY
    return np.array(
        [
            first_fraud.get(card, math.inf) < day_start(float(time)) - delay_s
            for card, time in zip(card_ids, event_times, strict=True)
        ],
        dtype=bool,
    )
