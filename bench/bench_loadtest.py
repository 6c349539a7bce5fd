"""The latency-budget targets of issue 9, measured with `fraudstream loadtest`.

Runs (each on embedded services started for the run):
- the ramp with the noop and passthrough baselines, `--runs` times: the highest sustainable
  rate of one worker (p99 <= 100 ms) and its ratio to noop, medians of the runs;
- a steady step at `--cpu-tps` (600/s, the rate of the issue's baseline), `--runs` times:
  CPU seconds per 1,000 transactions of every process;
- a steady step at half the pipeline's median sustainable rate for `--flat-duration` s
  (300): the flatness check (p99 of the last 60 s <= 1.25 x p99 of the first 60 s after a
  10 s warm-up, backlog 0 at the end), with its p99-per-10-s curve as a PNG.
Prints Markdown for bench/RESULTS.md; every run's JSON/Markdown/plots go to `--out`.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.cpu_usage import ROLES
from fraudstream.stream.tools.loadtest import LoadTestOptions, run_loadtest
from fraudstream.stream.tools.loadtest_report import write_loadtest_report

#: Flatness: the last minute's p99 may be at most this multiple of the first minute's.
FLAT_FACTOR = 1.25
#: 10 s windows skipped at the start (warm-up) and per compared minute.
WARM_UP_WINDOWS, MINUTE_WINDOWS = 1, 6


def _run(settings: Settings, options: LoadTestOptions) -> dict[str, Any]:
    result = run_loadtest(settings, options)
    assert options.out is not None
    write_loadtest_report(result, options.out)
    return result


def _median(values: list[Any]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, pattern: str = "{:,.0f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def ramp_table(results: list[dict[str, Any]]) -> list[str]:
    """Median over the runs that reached each step (ramps stop at different steps)."""
    lines = [
        "| target TPS | runs | achieved | p50 ms | p99 ms | lag at end | worker CPU s/1k |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rates = sorted({step["tps_target"] for result in results for step in result["steps"]})
    for rate in rates:
        runs = [s for r in results for s in r["steps"] if s["tps_target"] == rate]
        lines.append(
            f"| {rate:,.0f} | {len(runs)} "
            f"| {_fmt(_median([s['tps_achieved'] for s in runs]))} "
            f"| {_fmt(_median([s['e2e_latency_ms']['p50'] for s in runs]), '{:,.1f}')} "
            f"| {_fmt(_median([s['e2e_latency_ms']['p99'] for s in runs]), '{:,.1f}')} "
            f"| {_fmt(_median([s['lag_end'] for s in runs]))} "
            f"| {_fmt(_median([s['cpu_s_per_1000_txn']['worker'] for s in runs]), '{:.3f}')} |"
        )
    sustainable = [r["max_sustainable_tps"] for r in results]
    lines += ["", f"- pipeline max sustainable TPS (p99 <= 100 ms), median of {len(results)}: "
              f"{_fmt(_median(sustainable))} (runs: {sustainable})"]  # fmt: skip
    for name in results[0].get("baselines", {}):
        rates_b = [r["baselines"][name]["max_sustainable_tps"] for r in results]
        ratios = [r["ratios"].get(name) for r in results]
        lines.append(
            f"- {name}: max sustainable {_fmt(_median(rates_b))} (runs {rates_b}); "
            f"pipeline/{name} ratio {_fmt(_median(ratios), '{:.2f}')} (runs {ratios})"
        )
    return lines


def cpu_table(steps: list[dict[str, Any]]) -> list[str]:
    """Per-role CPU seconds per 1,000 transactions: each run, then the median."""
    lines = ["| run | " + " | ".join(ROLES) + " | p99 ms |", "|---|" + "---:|" * (len(ROLES) + 1)]
    for index, step in enumerate(steps, 1):
        cpu = step["cpu_s_per_1000_txn"]
        lines.append(f"| {index} | " + " | ".join(_fmt(cpu[r], "{:.3f}") for r in ROLES)
                     + f" | {_fmt(step['e2e_latency_ms']['p99'], '{:,.1f}')} |")  # fmt: skip
    medians = [_median([s["cpu_s_per_1000_txn"][r] for s in steps]) for r in ROLES]
    p99 = _median([s["e2e_latency_ms"]["p99"] for s in steps])
    lines.append("| median | " + " | ".join(_fmt(m, "{:.3f}") for m in medians)
                 + f" | {_fmt(p99, '{:,.1f}')} |")  # fmt: skip
    return lines


def flatness(windows: list[float | None]) -> dict[str, Any]:
    """First and last minute's p99 (max of their 10 s windows) after the warm-up."""
    measured = [w for w in windows[WARM_UP_WINDOWS:] if w is not None]
    if len(measured) < 2 * MINUTE_WINDOWS:
        return {"first_minute_p99": None, "last_minute_p99": None, "flat": False}
    first, last = max(measured[:MINUTE_WINDOWS]), max(measured[-MINUTE_WINDOWS:])
    return {"first_minute_p99": first, "last_minute_p99": last,
            "flat": last <= FLAT_FACTOR * first}  # fmt: skip


