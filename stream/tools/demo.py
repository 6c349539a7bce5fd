"""`fraudstream demo`: the whole system on one laptop, from nothing to a report.

Starts the embedded broker and Redis (unless FRAUDSTREAM_* points elsewhere), trains a
model if the registry is empty, starts a worker, replays a fresh generated stream at a
steady rate with a few malformed records mixed in, follows the decisions live, and writes
a run folder. Everything it started, it stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fraudstream.models.registry import load_version
from fraudstream.models.signing import SigningKey
from fraudstream.stream.contract import DeadLetter, Decision
from fraudstream.stream.latency import latency_percentiles, p99_by_window
from fraudstream.stream.offline.training import ensure_trained_model
from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.sim.replay import ReplayProgress, replay
from fraudstream.stream.sim.streamfile import write_stream
from fraudstream.stream.tools.chaos import worker_counters
from fraudstream.stream.tools.cpu_usage import (
    CpuMeter,
    CpuSource,
    load_average,
    per_1000,
    run_sources,
)
from fraudstream.stream.tools.drift_report import compare_thresholds, write_drift_report
from fraudstream.stream.tools.footprint import RedisCounters, run_footprint
from fraudstream.stream.tools.run_files import (
    DECISIONS_FILE,
    THRESHOLD_HISTORY_FILE,
    TRANSACTIONS_FILE,
    write_decisions,
    write_threshold_history,
)
from fraudstream.stream.tools.run_report import format_summary, summarize_run, write_run_folder
from fraudstream.stream.tools.services import ServiceUrls, embedded_services, kafka_bootstrap
from fraudstream.stream.tools.shadow_report import compare_shadow
from fraudstream.stream.tools.topic_reader import TopicReader
from fraudstream.stream.tools.workers import (
    REPLAYED_HISTORY,
    WorkerProcess,
    partitions_per_topic,
    start_workers,
    stop_workers,
    worker_env,
)
from fraudstream.stream.transport import PLAINTEXT, KafkaSecurity, redact_url
from fraudstream.stream.worker.recalibration import shared_threshold
from fraudstream.thresholds.pair import ThresholdPair
from fraudstream.thresholds.rules import RulesError, RuleSet, load_rules

#: How long the follower may take to connect to the broker.
FOLLOWER_START_TIMEOUT_S = 30.0
#: The follower's fetch wait. Its reading time is not the measurement (each decision
#: carries the worker's own latency), and the embedded broker scans a partition's whole
#: log on every fetch that finds data, so a patient follower saves broker CPU (issue 9).
FOLLOWER_FETCH_WAIT_MS = 200
#: Replay seed of `--scenario drift` (see bench/RESULTS.md for how other seeds fare).
DRIFT_SEED = 2027
#: Deliberately broken records mixed into the replay, to show the dead-letter path.
MALFORMED_RECORDS = [
    b"{this is not json",
    b'{"txn_id": "bad-1", "card_id": "c1"}',
    b'{"txn_id": "bad-2", "card_id": "c1", "merchant_id": "m1", "amount": -20, '
    b'"currency": "EUR", "country": "FR", "channel": "pos", "event_time": 1767225600}',
    b'{"txn_id": "bad-3", "card_id": "c1", "merchant_id": "m1", "amount": 20, '
    b'"currency": "EUR", "country": "FR", "channel": "pos", "event_time": 99}',
    b"\xff\xfe binary garbage",
]


@dataclass(frozen=True)
class DemoOptions:
    transactions: int = 50_000
    rate: float = 500.0
    seed: int = 2026
    out: Path = Path("runs/demo")
    workers: int = 1
    scenario: str = "steady"
    shadow_version: str | None = None
    partitions: int | None = None  # None: see `partitions_per_topic`


class DecisionFollower:
    """Reads `decisions` and the DLQ from the beginning, in a background `TopicReader`.

    A record that does not follow the contract (stream/contract.py) is counted in
    `unreadable` and skipped, so one stray record cannot stop the follower.
    """

    def __init__(
        self, bootstrap: str, decisions: str, dlq: str, partitions: int, *,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:  # fmt: skip
        self.decisions_topic = decisions
        self.decisions: list[Decision] = []
        self.read_at: list[float] = []  # wall clock when each decision was read
        self.dead_letters: list[DeadLetter] = []
        self.unreadable = 0
        self.reader = TopicReader(
            bootstrap, [decisions, dlq], partitions, self._keep,
            from_end=False, fetch_max_wait_ms=FOLLOWER_FETCH_WAIT_MS, security=security,
        )  # fmt: skip

    def _keep(self, topic: str, value: bytes, read_at: float) -> None:
        try:
            if topic == self.decisions_topic:
                self.decisions.append(Decision.from_json_bytes(value))
                self.read_at.append(read_at)
            else:
                self.dead_letters.append(DeadLetter.from_json_bytes(value))
        except ValueError:  # not JSON, or not the contract
            self.unreadable += 1

    def start(self) -> None:
        self.reader.start()
        self.reader.wait_ready(FOLLOWER_START_TIMEOUT_S)

    def stop(self) -> None:
        self.reader.stop()


def _progress_line(follower: DecisionFollower, produced: int, total: int, started: float) -> str:
    decided = len(follower.decisions)
    recent = [d.latency_ms["end_to_end"] for d in follower.decisions[-2000:]]
    p99 = latency_percentiles(recent, ("p99",))["p99"] or 0.0
    width = 30
    filled = int(width * decided / max(total, 1))
    elapsed = time.monotonic() - started
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] produced {produced:,}/{total:,} "
        f"decided {decided:,} dlq {len(follower.dead_letters)} "
        f"rate {decided / max(elapsed, 1e-9):,.0f}/s p99 {p99:.1f} ms"
    )


def rules_in_force(settings: Settings) -> RuleSet | None:
    """The business rules the demo's workers decide with, for the report (None when the
    file is invalid: the workers then decide without rules, and log why)."""
    try:
        return load_rules(settings.rules_path)
    except RulesError:
        return None


def run_demo(settings: Settings, options: DemoOptions) -> dict[str, Any]:
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    settings = replace(
        settings, registry_path=settings.registry_path.resolve(),
        partitions=partitions_per_topic(settings, options.workers, options.partitions),
        id_hash_key=settings.run_id_hash_key(),  # one per run, before anything starts
    )  # fmt: skip
    trained, signing_key = ensure_trained_model(settings, out)
    print(trained, flush=True)
    stream = generate_stream(GeneratorConfig(options.transactions, seed=options.seed))
    labels = {label.txn_id: label for label in stream.labels}
    write_stream(stream, out / TRANSACTIONS_FILE)  # for `fraudstream explain --run`
    with embedded_services(settings) as urls:
        print(f"broker {urls.kafka_url}  redis {redact_url(urls.redis_url)}", flush=True)
        redis_before = RedisCounters.read(urls.redis_url)
        env = worker_env(urls.kafka_url, urls.redis_unix_url or urls.redis_url, signing_key,
                         settings.run_id_hash_key(), registry=str(settings.registry_path),
                         partitions=str(settings.partitions),
                         max_event_skew_s=REPLAYED_HISTORY)  # fmt: skip
        if options.shadow_version is not None:
            env["FRAUDSTREAM_SHADOW_VERSION"] = options.shadow_version
        workers = start_workers(options.workers, env, out / "workers")
        bootstrap = kafka_bootstrap(urls.kafka_url)
        follower = DecisionFollower(
            bootstrap, settings.topic_decisions, settings.topic_dlq, settings.partitions,
            security=urls.kafka_security,
        )  # fmt: skip
        follower.start()
        cpu = _demo_cpu_meter(workers, urls, follower)
        cpu.start()
        started = time.monotonic()
        interactive = sys.stdout.isatty()
        last_print = [0.0]

        def show(progress: ReplayProgress) -> None:
            now = time.monotonic()
            if interactive or now - last_print[0] > 5.0:
                line = _progress_line(follower, progress.produced, options.transactions, started)
                print(("\r" if interactive else "") + line, end="" if interactive else "\n",
                      flush=True)  # fmt: skip
                last_print[0] = now

        try:
            report = replay(
                bootstrap, stream.transactions, stream.labels,
                topic=settings.topic_transactions, labels_topic=settings.topic_labels,
                rate=options.rate, on_progress=show, extra_records=MALFORMED_RECORDS,
                security=urls.kafka_security,
            )  # fmt: skip
            expected = report.produced + report.malformed_produced
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = len({d.txn_id for d in follower.decisions})
                if done + len(follower.dead_letters) >= expected:
                    break
                show(ReplayProgress(report.produced, report.labels_produced, 0.0))
                time.sleep(0.2)
            seconds = time.monotonic() - started
            cpu_seconds = cpu.seconds_by_role()
            per_worker = per_worker_throughput(workers, seconds)
        finally:
            stop_workers(workers)
            follower.stop()
        follower.reader.raise_error()
        ids = settings.id_pseudonyms()  # the ids the workers wrote to Redis
        footprint = run_footprint(
            urls.redis_url, redis_before, [ids.transaction(t) for t in stream.transactions],
            bootstrap,
            dict(zip(("transactions", "decisions", "labels", "dlq"), settings.topics, strict=True)),
            label_delay_s=settings.label_delay_s, security=urls.kafka_security,
        )  # fmt: skip
        recalibrations = asyncio.run(
            _threshold_history(urls.redis_url, settings.app_id, signing_key)
        )
    if interactive:
        print()
    summary = summarize_run(
        follower.decisions, labels, produced=report.produced,
        dead_lettered=len(follower.dead_letters), seconds=seconds, cost=settings.cost_model,
        constraints=settings.threshold_constraints, rule_set=rules_in_force(settings),
    )  # fmt: skip
    summary["cpu_s_per_1000_txn"] = per_1000(cpu_seconds, report.produced)
    summary["load_average"] = load_average()
    summary["e2e_p99_ms_by_10s_window"] = p99_by_window(
        [(read - d.latency_ms["end_to_end"] / 1000, d.latency_ms["end_to_end"])
         for d, read in zip(follower.decisions, follower.read_at, strict=True)]
    )  # fmt: skip
    summary["replay_tps"] = report.achieved_tps
    summary["workers"], summary["partitions"] = options.workers, settings.partitions
    summary["malformed_produced"] = report.malformed_produced
    summary["footprint"] = footprint
    summary["per_worker"] = per_worker
    write_run_folder(out, summary, follower.decisions, labels)
    (out / "dead_letters.jsonl").write_text(
        "".join(json.dumps(letter.to_dict()) + "\n" for letter in follower.dead_letters)
    )
    write_decisions(out / DECISIONS_FILE, follower.decisions)
    write_threshold_history(out / THRESHOLD_HISTORY_FILE, recalibrations)
    print(format_summary(summary))
    print(format_per_worker(per_worker))
    shadow = compare_shadow(follower.decisions, labels, settings.cost_model)
    if shadow is not None:
        (out / "shadow.json").write_text(json.dumps(shadow, indent=2) + "\n")
        print(
            f"\nshadow {shadow['shadow']['model_version']} vs live "
            f"{shadow['live']['model_version']}: cost/txn ${shadow['shadow']['cost_per_txn']:.3f}"
            f" vs ${shadow['live']['cost_per_txn']:.3f}, decisions agree "
            f"{shadow['decision_agreement']:.1%} (shadow.json)"
        )
    if options.scenario == "drift":
        live = load_version(settings.registry_path, signing_key=signing_key)
        comparison = compare_thresholds(
            follower.decisions, labels, ThresholdPair.from_registry(live.version, live.metadata),
            stream.drift_time, settings.cost_model,
        )  # fmt: skip
        write_drift_report(out, comparison, recalibrations)
        static, dynamic = comparison["static"], comparison["dynamic"]
        print(
            f"\nafter the drift point: static ${static['cost_per_txn']:.3f}/txn "
            f"(recall {static['recall']:.3f}), dynamic ${dynamic['cost_per_txn']:.3f}/txn "
            f"(recall {dynamic['recall']:.3f}); {len(recalibrations)} recalibrations; "
            f"see drift.md"
        )
    print(f"\nrun folder: {out}/ (summary.json, report.md, plots, dead_letters.jsonl, "
          f"{DECISIONS_FILE}, {TRANSACTIONS_FILE})")
    return summary


def _demo_cpu_meter(
    workers: list[WorkerProcess], urls: ServiceUrls, follower: DecisionFollower
) -> CpuMeter:
    """Workers, services, and this process: its follower thread measures, the rest produces."""
    reader = follower.reader.native_id
    assert reader is not None, "start the follower first"
    return CpuMeter(
        run_sources((worker.process.pid for worker in workers), urls.pids)
        + [CpuSource("producer", os.getpid(), except_thread=reader),
           CpuSource("measurer", os.getpid(), only_thread=reader)]
    )  # fmt: skip


async def _threshold_history(
    redis_url: str, group: str, signing_key: SigningKey
) -> list[dict[str, Any]]:
    """Every published threshold version of this run (oldest first), with its figures."""
    shared = shared_threshold(redis_url, group, signing_key)
    try:
        history = await shared.history(1000)
    finally:
        await shared.close()
    return [
        {"version": entry["state"]["version"], "reason": entry["state"]["reason"],
         "review": entry["state"]["review"], "decline": entry["state"]["decline"],
         **entry["state"]["figures"]}
        for entry in reversed(history)
    ]  # fmt: skip


def per_worker_throughput(workers: list[WorkerProcess], seconds: float) -> list[dict[str, Any]]:
    """Each worker's partitions (its last status) and the decisions it made (its own
    `fraudstream_decisions_total`, read from its /metrics while it still runs), per second
    of the run: how the group shared the work. None for a worker that no longer answers."""
    rows = []
    for worker in workers:
        try:
            decisions: int | None = int(
                worker_counters(worker, {"n": "fraudstream_decisions_total"})["n"])
        except OSError:  # it died: the summary still comes, without its count
            decisions = None
        rows.append({"name": worker.name, "partitions": worker.partitions() or [],
                     "decisions": decisions,
                     "decisions_per_s": None if decisions is None
                     else round(decisions / max(seconds, 1e-9), 1)})  # fmt: skip
    return rows


def format_per_worker(per_worker: list[dict[str, Any]]) -> str:
    """One line per worker under the run summary."""
    return "\n".join(
        ["per worker:"]
        + [f"  {row['name']}: partitions {row['partitions']}  "
           + ("no answer from its /metrics" if row["decisions"] is None else
              f"{row['decisions']:,} decisions  {row['decisions_per_s']:,.1f}/s")
           for row in per_worker]
    )  # fmt: skip
