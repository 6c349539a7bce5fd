"""Latency percentiles from raw measurements: the one method every report uses.

The run report (demo), the load test and the demo's progress line all compute p50/p95/p99
from the latencies they measured, one value per decision, with `latency_percentiles`:
NumPy's default ``linear`` method (Hyndman & Fan type 7), the one spreadsheets and
``pandas.quantile`` use. For n sorted values x[0..n-1], percentile q lies at rank
h = (n - 1) q / 100 and is x[floor(h)] + (h - floor(h)) (x[floor(h) + 1] - x[floor(h)]):
it interpolates between the two observations around that rank, so with few values a p99
is not necessarily an observed latency, and it never lies outside the observed range.

This is not the figure Grafana and the alert rules show: those are histogram estimates,
computed from the workers' Prometheus buckets (`histogram_quantile`, reproduced offline by
`stream.worker.metrics.quantiles_from_exposition`) by interpolating inside the bucket that
holds the rank, so they can differ from these by up to that bucket's width.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The percentiles a latency summary reports; "max" is the 100th.
DEFAULT_PERCENTILES = ("p50", "p95", "p99", "max")
#: Figures are rounded to the microsecond: finer digits are clock noise.
DECIMALS = 3


def _rank(name: str) -> float:
    if name == "max":
        return 100.0
    try:
        rank = float(name.removeprefix("p")) if name.startswith("p") else float("nan")
    except ValueError:
        rank = float("nan")
    if not 0.0 <= rank <= 100.0:
        raise ValueError(f"percentile names are 'p0'..'p100' or 'max', got {name!r}")
    return rank


def latency_percentiles(
    values_ms: Sequence[float], names: Sequence[str] = DEFAULT_PERCENTILES
) -> dict[str, float | None]:
    """Each named percentile of `values_ms` (ms), rounded to 3 decimals; None when empty.

    `names` are "p<q>" for 0 <= q <= 100 (e.g. "p99", "p99.9") or "max". The method is
    NumPy's ``linear`` (see the module docstring). Raises ValueError for another name.
    """
    ranks = [_rank(name) for name in names]
    if len(values_ms) == 0:
        return dict.fromkeys(names)
    found = np.percentile(np.asarray(values_ms, dtype=np.float64), ranks, method="linear")
    return {name: round(float(value), DECIMALS) for name, value in zip(names, found, strict=True)}


#: Width of the windows in which long runs are checked for latency growth.
WINDOW_S = 10.0


def p99_by_window(
    timed_ms: Sequence[tuple[float, float]], window_s: float = WINDOW_S
) -> list[float | None]:
    """p99 of the latencies in each `window_s` window, oldest first (None for an empty one).

    `timed_ms` holds (when the transaction was sent, epoch s; its latency ms); windows
    start at the first send. A flat run has a flat list; growth shows as a rising one.
    """
    if not timed_ms:
        return []
    start = min(sent for sent, _ in timed_ms)
    windows: list[list[float]] = []
    for sent, latency in timed_ms:
        index = int((sent - start) // window_s)
        windows.extend([] for _ in range(index + 1 - len(windows)))
        windows[index].append(latency)
    return [latency_percentiles(window, ("p99",))["p99"] for window in windows]
