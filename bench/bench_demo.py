"""`make demo`'s run, `--runs` times: its latency, timeouts and CPU, for bench/RESULTS.md.

Each run is the demo with its defaults (50,000 transactions at 500/s, one worker, fresh
embedded services) into `--out`/run-N; the registry is trained by the first run if empty,
as `make demo` does. Prints one Markdown row per run and the medians. Target (issue 9):
p99 <= 100 ms and 0 timeout fallbacks in every run.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.cpu_usage import ROLES
from fraudstream.stream.tools.demo import DemoOptions, run_demo


def _row(name: str, summary: dict[str, Any]) -> str:
    e2e, cpu = summary["e2e_latency_ms"], summary["cpu_s_per_1000_txn"]
    timeouts = sum(summary["fallbacks"].values())
    return (
        f"| {name} | {summary['decided']:,} | {summary['throughput_tps']:,.0f} "
        f"| {e2e['p50']:,.1f} | {e2e['p95']:,.1f} | {e2e['p99']:,.1f} | {timeouts} "
        f"| {summary['stand_in']} | "
        + " | ".join("n/a" if cpu[r] is None else f"{cpu[r]:.3f}" for r in ROLES)
        + " |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/demo"))
    args = parser.parse_args()
    settings = Settings.from_env()
    summaries = [
        run_demo(settings, DemoOptions(out=args.out / f"run-{run + 1}"))
        for run in range(args.runs)
    ]
    print("| run | decided | decisions/s | p50 ms | p95 ms | p99 ms | fallbacks | stand-in | "
          + " | ".join(f"{role} CPU s/1k" for role in ROLES) + " |")  # fmt: skip
    print("|---|" + "---:|" * (7 + len(ROLES)))
    for index, summary in enumerate(summaries, 1):
        print(_row(str(index), summary))
    p99 = statistics.median(s["e2e_latency_ms"]["p99"] for s in summaries)
    within = sum(
        s["e2e_latency_ms"]["p99"] <= 100.0 and not s["fallbacks"] for s in summaries
    )
    print(f"\n- median p99 {p99:,.1f} ms; p99 <= 100 ms with 0 fallbacks in {within} of "
          f"{len(summaries)} runs")  # fmt: skip


if __name__ == "__main__":
    main()
