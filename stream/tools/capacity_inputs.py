"""`fraudstream capacity`: read the measurement files, plan (capacity.py), print and write.

Two files feed the plan, each written by a command here, and the output names both:
- a load test report (`fraudstream loadtest --ramp ... --json FILE`): one worker's
  sustainable rate, and worker and Redis CPU per transaction at that rate;
- a demo run's summary (`fraudstream demo --out DIR` writes DIR/summary.json): the Redis
  and topic footprint per transaction (stream/tools/footprint.py).

The sustainable rate is the load test's `max_sustainable_tps` (p99 within its budget).
When no step met the budget, the plan uses the highest step the worker kept up with
(backlog and decided share as `is_sustained` judges them, latency aside) and says loudly
that the latency target is not met at that rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fraudstream.stream.tools.capacity import (
    Assumptions,
    CapacityInputError,
    Measured,
    Prices,
    Source,
    format_markdown,
    plan,
    plan_figures,
)
from fraudstream.stream.tools.loadtest_report import is_sustained

#: What to run when a file is missing (the output names the file actually read instead).
LOADTEST_COMMAND = "fraudstream loadtest --ramp 500:500:3000 --duration 10 --json {path}"
DEMO_COMMAND = "fraudstream demo --transactions 10000 --out {folder}"


def _read_json(path: Path, command: str) -> dict[str, Any]:
    if not path.is_file():
        raise CapacityInputError(f"{path} not found: run `{command}` first")
    try:
        figures: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except ValueError as error:
        raise CapacityInputError(f"{path} is not JSON ({error}): run `{command}` again") from None
    return figures


def _figure(value: Any, name: str, path: Path, command: str) -> float:
    """A positive number from a file, else an error naming the file and the command."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise CapacityInputError(
            f"{path} has no usable {name} (got {value!r}): run `{command}` to measure it"
        )
    return float(value)


def read_loadtest(path: Path) -> tuple[dict[str, Any], Source]:
    """The load-test step the plan sizes from, with its rate per worker and CPU figures."""
    command = LOADTEST_COMMAND.format(path=path)
    report = _read_json(path, command)
    steps = report.get("steps")
    if not steps or report.get("system", "pipeline") != "pipeline":
        raise CapacityInputError(f"{path} is not a pipeline load test: run `{command}`")
    budget = float(report["budget_ms"])
    kept_up = [s for s in steps if is_sustained(s, budget, need_latency=False)]
    if not kept_up:
        raise CapacityInputError(
            f"{path}: the worker kept up with no step; run `{command}` with lower rates"
        )
    within = [s for s in kept_up if is_sustained(s, budget)]
    step = max(within or kept_up, key=lambda s: s["tps_target"])
    cpu = step.get("cpu_s_per_1000_txn") or {}
    figures = {
        "worker_tps": step["tps_target"] / int(report.get("workers", 1)),
        "within_budget": bool(within),
        "p99_ms": step["e2e_latency_ms"]["p99"],
        "budget_ms": budget,
        "worker_cpu_s_per_txn": _figure(cpu.get("worker"), "worker CPU", path, command) / 1000,
        "redis_cpu_s_per_txn": _figure(cpu.get("redis"), "Redis CPU (embedded Redis)", path,
                                       command) / 1000,  # fmt: skip
    }
    ran = (
        f"fraudstream loadtest ... --json {path} ({report.get('workers', 1)} worker(s), "
        f"{report.get('duration_s', '?')} s steps, {report.get('date', 'undated')})"
    )
    return figures, Source(str(path), ran)


def read_demo(path: Path) -> tuple[dict[str, Any], Source]:
    """The demo's Redis and topic footprint per transaction (stream/tools/footprint.py)."""
    command = DEMO_COMMAND.format(folder=path.parent)
    summary = _read_json(path, command)
    footprint = summary.get("footprint")
    if not isinstance(footprint, dict):
        raise CapacityInputError(
            f"{path} has no `footprint` (demo runs before issue 13 did not measure it): "
            f"run `{command}`"
        )
    redis = footprint["redis"]
    names = ("commands_per_txn", "card_bytes_per_event", "merchant_bytes_per_event",
             "txn_bytes_per_txn", "txn_key_ttl_s", "card_retention_s",
             "merchant_retention_s")  # fmt: skip
    found = {name: _figure(redis.get(name), f"footprint.redis.{name}", path, command)
             for name in names}  # fmt: skip
    fixed = redis.get("card_bytes_fixed")
    topics = {
        role: _figure(figures.get("records_per_txn"), f"footprint.topics.{role}", path, command)
        * _figure(figures.get("bytes_per_record"), f"footprint.topics.{role}", path, command)
        for role, figures in footprint["topics"].items()
        if figures.get("records")
    }
    figures = {
        "redis_commands_per_txn": found["commands_per_txn"],
        "card_bytes_fixed": float(fixed) if isinstance(fixed, int | float) and fixed >= 0 else 0.0,
        "card_bytes_per_event": found["card_bytes_per_event"],
        "merchant_bytes_per_event": found["merchant_bytes_per_event"],
        "txn_bytes_per_txn": found["txn_bytes_per_txn"],
        "txn_key_ttl_s": found["txn_key_ttl_s"],
        "card_retention_s": found["card_retention_s"],
        "merchant_retention_s": found["merchant_retention_s"],
        "topic_bytes_per_txn": topics,
    }
    ran = f"fraudstream demo (its --out folder's summary.json; {summary.get('produced')} txns)"
    return figures, Source(str(path), ran)


def read_measured(loadtest: Path, demo_summary: Path) -> Measured:
    """Both files into one `Measured`; raises CapacityInputError naming what to run."""
    from_loadtest, loadtest_source = read_loadtest(loadtest)
    from_demo, demo_source = read_demo(demo_summary)
    return Measured(**from_loadtest, **from_demo,
                    sources={"loadtest": loadtest_source, "demo": demo_source})  # fmt: skip


def add_capacity_arguments(parser: argparse.ArgumentParser) -> None:
    """The `fraudstream capacity` flags: rates, input files, and every assumption and price."""
    parser.add_argument("--peak-tps", type=float, required=True)
    parser.add_argument("--avg-tps", type=float, required=True)
    parser.add_argument("--from", dest="loadtest", type=Path,
                        default=Path("runs/loadtest/loadtest.json"),
                        help="a `fraudstream loadtest` JSON report")  # fmt: skip
    parser.add_argument("--demo-summary", type=Path, default=Path("runs/demo/summary.json"),
                        help="a `fraudstream demo` run's summary.json")  # fmt: skip
    for name, default in vars(Assumptions()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                            help="assumption (default %(default)s)")  # fmt: skip
    for name, default in vars(Prices()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=default,
                            help="$, an assumption (default %(default)s)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the plan here")
    parser.set_defaults(run=run_from_args)


def run_from_args(args: argparse.Namespace) -> int:
    """Print the plan as Markdown; write its JSON when asked; exit 2 naming a missing input.

    Only the Markdown goes to stdout (it is redirected into plan files); notes go to stderr.
    """
    assumptions = Assumptions(**{name: getattr(args, name) for name in vars(Assumptions())})
    prices = Prices(**{name: getattr(args, name) for name in vars(Prices())})
    try:
        measured = read_measured(args.loadtest, args.demo_summary)
        result = plan(args.peak_tps, args.avg_tps, measured, assumptions, prices)
    except CapacityInputError as error:
        print(f"fraudstream capacity: {error}", file=sys.stderr)
        return 2
    figures = plan_figures(result, measured, assumptions, prices)
    print(format_markdown(figures))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", "utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
