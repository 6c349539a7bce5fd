"""The latency-budget targets of issue 4, measured with `fraudstream loadtest`.

Runs (each on embedded services started for the run):
- the ramp with the noop and passthrough baselines, `--runs` times, for medians;
- one steady 2,000 TPS step (the p50/p99 target);
- the ramp with two workers (how throughput scales on two shared cores).
Prints Markdown for bench/RESULTS.md; every run's JSON/Markdown/plots go to `--out`.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.loadtest import LoadTestOptions, run_loadtest
from fraudstream.stream.tools.loadtest_report import write_loadtest_report


def _run(settings: Settings, options: LoadTestOptions) -> dict[str, Any]:
    result = run_loadtest(settings, options)
    assert options.out is not None
    write_loadtest_report(result, options.out)
    return result


def _median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, pattern: str = "{:,.0f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def ramp_table(results: list[dict[str, Any]]) -> list[str]:
    """Median over runs of each step's p50/p99 and of the sustainable rates."""
    lines = [
        "| target TPS | achieved | p50 ms | p99 ms | lag at end |",
        "|---:|---:|---:|---:|---:|",
    ]
    for index, step in enumerate(results[0]["steps"]):
        runs = [result["steps"][index] for result in results]
        lines.append(
            f"| {step['tps_target']:,.0f} "
            f"| {_fmt(_median([s['tps_achieved'] for s in runs]))} "
            f"| {_fmt(_median([s['e2e_latency_ms']['p50'] for s in runs]), '{:,.1f}')} "
            f"| {_fmt(_median([s['e2e_latency_ms']['p99'] for s in runs]), '{:,.1f}')} "
            f"| {_fmt(_median([s['lag_end'] for s in runs]))} |"
        )
    sustainable = _median([r["max_sustainable_tps"] for r in results])
    each_run = [r["max_sustainable_tps"] for r in results]
    lines += ["", f"- pipeline max sustainable TPS (p99 <= 100 ms), median of {len(results)}: "
              f"{_fmt(sustainable)} (runs: {each_run})"]  # fmt: skip
    for name in results[0].get("baselines", {}):
        rates = [r["baselines"][name]["max_sustainable_tps"] for r in results]
        ratios = [r["ratios"].get(name) for r in results]
        lines.append(
            f"- {name}: max sustainable {_fmt(_median(rates))} (runs {rates}); pipeline/{name} "
            f"ratio {_fmt(_median(ratios), '{:.2f}')}"
        )
    raw = _median([r.get("raw_aiokafka_consume_tps") for r in results])
    lines.append(f"- raw aiokafka consume rate: {_fmt(raw)} records/s")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ramp", default="500:250:2000")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--steady-duration", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("bench/loadtest"))
    args = parser.parse_args()
    settings = Settings.from_env()
    ramp = LoadTestOptions(ramp=args.ramp, duration_s=args.duration,
                           compare_with=("noop", "passthrough"))  # fmt: skip
    results = [
        _run(settings, replace(ramp, out=args.out / f"ramp-run{run + 1}.json", seed=2026 + run))
        for run in range(args.runs)
    ]
    steady = _run(settings, LoadTestOptions(tps=2000, duration_s=args.steady_duration,
                                            raw_consume_records=0,
                                            out=args.out / "steady-2000.json"))  # fmt: skip
    two = _run(settings, replace(ramp, workers=2, compare_with=(), raw_consume_records=0,
                                 out=args.out / "ramp-2-workers.json"))  # fmt: skip

    print(f"### Ramp {args.ramp}, {args.duration:g} s steps, 1 worker, {args.runs} runs\n")
    print("\n".join(ramp_table(results)))
    step = steady["steps"][0]
    print(f"\n### Steady 2,000 TPS for {args.steady_duration:g} s, 1 worker\n")
    latency = step["e2e_latency_ms"]
    print(f"- achieved {step['tps_achieved']:,.0f}/s, p50 {_fmt(latency['p50'], '{:,.1f}')} ms, "
          f"p99 {_fmt(latency['p99'], '{:,.1f}')} ms, lag at end {step['lag_end']:,}")  # fmt: skip
    print(f"- stage means (ms per decision's batch): {step['stages_ms']}")
    print(f"\n### Ramp {args.ramp} with 2 workers\n")
    print("\n".join(ramp_table([two])))


if __name__ == "__main__":
    main()
