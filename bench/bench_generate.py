"""Benchmark the synthetic stream: generate+write speed, fraud mix, and how hard it is.

    python -m bench.bench_generate --transactions 1000000

Times `generate_stream` + `write_stream` (JSONL) several times and prints the median, then
describes the last stream: realised fraud rate, transactions per scenario, and the ROC AUC
of a few simple per-transaction features computed here with NumPy (not `features/`, so the
difficulty of the data is measured independently of the feature code). A best single
feature far above ~0.85 would mean the frauds are too easy to be a fair test.
The printed lines are meant to be pasted into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from fraudstream.features.geo import COUNTRIES, EARTH_RADIUS_KM
from fraudstream.stream.sim.generator import (
    SCENARIOS,
    GeneratorConfig,
    SyntheticStream,
    generate_stream,
)
from fraudstream.stream.sim.streamfile import write_stream

#: Seconds since the previous transaction given to a card's first one.
FIRST_GAP_S = 30 * 86_400.0


def time_generate_and_write(
    config: GeneratorConfig, repeats: int
) -> tuple[list[float], SyntheticStream]:
    """Seconds per generate+write run, and the last stream generated."""
    seconds: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            started = time.perf_counter()
            stream = generate_stream(config)
            write_stream(stream, Path(folder) / "transactions.jsonl")
            seconds.append(time.perf_counter() - started)
    return seconds, stream


def _haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    a = (
        np.sin((phi2 - phi1) / 2) ** 2
        + np.cos(phi1) * np.cos(phi2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    )
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def _first_in_card(card: np.ndarray, key: np.ndarray) -> np.ndarray:
    """True where (card, key) appears for the first time (rows sorted by card, then time)."""
    pair = card.astype(np.int64) * (int(key.max()) + 1) + key
    _, first = np.unique(pair, return_index=True)
    flags = np.zeros(len(card), dtype=bool)
    flags[first] = True
    return flags


def simple_features(stream: SyntheticStream) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-transaction features from each card's own past, and the fraud labels."""
    txns = stream.transactions
    _, card = np.unique([t.card_id for t in txns], return_inverse=True)
    _, merchant = np.unique([t.merchant_id for t in txns], return_inverse=True)
    countries, country = np.unique([t.country for t in txns], return_inverse=True)
    event_time = np.array([t.event_time for t in txns])
    amount = np.array([t.amount for t in txns])
    lat = np.array([t.lat for t in txns], dtype=float)
    lon = np.array([t.lon for t in txns], dtype=float)
    fraud = np.array([label.is_fraud for label in stream.labels])

    order = np.lexsort((event_time, card))
    card, merchant, country = card[order], merchant[order], country[order]
    event_time, amount, lat, lon, fraud = (a[order] for a in (event_time, amount, lat, lon, fraud))
    same_card = np.concatenate([[False], card[1:] == card[:-1]])
    gap = np.where(same_card, np.diff(event_time, prepend=event_time[0]), FIRST_GAP_S)
    km = np.where(same_card, _haversine_km(np.roll(lat, 1), np.roll(lon, 1), lat, lon), 0.0)

    # Mean and standard deviation of the card's earlier amounts (expanding window).
    start = np.flatnonzero(~same_card)
    group_start = np.repeat(start, np.diff(np.append(start, len(card))))
    seen = np.arange(len(card)) - group_start
    csum = np.cumsum(amount) - amount
    csq = np.cumsum(amount**2) - amount**2
    prior_sum = csum - csum[group_start]
    prior_sq = csq - csq[group_start]
    mean = np.divide(prior_sum, seen, out=np.zeros(len(card)), where=seen > 0)
    var = np.divide(prior_sq, seen, out=np.zeros(len(card)), where=seen > 0) - mean**2
    zscore = np.where(seen > 1, (amount - mean) / np.sqrt(np.maximum(var, 1.0)), 0.0)

    # Earlier transactions of the same card within the last hour.
    offset = card * (event_time.max() - event_time.min() + 10 * 3600.0)
    clock = offset + event_time - event_time.min()
    count_1h = np.arange(len(card)) - np.searchsorted(clock, clock - 3600.0, side="left")

    utc_offset = np.array([COUNTRIES[c].utc_offset_hours for c in countries]) * 3600.0
    local_hour = ((event_time + utc_offset[country]) // 3600) % 24
    features = {
        "amount": amount,
        "amount_zscore_vs_card_history": zscore,
        "night_local_0_6h": (local_hour < 6).astype(float),
        "seconds_since_previous": gap,
        "km_from_previous": km,
        "km_per_h_from_previous": km / np.maximum(gap, 60.0) * 3600.0,
        "count_1h_before": count_1h.astype(float),
        "new_merchant_for_card": _first_in_card(card, merchant).astype(float),
        "new_country_for_card": _first_in_card(card, country).astype(float),
    }
    return features, fraud


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fraud-rate", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    config = GeneratorConfig(
        transactions=args.transactions, seed=args.seed, fraud_rate=args.fraud_rate
    )
    seconds, stream = time_generate_and_write(config, args.repeats)
    median = statistics.median(seconds)
    n = len(stream.transactions)
    command = f"python -m bench.bench_generate --transactions {args.transactions}"
    print(f"### Synthetic stream (`{command}`, seed {args.seed})")
    print(
        f"- generate + write JSONL, {n:,} transactions: median {median:.2f} s of "
        f"{args.repeats} ({', '.join(f'{s:.2f}' for s in seconds)}), {n / median:,.0f} txn/s"
    )
    scenarios = Counter(label.scenario for label in stream.labels)
    frauds = n - scenarios["legit"]
    print(
        f"- realised fraud rate: {frauds / n:.3%} "
        f"({frauds:,} frauds, target {config.fraud_rate:.2%})"
    )
    print("- per scenario: " + ", ".join(f"{s} {scenarios[s]:,}" for s in (*SCENARIOS, "legit")))

    features, fraud = simple_features(stream)
    print("\n| simple feature | ROC AUC | fraud side |\n|---|---|---|")
    aucs = {}
    for name, values in features.items():
        auc = float(roc_auc_score(fraud, values))
        aucs[name] = max(auc, 1.0 - auc)
        print(f"| {name} | {aucs[name]:.3f} | {'high' if auc >= 0.5 else 'low'} |")
    best = max(aucs, key=aucs.__getitem__)
    print(f"\n- best single feature: {best}, AUC {aucs[best]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
