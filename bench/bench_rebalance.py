"""Issue 13 §2: workers joining and leaving a group of 8 partitions under a steady replay.

One run of stream/tools/rebalance.py on a fresh embedded Tansu broker and redis-server:
w1 from the start, w2 and w3 join, w1 leaves on SIGTERM, w2 is SIGKILLed, one event
every `--spacing` s while transactions arrive at `--rate`/s; then every record is
accounted for and each event's pause measured against the steady window before the first.

Writes `--json` (bench/rebalance/rebalance.json) and `--markdown` (bench/rebalance/REBALANCE.md).

    python -m bench.bench_rebalance                      # 200/s, 75 s of traffic
    python -m bench.bench_rebalance --rate 100 --spacing 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from fraudstream.stream.offline.training import ensure_trained_model
from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.faults import ChaosServices
from fraudstream.stream.tools.loadtest_report import provenance, provenance_lines
from fraudstream.stream.tools.rebalance import RebalanceOptions, run_rebalance


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _row(name: str, figures: dict[str, Any], extra: str) -> str:
    return (f"| {name} | {extra} | {figures['max_lag']:,} | {_ms(figures['e2e_p50_ms'])} "
            f"| {_ms(figures['e2e_p99_ms'])} | {_ms(figures['e2e_max_ms'])} "
            f"| {figures['decisions']:,} |")  # fmt: skip


def format_markdown(result: dict[str, Any]) -> str:
    """The run as a Markdown table: the steady window, then one row per event."""
    report, options = result["report"], result["report"]["options"]
    production_s = RebalanceOptions(**options).production_s
    lines = [
        "# Workers joining and leaving under load (issue 13 §2)",
        "",
        *provenance_lines(result),
        "",
        f"{options['partitions']} partitions, {options['rate']:g} transactions/s "
        f"({report['produced_tps']} achieved) for {production_s:g} s, one event "
        f"every {options['spacing_s']:g} s. A window runs from the event until "
        f"{options['window_s']:g} s after it took effect (joiner assigned, worker exited); "
        "*steady* is the same length before the first event. *Max lag*: most records "
        "produced and not yet decided at any instant of the window (broker timestamps). "
        "*p50/p99/max*: end-to-end ms of the decisions made in the window.",
        "",
        "| window | took s | max lag | p50 ms | p99 ms | max ms | decisions |",
        "|---|---:|---:|---:|---:|---:|---:|",
        _row("steady, before the first event", report["steady"], "-"),
    ]
    lines += [_row(f"{event['event']} at {event['at_s']:g} s", event, f"{event['took_s']:.1f}")
              for event in report["events"]]  # fmt: skip
    by_event = ", ".join(f"{event['event']} {event['duplicates']}" for event in report["events"])
    lines += [
        "",
        f"Records in {report['records_in']:,}, decided {report['decided']:,}, dead-lettered "
        f"{report['dead_lettered']:,}, **lost {report['lost']:,}**, txn_ids decided twice "
        f"{report['duplicates']:,} (by the last event before the second decision: {by_event}), "
        f"stand-in {report['stand_in']:,}, degraded {report['degraded']:,}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = RebalanceOptions()
    parser.add_argument("--rate", type=float, default=defaults.rate)
    parser.add_argument("--spacing", type=float, default=defaults.spacing_s,
                        help="seconds between events (production lasts 5 of them)")  # fmt: skip
    parser.add_argument("--window", type=float, default=defaults.window_s)
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--json", type=Path, default=Path("bench/rebalance/rebalance.json"))
    parser.add_argument("--markdown", type=Path, default=Path("bench/rebalance/REBALANCE.md"))
    args = parser.parse_args()
    options = RebalanceOptions(rate=args.rate, spacing_s=args.spacing, window_s=args.window,
                               partitions=args.partitions)  # fmt: skip
    run_root = Path(tempfile.mkdtemp(prefix="fraudstream-rebalance-"))
    settings = Settings.from_env()
    trained, signing_key = ensure_trained_model(settings, run_root)
    print(trained, flush=True)
    with ChaosServices.running() as services:
        report = run_rebalance(services, settings.registry_path, signing_key, options, run_root)
    result = {**provenance("bench.bench_rebalance"), "report": report}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown = format_markdown(result)
    args.markdown.write_text(markdown)
    print(markdown)
    print(f"wrote {args.json} and {args.markdown}; worker logs in {run_root}")


if __name__ == "__main__":
    main()
