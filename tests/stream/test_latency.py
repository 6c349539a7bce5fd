"""The one percentile function of the reports, on figures worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudstream.stream.latency import latency_percentiles, p99_by_window


def test_percentiles_interpolate_linearly_between_neighbouring_measurements() -> None:
    # 1..11 ms: p50 sits on rank 5 (6 ms); p95 at rank 9.5, halfway 10..11; p99 at rank 9.9.
    values = [float(ms) for ms in range(11, 0, -1)]  # order does not matter
    assert latency_percentiles(values) == {"p50": 6.0, "p95": 10.5, "p99": 10.9, "max": 11.0}


def test_few_values_give_a_p99_between_the_two_largest() -> None:
    # Ranks 0..2; p99 at rank 1.98: 8 + 0.98 * (90 - 8) = 88.36, not an observed value.
    assert latency_percentiles([5.0, 8.0, 90.0], ("p50", "p99")) == {"p50": 8.0, "p99": 88.36}
    # Two values: the median is their mean.
    assert latency_percentiles([10.0, 20.0], ("p50",)) == {"p50": 15.0}


def test_figures_are_rounded_to_the_microsecond() -> None:
    assert latency_percentiles([0.0, 1.0 / 3.0], ("p50",)) == {"p50": 0.167}


def test_no_measurements_give_none_not_zero() -> None:
    assert latency_percentiles([]) == {"p50": None, "p95": None, "p99": None, "max": None}
    assert latency_percentiles([], ("p99",)) == {"p99": None}


@pytest.mark.parametrize("name", ["median", "p101", "p-1", "99"])
def test_an_unknown_percentile_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="percentile names"):
        latency_percentiles([1.0], (name,))


@given(st.lists(st.floats(0.0, 1e5, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_within_the_observed_range(values: list[float]) -> None:
    figures = latency_percentiles(values, ("p0", "p50", "p95", "p99", "max"))
    ordered = [figures[name] for name in ("p0", "p50", "p95", "p99", "max")]
    assert ordered == sorted(ordered)
    assert ordered[0] == round(min(values), 3) and ordered[-1] == round(max(values), 3)
    assert figures["p50"] == round(float(np.median(values)), 3)


def test_p99_by_window_buckets_by_send_time_oldest_first() -> None:
    timed = [(100.0 + second, 10.0) for second in range(10)]  # window 0: flat 10 ms
    timed += [(112.0, 50.0)]  # window 1: one slow decision
    timed += [(135.0, 20.0)]  # window 2 empty, window 3 one decision
    assert p99_by_window(timed) == [10.0, 50.0, None, 20.0]
    assert p99_by_window([]) == []