def plot_windows(windows: list[float | None], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    seconds = [10 * (i + 1) for i in range(len(windows))]
    ax.plot(seconds, [w if w is not None else float("nan") for w in windows], marker="o")
    ax.axhline(100.0, color="red", linestyle="--", label="budget p99 100 ms")
    ax.set(xlabel="seconds since the first send (10 s windows)", ylabel="p99 ms", title=title)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ramp", default="500:500:6000")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--cpu-tps", type=float, default=600.0)
    parser.add_argument("--cpu-duration", type=float, default=60.0)
    parser.add_argument("--flat-duration", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=Path("bench/loadtest"))
    args = parser.parse_args()
    settings = Settings.from_env()
    ramp = LoadTestOptions(ramp=args.ramp, duration_s=args.duration,
                           compare_with=("noop", "passthrough"))  # fmt: skip
    ramps = [
        _run(settings, replace(ramp, out=args.out / f"ramp-run{run + 1}.json", seed=2026 + run))
        for run in range(args.runs)
    ]
    steady = LoadTestOptions(tps=args.cpu_tps, duration_s=args.cpu_duration,
                             raw_consume_records=0)  # fmt: skip
    cpu_steps = [
        _run(settings, replace(steady, out=args.out / f"cpu-{args.cpu_tps:.0f}-run{run + 1}.json",
                               seed=2026 + run))["steps"][0]  # fmt: skip
        for run in range(args.runs)
    ]
    half = round((_median([r["max_sustainable_tps"] for r in ramps]) or 1000.0) / 2)
    flat_run = _run(settings, replace(steady, tps=half, duration_s=args.flat_duration,
                                      out=args.out / f"flat-{half}.json"))  # fmt: skip
    flat_step = flat_run["steps"][0]
    windows = flat_step["e2e_p99_ms_by_10s_window"]
    plot_windows(windows, f"p99 per 10 s at {half}/s for {args.flat_duration:g} s",
                 args.out / f"flat-{half}-p99-by-window.png")  # fmt: skip

    print(f"### Ramp {args.ramp}, {args.duration:g} s steps, 1 worker, {args.runs} runs\n")
    print("\n".join(ramp_table(ramps)))
    print(f"\n### CPU per 1,000 transactions at {args.cpu_tps:,.0f}/s, "
          f"{args.cpu_duration:g} s, {args.runs} runs\n")  # fmt: skip
    print("\n".join(cpu_table(cpu_steps)))
    check = flatness(windows)
    print(f"\n### Flatness at {half}/s for {args.flat_duration:g} s\n")
    print(f"- p99 first minute {_fmt(check['first_minute_p99'], '{:,.1f}')} ms, last minute "
          f"{_fmt(check['last_minute_p99'], '{:,.1f}')} ms: "
          f"{'flat' if check['flat'] else 'NOT flat'} (<= {FLAT_FACTOR} x); "
          f"lag at end {flat_step['lag_end']:,}")  # fmt: skip
    print(f"- p99 by 10 s window: {windows}")


if __name__ == "__main__":
    main()
