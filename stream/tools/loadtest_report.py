"""Load-test figures: what counts as sustained, and the JSON / Markdown / PNG report.

Kept apart from loadtest.py so the verdict rules can be read (and tested) without
any broker: a step is sustained when nothing was lost, the backlog did not grow, and, for
systems that emit decisions, the p99 end-to-end latency is within budget. A ramp stops
after a step `STOP_FACTOR` times past those limits (`stop_reason`).

Report keys: ``steps`` [{``tps_target``, ``tps_achieved``, ``produced``, ``decided``,
``e2e_latency_ms`` {``p50``, ``p95``, ``p99``, ``max``}, ``lag_end``, ``stages_ms``,
``drain_limit_s``], ``max_sustainable_tps``, ``stopped_after_tps``, ``stop_reason``,
``budget_ms``, ``baselines`` {name: {``max_sustainable_tps``, ``stopped_after_tps``,
``stop_reason``, ``steps``}}, ``ratios`` {name: pipeline / baseline}, ``raw_aiokafka_consume_tps``,
``workers``, ``machine``, ``date``. Latencies are null for ``noop``, which emits nothing.
``stopped_after_tps``/``stop_reason`` are null for a system that ran every step of the ramp;
steps above a stop were not run and are not listed.
Latency percentiles are exact over every decision of a step (`stream.latency`, linear
interpolation); ``stages_ms`` are mean ms per stage from the workers' histogram sums.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.stream.tools.cpu_usage import ROLES

#: Backlog allowed at the end of a step, in seconds of the step's traffic.
MAX_LAG_SECONDS = 0.5
#: Share of the produced records that must be decided (eventually) for a step to count.
MIN_DECIDED_SHARE = 0.99
#: Wait after the last send before measuring the backlog: records legitimately in flight.
GRACE_S = 0.5
#: A ramp stops after a step this many times past a limit of `is_sustained` (`stop_reason`).
STOP_FACTOR = 10
#: Longest drain for a step whose backlog is already past the stop threshold.
PAST_KNEE_DRAIN_S = 2.0


def emits_decisions(system: str) -> bool:
    """Whether a system's latency can be timed (and judged): noop emits nothing."""
    return system != "noop"


def is_sustained(step: dict[str, Any], budget_ms: float, need_latency: bool = True) -> bool:
    """Kept up (backlog ≤ `MAX_LAG_SECONDS` of traffic, ≥ 99 % decided) and, when the
    system emits decisions, p99 within `budget_ms`."""
    if step["lag_end"] > MAX_LAG_SECONDS * step["tps_target"]:
        return False
    if step["decided"] < MIN_DECIDED_SHARE * step["produced"]:
        return False
    if need_latency:
        p99 = step["e2e_latency_ms"]["p99"]
        return p99 is not None and p99 <= budget_ms
    return True


def max_sustainable_tps(
    steps: Sequence[dict[str, Any]], budget_ms: float, need_latency: bool = True
) -> float | None:
    """The highest target rate among sustained steps; None if no step was sustained."""
    rates = [s["tps_target"] for s in steps if is_sustained(s, budget_ms, need_latency)]
    return max(rates) if rates else None


def backlog_past_stop(lag_end: int, tps_target: float) -> bool:
    """Backlog over `STOP_FACTOR` × the allowed one: this step ends the ramp whatever the
    drain brings, so the drain only has to count, not to wait for every record."""
    return lag_end > STOP_FACTOR * MAX_LAG_SECONDS * tps_target


def stop_reason(step: dict[str, Any], budget_ms: float, need_latency: bool = True) -> str | None:
    """Why the ramp goes no higher than `step` for this system; None to go on.

    Past the knee a higher rate only builds a bigger backlog, so the ramp stops after the
    first step `STOP_FACTOR` times past a limit of `is_sustained` — margin enough that noise
    does not cut a ramp short:
    - p99 over 10 × `budget_ms` (systems that emit decisions);
    - backlog at the end over 10 × `MAX_LAG_SECONDS` of traffic (every system; noop's own
      rule, as it has no latency);
    - under `MIN_DECIDED_SHARE` decided after the drain (every system). No factor here: over
      1 % undecided puts the true p99 beyond the time waited for them, and noop, counted
      rather than matched by txn_id, would credit the leftovers to the next step.
    A stop step is therefore never sustained.
    """
    p99 = step["e2e_latency_ms"]["p99"]
    if need_latency and p99 is not None and p99 > STOP_FACTOR * budget_ms:
        return f"p99 {p99:,.0f} ms > {STOP_FACTOR} × {budget_ms:g} ms budget"
    if backlog_past_stop(step["lag_end"], step["tps_target"]):
        limit = STOP_FACTOR * MAX_LAG_SECONDS * step["tps_target"]
        return (
            f"backlog {step['lag_end']:,} records at the end > {STOP_FACTOR} × "
            f"{MAX_LAG_SECONDS:g} s of traffic ({limit:,.0f})"
        )
    if step["decided"] < MIN_DECIDED_SHARE * step["produced"]:
        return (
            f"decided {step['decided']:,}/{step['produced']:,} < {MIN_DECIDED_SHARE:.0%} "
            f"after the drain"
        )
    return None


