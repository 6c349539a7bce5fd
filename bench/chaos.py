"""Issue 10 §9, `make chaos`: every fault against real services, and what it cost.

Each row (stream/tools/chaos.py) runs on a fresh embedded Tansu broker and redis-server
with fresh topics: one worker, transactions at `--rate`/s for `--seconds`, the fault a
third of the way in, a drain of up to `--drain` s, then every record the transactions
topic holds is accounted for. Rows: worker SIGKILL (restarted at once, as a supervisor
would), Redis SIGSTOP, Redis SIGKILL and an empty restart, broker restart, XGBoost hung
(bench/chaos_worker.py), and a hostile mix of `--hostile` records. Pass: lost = 0 and the
worker alive without a manual restart in every row.

Writes `--json` (bench/chaos/chaos.json) and `--markdown` (bench/CHAOS.md).

    python -m bench.chaos                        # ~60 s of traffic per row, 250/s
    python -m bench.chaos --quick --rows worker_kill,redis_stop
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fraudstream.stream.offline.training import ensure_trained_model
from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.chaos import FAULTS, ChaosOptions, run_fault
from fraudstream.stream.tools.faults import ChaosServices
from fraudstream.stream.tools.loadtest_report import provenance, provenance_lines

HANG_WORKER = ("bench.chaos_worker",)
#: `--quick`: a few hundred records per row, short faults (a smoke test of the bench).
QUICK = {"rate": 100.0, "seconds": 6.0, "fault_s": 3.0, "hostile": 300, "drain_s": 30.0}


def options_from(args: argparse.Namespace) -> ChaosOptions:
    sized = {"rate": args.rate, "seconds": args.seconds, "fault_s": args.fault_seconds,
             "hostile": args.hostile, "drain_s": args.drain}  # fmt: skip
    if args.quick:
        sized = {**sized, **QUICK}
    return ChaosOptions(**sized, broker_down_s=args.broker_down, hang_worker=HANG_WORKER)


def run(faults: list[str], options: ChaosOptions, run_root: Path) -> list[dict[str, Any]]:
    settings = Settings.from_env()
    trained, signing_key = ensure_trained_model(settings, run_root)
    print(trained, flush=True)
    rows = []
    for fault in faults:
        print(f"[{fault}] {options.describe(fault)}", flush=True)
        with ChaosServices.running() as services:
            row = run_fault(fault, services, settings.registry_path, signing_key, options,
                            run_root / fault)  # fmt: skip
        rows.append(row)
        print(f"[{fault}] in {row['records_in']:,} decided {row['decided']:,} dead-lettered "
              f"{row['dead_lettered']:,} lost {row['lost']:,} duplicates {row['duplicates']:,} "
              f"worker alive {row['worker_alive']} recovery {row['recovery_s']} s",
              flush=True)  # fmt: skip
    return rows


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def row_notes(row: dict[str, Any]) -> list[str]:
    """What the table's columns do not say: the broker's own loss, skips, exits."""
    notes = [f"{row['degraded']:,} decisions degraded, {row['stand_in']:,} stand-in"]
    if row.get("redis_resets"):
        notes.append(f"Redis found restarted empty {row['redis_resets']:,.0f} time(s), then "
                     f"{row['partial_history']:,.0f} decisions on partial history")  # fmt: skip
    if row.get("broker_lost_logs"):
        notes.append(f"the worker found the partition's log lost {row['broker_lost_logs']:,.0f} "
                     "time(s) and read it again from its start")  # fmt: skip
    if row.get("broker_lost_acked") is not None:
        notes.append(f"{row['broker_lost_acked']:,} records acknowledged before the restart "
                     "are gone from the broker (in memory; a real Kafka keeps them); the "
                     "harness re-created the topics and paused its producer across the "
                     "restart")  # fmt: skip
    if conflicting := (row.get("hostile_kinds") or {}).get("conflicting_duplicate"):
        notes.append(f"{conflicting:,} hostile records reuse an existing txn_id with other "
                     "content (conflicting duplicates)")  # fmt: skip
    if row["lost"]:
        notes.append(f"of the lost, {row['lost_skipped']:,} lie below the group's committed "
                     "offset (skipped), the rest were never reached")  # fmt: skip
    if row["worker_exit"] is not None:
        notes.append(f"the worker exited with {row['worker_exit']}")
    if row.get("worker_rc_after_stop") == -9:
        notes.append("the worker ignored SIGTERM and was killed")
    if row["producer_failures"]:
        notes.append(f"{row['producer_failures']:,} sends failed: {row['producer_error']}")
    return notes


def format_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Chaos: faults against real services (issue 10 §9)",
        "",
        *provenance_lines(result),
        "",
        "One worker per row on a fresh embedded Tansu broker and redis-server, fresh topics "
        f"(one partition), {result['options']['rate']:g} records/s for "
        f"{result['options']['seconds']:g} s, the fault a third of the way in. *Lost*: a "
        "record the transactions topic holds with neither a decision nor a dead letter. "
        "*Duplicates*: txn_ids decided more than once. *Recovery*: seconds from the end of "
        "the fault until every record produced before it was decided or dead-lettered "
        "(never: some were lost). *Longest wait*: the most seconds a record waited from "
        "its production to its decision or letter. JSON: `bench/chaos/chaos.json`.",
        "",
        "| fault | records in | decided | dead-lettered | duplicates | lost | worker alive "
        "| recovery s | longest wait s |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in result["rows"]:
        lost = f"**{row['lost']:,}**" if row["lost"] else "0"
        lines.append(
            f"| {row['what']} | {row['records_in']:,} | {row['decided']:,} "
            f"| {row['dead_lettered']:,} | {row['duplicates']:,} | {lost} "
            f"| {_yes(row['worker_alive'])} | {_seconds(row['recovery_s'])} "
            f"| {_seconds(row['longest_wait_s'])} |"
        )
    lines += ["", "Notes per row:", ""]
    lines += [f"- {row['fault']}: {'; '.join(row_notes(row))}." for row in result["rows"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = ChaosOptions()
    parser.add_argument("--rate", type=float, default=defaults.rate)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--fault-seconds", type=float, default=defaults.fault_s)
    parser.add_argument("--broker-down", type=float, default=defaults.broker_down_s)
    parser.add_argument("--hostile", type=int, default=defaults.hostile)
    parser.add_argument("--drain", type=float, default=defaults.drain_s)
    parser.add_argument("--quick", action="store_true", help=f"small rows: {QUICK}")
    parser.add_argument("--rows", default=",".join(FAULTS),
                        help=f"comma-separated, of {', '.join(FAULTS)}")  # fmt: skip
    parser.add_argument("--json", type=Path, default=Path("bench/chaos/chaos.json"))
    parser.add_argument("--markdown", type=Path, default=Path("bench/CHAOS.md"))
    args = parser.parse_args()
    faults = [name for name in args.rows.split(",") if name]
    if unknown := set(faults) - set(FAULTS):
        parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(FAULTS)}")
    options = options_from(args)
    run_root = Path(tempfile.mkdtemp(prefix="fraudstream-chaos-"))
    rows = run(faults, options, run_root)
    result = {
        **provenance("bench.chaos"),
        "options": asdict(options), "worker_logs": str(run_root), "rows": rows,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.markdown.write_text(format_markdown(result))
    print(f"wrote {args.json} and {args.markdown}; worker logs in {run_root}")


if __name__ == "__main__":
    main()
