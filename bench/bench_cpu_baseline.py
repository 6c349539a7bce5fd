"""Issue 9's CPU target: the worker's CPU per 1,000 against the §1 baseline, same machine, same run.

The target compares today's worker with the code of the §1 baseline (commit `f77395b`) at
600/s. This machine's speed swings by a fifth between days and ±10 % between runs
(bench/RESULTS.md), so figures from different days cannot be divided: this bench checks
the baseline out (`git archive`) into `--work`, installs it in its own virtualenv with its
own `make install` (once; later runs reuse it; its first load test trains its own model),
then alternates `fraudstream loadtest --tps 600 --duration 60` of the baseline and of this
checkout, `--runs` pairs, and prints both medians and their ratio.

Before and after the pairs it reads the spell's wake-up cost (`bench_wakeup_cost`: an idle
fetch's CPU never asleep and after the worker's 10 ms sleep). The worker at 600/s sleeps
hundreds of times a second and the baseline, always behind, never does, so a spell where
waking up is dear raises this checkout's figure and not the baseline's: the ratio read
0.51-0.56 x with ~650 us a wake-up and 0.42-0.44 x with ~300 us (bench/RESULTS.md, issue 9).

    python -m bench.bench_cpu_baseline [--runs 3] [--tps 600] [--duration 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench_wakeup_cost import measured_waits

#: The code of issue 9 §1's figures, "before changing anything".
BASELINE_REV = "f77395b"
REPO = Path(__file__).resolve().parents[1]
#: The fetch waits, in ms, the spell's wake-up cost is read at: never asleep, and the worker's.
WAKEUP_WAITS_MS = (0, 10)


@dataclass(frozen=True)
class Arm:
    """One version under test: its folder (the load test's working directory) and CLI."""

    name: str
    folder: Path
    cli: Path


def prepare_baseline(rev: str, work: Path) -> Arm:
    """`rev` checked out in `work/rev` with its own virtualenv (made once, then reused)."""
    folder = work / rev
    cli = folder / ".venv" / "bin" / "fraudstream"
    if not cli.exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev],
                                 check=True, capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        subprocess.run(["make", "-C", str(folder), "install", f"PYTHON={sys.executable}"],
                       check=True)  # fmt: skip
    return Arm(rev, folder, cli)


def this_checkout() -> Arm:
    return Arm("this checkout", REPO, Path(sys.executable).parent / "fraudstream")


def load_test(arm: Arm, tps: float, duration: float, out: Path) -> dict[str, Any]:
    """The first step of one `fraudstream loadtest` of `arm` (its JSON written to `out`)."""
    subprocess.run(
        [str(arm.cli), "loadtest", "--tps", f"{tps:g}", "--duration", f"{duration:g}",
         "--json", str(out)],
        cwd=arm.folder, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    step: dict[str, Any] = json.loads(out.read_text())["steps"][0]
    return step


def wakeup_cost(seconds: float) -> dict[int, float]:
    """CPU microseconds per idle fetch at each of `WAKEUP_WAITS_MS`, on a fresh embedded broker."""
    return {wait: cost for wait, _, cost in measured_waits(WAKEUP_WAITS_MS, seconds)}


def describe_wakeup(when: str, cost: dict[int, float]) -> str:
    """One reading of `wakeup_cost` as the report prints it."""
    return f"{when}: " + ", ".join(f"{cost[wait]:,.0f} us at a {wait} ms wait" for wait in cost)


def comparison(baseline: list[dict[str, Any]], current: list[dict[str, Any]]) -> dict[str, Any]:
    """Worker CPU s per 1,000 of each arm's steps, their medians and current / baseline."""
    base_cpu = [step["cpu_s_per_1000_txn"]["worker"] for step in baseline]
    current_cpu = [step["cpu_s_per_1000_txn"]["worker"] for step in current]
    base_median, current_median = statistics.median(base_cpu), statistics.median(current_cpu)
    return {
        "baseline_worker": base_cpu,
        "current_worker": current_cpu,
        "baseline_median": base_median,
        "current_median": current_median,
        "ratio": current_median / base_median,
    }


def markdown(names: tuple[str, str], baseline: list[dict[str, Any]],
             current: list[dict[str, Any]], result: dict[str, Any]) -> list[str]:  # fmt: skip
    """One row per alternated pair (worker and broker CPU, p50 and p99), then `result`'s
    medians and ratio (`comparison`)."""
    lines = [f"| pair | {names[0]} worker | {names[1]} worker | {names[0]} broker | "
             f"{names[1]} broker | {names[0]} p50 / p99 ms | {names[1]} p50 / p99 ms |",
             "|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for pair, (old, new) in enumerate(zip(baseline, current, strict=True), 1):
        cpu_old, cpu_new = old["cpu_s_per_1000_txn"], new["cpu_s_per_1000_txn"]
        latency = [f"{s['e2e_latency_ms']['p50']:,.1f} / {s['e2e_latency_ms']['p99']:,.1f}"
                   for s in (old, new)]  # fmt: skip
        lines.append(f"| {pair} | {cpu_old['worker']:.3f} | {cpu_new['worker']:.3f} | "
                     f"{cpu_old['broker']:.3f} | {cpu_new['broker']:.3f} | {latency[0]} | "
                     f"{latency[1]} |")  # fmt: skip
    lines += ["", f"Worker medians: {result['baseline_median']:.3f} ({names[0]}) and "
              f"{result['current_median']:.3f} ({names[1]}): **{result['ratio']:.2f} x** "
              "(the target is 0.5 x)."]  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default=BASELINE_REV)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tps", type=float, default=600.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "cpu-baseline")
    parser.add_argument("--wakeup-seconds", type=float, default=5.0,
                        help="how long each wake-up cost reading lasts (0: skip them)")
    args = parser.parse_args()
    arms = {"baseline": prepare_baseline(args.baseline, args.work), "current": this_checkout()}
    wakeups: dict[str, dict[int, float]] = {}

    def read_wakeup_cost(when: str) -> None:
        if args.wakeup_seconds > 0:
            wakeups[when] = wakeup_cost(args.wakeup_seconds)

    read_wakeup_cost("before the pairs")
    steps: dict[str, list[dict[str, Any]]] = {role: [] for role in arms}
    for run in range(1, args.runs + 1):
        for role, arm in arms.items():
            step = load_test(arm, args.tps, args.duration, args.work / f"{role}-{run}.json")
            steps[role].append(step)
            worker = step["cpu_s_per_1000_txn"]["worker"]
            print(f"pair {run}, {arm.name}: worker {worker:.3f}", flush=True)
    read_wakeup_cost("after them")
    result = comparison(steps["baseline"], steps["current"])
    print(f"\n### Worker CPU per 1,000 at {args.tps:,.0f}/s, {args.duration:g} s, "
          f"{args.runs} alternated pairs\n")  # fmt: skip
    names = (arms["baseline"].name, arms["current"].name)
    print("\n".join(markdown(names, steps["baseline"], steps["current"], result)))
    if wakeups:
        print("\nThe spell's CPU per idle fetch (`bench_wakeup_cost`), "
              + "; ".join(describe_wakeup(when, cost) for when, cost in wakeups.items()) + ".")
    result["wakeup_us_per_fetch"] = {when: {str(wait): us for wait, us in cost.items()}
                                     for when, cost in wakeups.items()}  # fmt: skip
    (args.work / "summary.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
