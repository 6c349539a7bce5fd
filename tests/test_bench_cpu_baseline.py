"""The CPU-target bench's arithmetic and report: medians per arm, the ratio, the wake-up reading."""

from __future__ import annotations

from typing import Any

import pytest

from bench.bench_cpu_baseline import comparison, describe_wakeup, markdown


def step(
    worker: float, broker: float = 0.5, p50: float = 30.0, p99: float = 60.0
) -> dict[str, Any]:
    return {
        "cpu_s_per_1000_txn": {"worker": worker, "broker": broker},
        "e2e_latency_ms": {"p50": p50, "p99": p99},
    }


def test_the_ratio_is_this_checkouts_median_over_the_baselines() -> None:
    baseline = [step(0.90), step(1.00), step(0.95)]
    current = [step(0.60), step(0.40), step(0.50)]
    result = comparison(baseline, current)
    assert result["baseline_median"] == 0.95
    assert result["current_median"] == 0.50
    assert result["ratio"] == pytest.approx(0.50 / 0.95)


def test_the_report_has_one_row_per_pair_and_the_ratio() -> None:
    baseline, current = [step(0.9, p50=120.0), step(1.0)], [step(0.45), step(0.55, broker=0.4)]
    lines = markdown(("f77395b", "this checkout"), baseline, current,
                     comparison(baseline, current))  # fmt: skip
    rows = [line for line in lines if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert rows[0].startswith("| 1 | 0.900 | 0.450 | 0.500 | 0.500 | 120.0 / 60.0 | 30.0 / 60.0 |")
    assert rows[1].startswith("| 2 | 1.000 | 0.550 | 0.500 | 0.400 |")
    assert lines[-1].endswith("**0.53 x** (the target is 0.5 x).")


def test_unequal_numbers_of_runs_are_refused() -> None:
    with pytest.raises(ValueError):
        markdown(("a", "b"), [step(1.0), step(1.0)], [step(0.5)], {"baseline_median": 1.0,
                 "current_median": 0.5, "ratio": 0.5})  # fmt: skip


def test_the_wake_up_reading_names_each_fetch_wait() -> None:
    line = describe_wakeup("before the pairs", {0: 148.4, 10: 1315.0})
    assert line == "before the pairs: 148 us at a 0 ms wait, 1,315 us at a 10 ms wait"