def summarize_system(
    steps: list[dict[str, Any]], ramp_length: int, budget_ms: float, need_latency: bool = True
) -> dict[str, Any]:
    """One system's figures: its best rate, and where and why its ramp was cut short
    (None when it ran all `ramp_length` steps)."""
    stopped = len(steps) < ramp_length
    return {
        "max_sustainable_tps": max_sustainable_tps(steps, budget_ms, need_latency),
        "stopped_after_tps": steps[-1]["tps_target"] if stopped else None,
        "stop_reason": stop_reason(steps[-1], budget_ms, need_latency) if stopped else None,
        "steps": steps,
    }


def ratio(pipeline_tps: float | None, baseline_tps: float | None) -> float | None:
    """Pipeline's sustainable rate as a share of a baseline's; None when either is unknown."""
    if pipeline_tps is None or not baseline_tps:
        return None
    return round(pipeline_tps / baseline_tps, 3)


def describe_machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def provenance(module: str) -> dict[str, Any]:
    """What a bench report records of its run (`python -m module` with this process's
    arguments, the machine, the UTC date): the fields `provenance_lines` shows."""
    return {
        "command": shlex.join(["python", "-m", module, *sys.argv[1:]]),
        "machine": describe_machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def provenance_lines(result: dict[str, Any]) -> list[str]:
    """A bench report's Markdown header lines: the command, the machine and the date."""
    machine = result["machine"]
    return [
        f"Command: `{result['command']}`  ",
        f"Machine: {machine['cpu_count']} CPUs, {machine['platform']}, Python "
        f"{machine['python']}  ",
        f"Date: {result['date']}",
    ]


def _systems(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every system's figures by name, the system under test first."""
    keys = ("max_sustainable_tps", "stopped_after_tps", "stop_reason", "steps")
    main = {key: result.get(key) for key in keys}
    return {result.get("system", "pipeline"): main, **result.get("baselines", {})}


def _fmt(value: float | None, pattern: str = "{:,.1f}") -> str:
    return "–" if value is None else pattern.format(value)


def format_markdown(result: dict[str, Any]) -> str:
    """The human report: verdict first, then one table per system."""
    budget = result["budget_ms"]
    lines = [
        f"# Load test ({result['date']})",
        "",
        f"Machine: {result['machine']['cpu_count']} CPUs, {result['machine']['platform']}; "
        f"{result['workers']} worker(s); budget p99 ≤ {budget:g} ms; "
        f"{result.get('duration_s', 0):g} s per step.",
        "",
        f"**Max sustainable rate ({result.get('system', 'pipeline')}): "
        f"{_fmt(result['max_sustainable_tps'], '{:,.0f}')} transactions/s**",
        "",
    ]
    for name, value in result.get("ratios", {}).items():
        base = result["baselines"][name]["max_sustainable_tps"]
        top = max(s["tps_target"] for s in result["baselines"][name]["steps"])
        capped = " (baseline kept up at the top of the ramp: its ceiling is higher)"
        lines.append(
            f"- vs `{name}` ({_fmt(base, '{:,.0f}')}/s): ratio {_fmt(value, '{:.2f}')}"
            + (capped if base == top else "")
        )
    if result.get("raw_aiokafka_consume_tps") is not None:
        lines.append(f"- raw aiokafka consume: {result['raw_aiokafka_consume_tps']:,.0f} records/s")
    for name, figures in _systems(result).items():
        lines += _system_section(name, figures, budget)
    lines += [
        "",
        "Latency = decision read by the load tester − transaction sent (same host, "
        "wall clock); percentiles over every decision, linearly interpolated "
        "(stream/latency.py). Sustained = p99 within budget, backlog ≤ "
        f"{MAX_LAG_SECONDS:g} s of traffic {GRACE_S:g} s after the last send, "
        f"≥ {MIN_DECIDED_SHARE:.0%} decided. `passthrough` is judged like the pipeline; "
        "`noop` emits nothing, is judged on keeping up only and is counted from its status "
        f"files. A ramp stops after a step {STOP_FACTOR} × past a limit (p99, backlog) or "
        f"under {MIN_DECIDED_SHARE:.0%} decided; a step whose backlog is already past it is "
        f"drained for at most {PAST_KNEE_DRAIN_S:g} s, so its decided count is what was done "
        "by then.",
        "",
    ]
    return "\n".join(lines)


def _system_section(name: str, figures: dict[str, Any], budget: float) -> list[str]:
    """One system's heading, where its ramp stopped, its step table and CPU table."""
    need_latency = emits_decisions(name)
    lines = ["", f"## {name}", ""]
    if figures.get("stop_reason") is not None:
        lines += [
            f"Ramp stopped after {figures['stopped_after_tps']:,.0f}/s: "
            f"{figures['stop_reason']}; higher steps were not run.",
            "",
        ]
    lines += [
        "| target/s | achieved/s | decided | lag_end | p50 ms | p95 ms | p99 ms "
        "| max ms | stand-in | sustained |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for step in figures["steps"]:
        e2e = step["e2e_latency_ms"]
        ok = "yes" if is_sustained(step, budget, need_latency) else "no"
        lines.append(
            f"| {step['tps_target']:,.0f} | {step['tps_achieved']:,.0f} | "
            f"{step['decided']:,}/{step['produced']:,} | {step['lag_end']:,} | "
            f"{_fmt(e2e['p50'])} | {_fmt(e2e['p95'])} | {_fmt(e2e['p99'])} | "
            f"{_fmt(e2e['max'])} | {_fmt(step.get('stand_in_share'), '{:.1%}')} | {ok} |"
        )
    return lines + _cpu_table(figures["steps"])


def _cpu_table(steps: list[dict[str, Any]]) -> list[str]:
    """CPU seconds per 1,000 transactions by process role, one row per step."""
    if not any("cpu_s_per_1000_txn" in step for step in steps):
        return []
    lines = [
        "",
        "CPU seconds per 1,000 transactions (per process; – = not our process), load average:",
        "",
        "| target/s | " + " | ".join(ROLES) + " | total | load 1m | p99 by 10 s window (ms) |",
        "|---:|" + "---:|" * (len(ROLES) + 2) + "---|",
    ]
    for step in steps:
        cpu = step.get("cpu_s_per_1000_txn", {})
        measured = [cpu.get(role) for role in ROLES]
        total = sum(value for value in measured if value is not None)
        windows = ", ".join(
            _fmt(p99, "{:,.0f}") for p99 in step.get("e2e_p99_ms_by_10s_window", [])
        )
        lines.append(
            f"| {step['tps_target']:,.0f} | "
            + " | ".join(_fmt(value, "{:.3f}") for value in measured)
            + f" | {total:.3f} | {_fmt(step.get('load_average', {}).get('1m'), '{:.2f}')} "
            f"| {windows} |"
        )
    return lines


def plot_latency(result: dict[str, Any], path: Path) -> None:
    """p50/p95/p99 against target rate, one colour per system, with the budget line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"p50": ":", "p95": "--", "p99": "-"}
    for colour, (name, figures) in enumerate(_systems(result).items()):
        for quantile, style in styles.items():
            points = [
                (s["tps_target"], s["e2e_latency_ms"][quantile])
                for s in figures["steps"]
                if s["e2e_latency_ms"][quantile] is not None
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, marker="o", color=f"C{colour}", label=f"{name} {quantile}")
    ax.axhline(result["budget_ms"], color="red", linewidth=1, label="budget (p99)")
    ax.set_xlabel("target rate (transactions/s)")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_yscale("log")
    ax.set_title("End-to-end latency vs offered load")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_stages(result: dict[str, Any], path: Path) -> None:
    """Per-stage milliseconds stacked per step; an explanatory blank chart when none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    stages = sorted({name for s in steps for name in s.get("stages_ms", {})})
    fig, ax = plt.subplots(figsize=(8, 5))
    if stages:
        labels = [f"{s['tps_target']:,.0f}" for s in steps]
        bottom = np.zeros(len(steps))
        for stage in stages:
            values = np.array([s["stages_ms"].get(stage, 0.0) for s in steps], dtype=float)
            ax.bar(labels, values, bottom=bottom, label=stage)
            bottom += values
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5,
            0.5,
            "no per-stage metrics scraped",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("target rate (transactions/s)")
    ax.set_ylabel("ms per transaction")
    ax.set_title("Time per pipeline stage")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_loadtest_report(result: dict[str, Any], json_path: Path) -> list[Path]:
    """Write the JSON, `<stem>.md`, `<stem>_latency.png` and `<stem>_stages.png`."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    # Unescaped, so a stop reason reads "10 × 100 ms" in the JSON too.
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", "utf-8")
    markdown = json_path.with_name(f"{json_path.stem}.md")
    markdown.write_text(format_markdown(result), "utf-8")
    latency = json_path.with_name(f"{json_path.stem}_latency.png")
    stages = json_path.with_name(f"{json_path.stem}_stages.png")
    plot_latency(result, latency)
    plot_stages(result, stages)
    return [json_path, markdown, latency, stages]
