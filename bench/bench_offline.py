"""The offline feature build: speed, memory, and that it still equals the reference.

    python -m bench.bench_offline --transactions 1000000

Generates a stream (seed 7) into a temporary JSONL file in a child process, so the
generator's memory does not count, then in this process: reads it (parse time), times
`build_features` `--repeats` times (median; each run from the same parsed transactions),
times its two parts alone (card columns for all rows at once, merchant columns one
merchant at a time) and writing and reading the train/evaluate feature cache. Peak RSS is this
process's (reading included) at that point. Then, for the "before" figure, it runs the
row-by-row reference on a second generated stream of `--reference` transactions (same
per-card density: the generator scales cards with transactions) and checks that the
fast build equals it to the bit.
The printed lines are meant to be pasted into bench/RESULTS.md; the machine is shared, so
the load average is printed too.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from fraudstream.features.builder import (
    build_features,
    build_features_row_by_row,
    merchant_columns,
)
from fraudstream.features.card_windows import card_feature_columns
from fraudstream.features.definitions import CARD_FEATURE_NAMES, DEFAULT_LABEL_DELAY_S
from fraudstream.stream.offline.feature_cache import FeatureCache
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.sim.streamfile import read_stream_file, write_stream

_Result = TypeVar("_Result")


def _write_generated(transactions: int, seed: int, path: Path) -> None:
    write_stream(generate_stream(GeneratorConfig(transactions=transactions, seed=seed)), path)


@dataclass(frozen=True)
class Took:
    """Wall and CPU seconds of one call: on a shared machine the CPU time is the steadier."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:.1f} s ({self.cpu:.1f} s CPU)"


def timed(call: Callable[[], _Result]) -> tuple[Took, _Result]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return Took(time.perf_counter() - wall, time.process_time() - cpu), result


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--reference", type=int, default=100_000, help="transactions of the reference run"
    )
    args = parser.parse_args(argv)
    command = f"python -m bench.bench_offline --transactions {args.transactions}"
    with tempfile.TemporaryDirectory() as folder:
        data, small = Path(folder) / "stream.jsonl", Path(folder) / "reference.jsonl"
        for count, path in ((args.transactions, data), (args.reference, small)):
            child = multiprocessing.Process(target=_write_generated, args=(count, args.seed, path))
            child.start()
            child.join()
            if child.exitcode != 0:
                print(f"generating {path} failed (exit code {child.exitcode})", file=sys.stderr)
                return 1
        print(f"### Offline feature build (`{command}`, seed {args.seed})")
        print(f"- {os.cpu_count()} cores; load average before: {_load()}")
        read, (transactions, labels) = timed(lambda: read_stream_file(data))
        n = len(transactions)
        print(f"- reading the file (parse + validate): {read}; peak RSS then {_peak_mb():,.0f} MB")
        # Only the last run's matrix is kept, so one matrix at a time counts in the peak.
        runs = [
            timed(lambda: build_features(transactions, labels))[0] for _ in range(args.repeats - 1)
        ]
        last, matrix = timed(lambda: build_features(transactions, labels))
        runs.append(last)
        wall = statistics.median(run.wall for run in runs)
        cpu = statistics.median(run.cpu for run in runs)
        print(f"- `build_features`, {n:,} transactions: median {wall:.1f} s of {args.repeats} "
              f"({', '.join(str(run) for run in runs)}), {n / wall:,.0f} txn/s; median CPU "
              f"{cpu:.1f} s, {n / cpu:,.0f} txn/s of CPU")  # fmt: skip
        print(f"- peak RSS of this process after the builds: {_peak_mb():,.0f} MB")
        card_part = np.empty((n, len(CARD_FEATURE_NAMES)))
        card, _ = timed(lambda: card_feature_columns(matrix.transactions, card_part))
        merchant, _ = timed(
            lambda: merchant_columns(matrix.transactions, labels, DEFAULT_LABEL_DELAY_S)
        )
        print(f"- of which card columns (all rows at once) {card}, merchant columns (one "
              f"merchant at a time) {merchant}: {merchant.cpu / cpu:.0%} of the build's CPU; "
              "the rest is sorting and assembling")  # fmt: skip
        cache = FeatureCache(Path(folder) / "cache")
        store, path = timed(lambda: cache.store("bench", matrix))
        load, _ = timed(lambda: cache.load("bench"))
        print(f"- feature cache: written in {store} ({path.stat().st_size / 1e6:,.0f} MB), "
              f"read back in {load}")  # fmt: skip
        print(f"- peak RSS after timing the parts and the cache (copies of the matrix): "
              f"{_peak_mb():,.0f} MB")  # fmt: skip
        print(f"- load average after: {_load()}")
        return _compare_with_reference(small)


def _compare_with_reference(path: Path) -> int:
    """Time the row-by-row reference and the fast build on `path`; 1 unless bit-identical."""
    transactions, labels = read_stream_file(path)
    n = len(transactions)
    reference_took, reference = timed(lambda: build_features_row_by_row(transactions, labels))
    fast_took, fast = timed(lambda: build_features(transactions, labels))
    identical = fast.features.tobytes() == reference.features.tobytes()
    print(f"- {n:,} transactions: row-by-row reference {reference_took}, "
          f"{n / reference_took.cpu:,.0f} txn/s of CPU; `build_features` {fast_took}, "
          f"{n / fast_took.cpu:,.0f} txn/s of CPU: {reference_took.cpu / fast_took.cpu:.1f}x "
          f"less CPU; bit-identical: {identical}; load average after: {_load()}")  # fmt: skip
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
