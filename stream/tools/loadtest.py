"""`fraudstream loadtest`: the highest steady rate the pipeline sustains within its budget.

A step produces at a fixed rate for `duration_s` from a separate process (so the producer
and the clock that paces it do not share a GIL with the measuring consumer), while this
process reads the decisions and times each one: end-to-end latency = decision consumed
(wall clock) − transaction sent (wall clock), same host. A step is *sustained* when its
p99 is within the budget, the backlog at the end of production (plus `GRACE_S` for records
in flight) is under half a second of traffic, and ≥ 99 % of what was sent was decided.

The same ramp can run against baseline workers (baselines.py) with the same Faust
settings, so the report can say what share of Faust's own ceiling the pipeline reaches.
The passthrough baseline is judged like the pipeline; noop, which emits nothing to time,
on keeping up only. Baselines run with the worker's consumer settings
(`consume_as_the_worker`, stream/worker/faust_app.py: the short fetch wait, the hand-over
without tasks). Each system gets its own topics and consumer group; workers start once per
system.

Each system's ramp stops after the first step far past its knee (`stop_reason`: p99 over
10 × the budget, or a backlog / undecided share the system plainly did not keep up with),
so the run's time goes to the steps that matter; the other systems still run their own
ramps, so every baseline's sustainable rate and ratio is in the same report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fraudstream.models.signing import SigningKey
from fraudstream.stream.latency import latency_percentiles, p99_by_window
from fraudstream.stream.offline.training import ensure_trained_model
from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.baselines import (
    BASELINES,
    processed_count,
    raw_aiokafka_consume_rate,
    start_baselines,
)
from fraudstream.stream.tools.cpu_usage import CpuMeter, CpuSource, load_average, run_sources
from fraudstream.stream.tools.loadtest_report import (
    GRACE_S,
    PAST_KNEE_DRAIN_S,
    backlog_past_stop,
    describe_machine,
    emits_decisions,
    ratio,
    stop_reason,
    summarize_system,
    write_loadtest_report,
)
from fraudstream.stream.tools.loadtest_traffic import (
    PRODUCER_PROGRAM,
    DecisionClock,
    build_step_records,
    scrape_workers,
    stage_means_ms,
)
from fraudstream.stream.tools.services import (
    ServiceUrls,
    create_topics,
    embedded_services,
    kafka_bootstrap,
)
from fraudstream.stream.tools.workers import (
    REPLAYED_HISTORY,
    WorkerProcess,
    partitions_per_topic,
    start_workers,
    stop_workers,
    worker_env,
)


@dataclass(frozen=True)
class LoadTestOptions:
    """One load test. Give `tps` (one step) or `ramp` ("START:STEP:MAX", transactions/s).

    `baseline` replaces the pipeline as the system under test (``noop``/``passthrough``);
    `compare_with` runs the same ramp against those baselines afterwards, in one invocation.
    `raw_consume_records` = 0 skips the bare aiokafka reference measurement.
    """

    tps: float | None = None
    ramp: str | None = None
    duration_s: float = 10.0
    workers: int = 1
    partitions: int | None = None  # None: see `partitions_per_topic`
    budget_ms: float = 100.0
    baseline: str | None = None
    compare_with: tuple[str, ...] = ()
    out: Path | None = None
    seed: int = 2026
    session_timeout_s: float = 6.0
    drain_timeout_s: float = 30.0
    raw_consume_records: int = 50_000

    def rates(self) -> list[float]:
        """The step rates in order; raises ValueError with the flag to fix."""
        if (self.tps is None) == (self.ramp is None):
            raise ValueError("give exactly one of --tps or --ramp START:STEP:MAX")
        if self.tps is not None:
            rates = [float(self.tps)]
        else:
            assert self.ramp is not None
            rates = parse_ramp(self.ramp)
        if any(rate <= 0 for rate in rates) or self.duration_s <= 0 or self.workers < 1:
            raise ValueError("rates and --duration must be > 0, --workers >= 1")
        for name in (self.baseline, *self.compare_with):
            if name is not None and name not in BASELINES:
                raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
        return rates


def parse_ramp(text: str) -> list[float]:
    """ "500:500:2500" -> [500, 1000, 1500, 2000, 2500]."""
    try:
        start, step, top = (float(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"--ramp {text!r} must be START:STEP:MAX, e.g. 500:500:2500") from None
    if start <= 0 or step <= 0 or top < start:
        raise ValueError(f"--ramp {text!r}: need START > 0, STEP > 0 and MAX >= START")
    count = int((top - start) / step + 1e-9) + 1
    return [start + i * step for i in range(count)]


def _system_topics(settings: Settings, run_id: str, system: str) -> dict[str, str]:
    suffix = f"loadtest-{run_id}-{system}"
    return {
        "topic_transactions": f"{settings.topic_transactions}.{suffix}",
        "topic_decisions": f"{settings.topic_decisions}.{suffix}",
        "topic_labels": f"{settings.topic_labels}.{suffix}",
        "topic_dlq": f"{settings.topic_dlq}.{suffix}",
    }


def run_loadtest(settings: Settings, options: LoadTestOptions) -> dict[str, Any]:
    """Run the ramp against the system under test and each `compare_with` baseline.

    Starts embedded services when settings name none, trains a model if the registry is
    empty (pipeline only), and stops every process it started. Returns the report dict
    (see loadtest_report.py for the keys).
    """
    rates = options.rates()
    settings = replace(
        settings, partitions=partitions_per_topic(settings, options.workers, options.partitions),
        id_hash_key=settings.run_id_hash_key(),  # one per run, before anything starts
    )  # fmt: skip
    run_id = uuid.uuid4().hex[:8]
    if options.out is not None:
        run_dir = options.out.parent / f"{options.out.stem}-run"
    else:
        run_dir = Path(tempfile.mkdtemp(prefix="fraudstream-loadtest-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = replace(settings, registry_path=settings.registry_path.resolve())
    systems = [options.baseline or "pipeline", *options.compare_with]
    signing_key = SigningKey.generate()  # baselines load no model: any key will do
    if "pipeline" in systems:
        trained, signing_key = ensure_trained_model(settings, run_dir)
        print(trained, flush=True)
    step_records = build_step_records(rates, options.duration_s, options.seed)
    results: dict[str, dict[str, Any]] = {}
    raw_tps = None
    with embedded_services(settings, declare_topics=False) as urls:
        for system in systems:
            print(f"{system}: {len(rates)} step(s) of {options.duration_s:g}s", flush=True)
            steps = _run_system(system, settings, signing_key, urls, options, step_records,
                                run_dir, run_id)  # fmt: skip
            results[system] = summarize_system(
                steps, len(rates), options.budget_ms, emits_decisions(system)
            )
        if options.raw_consume_records > 0:
            topic = f"{settings.topic_transactions}.loadtest-{run_id}-raw"
            bootstrap = kafka_bootstrap(urls.kafka_url)
            create_topics(bootstrap, [topic], settings.partitions, security=urls.kafka_security)
            raw_tps = raw_aiokafka_consume_rate(
                bootstrap, topic, options.raw_consume_records, security=urls.kafka_security
            )
    main = results[systems[0]]
    return {
        "system": systems[0],
        "steps": main["steps"],
        "max_sustainable_tps": main["max_sustainable_tps"],
        "stopped_after_tps": main["stopped_after_tps"],
        "stop_reason": main["stop_reason"],
        "budget_ms": options.budget_ms,
        "duration_s": options.duration_s,
        "baselines": {name: results[name] for name in systems[1:]},
        "ratios": {
            name: ratio(main["max_sustainable_tps"], results[name]["max_sustainable_tps"])
            for name in systems[1:]
        },
        "raw_aiokafka_consume_tps": raw_tps,
        "workers": options.workers,
        "partitions": settings.partitions,
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@dataclass
class _SystemUnderTest:
    """What a step needs: where to produce, how to count what is done, who to watch."""

    bootstrap: str
    topic: str
    folder: Path
    processes: list[WorkerProcess]
    clock: DecisionClock | None  # None for noop: counted from its status files instead
    cpu: CpuMeter

    def metrics_urls(self) -> list[str]:
        """The /metrics URL each pipeline worker wrote beside its status file."""
        return [url for p in self.processes if (url := p.metrics_url()) is not None]

    def done(self) -> int:
        return len(self.clock.seen) if self.clock else processed_count(self.processes)

    def wait(self, seconds: float) -> None:
        """Wait about `seconds`, reading decisions meanwhile; raise if a worker died."""
        if any(p.process.poll() is not None for p in self.processes):
            raise RuntimeError(
                f"a worker died during the load test:\n{self.processes[0].log_tail()}"
            )
        self.clock.poll(seconds) if self.clock else time.sleep(seconds)

    def wait_for(self, target: int, timeout_s: float, stall_s: float = float("inf")) -> None:
        """Until `target` are done, the deadline passes, or nothing moved for `stall_s`."""
        deadline = time.monotonic() + timeout_s
        last, last_change = self.done(), time.monotonic()
        while last < target and time.monotonic() < deadline:
            self.wait(0.05)
            if (current := self.done()) != last:
                last, last_change = current, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                return


def _run_system(
    system: str, settings: Settings, signing_key: SigningKey, urls: ServiceUrls,
    options: LoadTestOptions,
    step_records: list[list[tuple[str, bytes, bytes]]], run_dir: Path, run_id: str,
) -> list[dict[str, Any]]:  # fmt: skip
    bootstrap = kafka_bootstrap(urls.kafka_url)
    topics = _system_topics(settings, run_id, system)
    create_topics(bootstrap, topics.values(), settings.partitions, security=urls.kafka_security)
    env = worker_env(
        urls.kafka_url, urls.redis_unix_url or urls.redis_url, signing_key,
        settings.run_id_hash_key(),
        registry=str(settings.registry_path), app_id=f"loadtest-{run_id}-{system}",
        partitions=str(settings.partitions), max_event_skew_s=REPLAYED_HISTORY, **topics,
    )  # fmt: skip
    folder, timeout = run_dir / system, options.session_timeout_s
    if system == "pipeline":
        processes = start_workers(options.workers, env, folder, session_timeout_s=timeout)
    else:
        processes = start_baselines(system, options.workers, env, folder, session_timeout_s=timeout)
    clock = None
    if emits_decisions(system):
        clock = DecisionClock(
            bootstrap, topics["topic_decisions"], settings.partitions, security=urls.kafka_security
        )
    cpu = CpuMeter(
        run_sources((p.process.pid for p in processes), urls.pids)
        + [CpuSource("measurer", os.getpid())]
    )
    sut = _SystemUnderTest(bootstrap, topics["topic_transactions"], folder, processes, clock, cpu)
    steps: list[dict[str, Any]] = []
    produced_before = 0
    try:
        for index, (rate, records) in enumerate(zip(options.rates(), step_records, strict=True)):
            before = scrape_workers(sut.metrics_urls())
            sut.cpu.start()
            sent = _produce_step(sut, records, rate, folder / f"step-{index + 1}")
            step = _measure_step(sut, records, rate, sent, produced_before, options)
            after = scrape_workers(sut.metrics_urls())
            step["stages_ms"] = stage_means_ms(before.stages, after.stages)
            stand_ins = after.stand_ins - before.stand_ins
            pipeline_decided = system == "pipeline" and step["decided"] > 0
            step["stand_in_share"] = stand_ins / step["decided"] if pipeline_decided else None
            produced_before += len(records)
            steps.append(step)
            print(f"  {system} step {index + 1}: {_step_line(step)}", flush=True)
            if reason := stop_reason(step, options.budget_ms, emits_decisions(system)):
                print(f"  {system} stops here: {reason}", flush=True)
                break
    finally:
        stop_workers(processes)
        if clock is not None:
            clock.close()
    return steps


def _produce_step(
    sut: _SystemUnderTest, records: list[tuple[str, bytes, bytes]], rate: float, prefix: Path
) -> dict[str, Any]:
    """Produce one step from a spawned process while reading decisions; its send log."""
    records_path, sent_path = prefix.with_suffix(".records"), prefix.with_suffix(".sent.json")
    records_path.write_bytes(b"".join(key + b"\t" + value + b"\n" for _, key, value in records))
    # A child process, not a thread: the producer's pacing must not share our GIL.
    with prefix.with_suffix(".producer.log").open("wb") as log:
        producer = subprocess.Popen(
            [sys.executable, "-c", PRODUCER_PROGRAM, sut.bootstrap, sut.topic,
             str(records_path), str(sent_path), repr(rate)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        while producer.poll() is None:
            sut.wait(0.05)
    if producer.returncode != 0 or not sent_path.exists():
        raise RuntimeError(f"load producer for {sut.topic} exited with {producer.returncode}")
    sent: dict[str, Any] = json.loads(sent_path.read_text())
    if sent["failures"]:
        raise RuntimeError(f"{sent['failures']} sends failed: {sent['first_failure']}")
    return sent


def _measure_step(
    sut: _SystemUnderTest, records: list[tuple[str, bytes, bytes]], rate: float,
    sent: dict[str, Any], produced_before: int, options: LoadTestOptions,
) -> dict[str, Any]:  # fmt: skip
    """Backlog `GRACE_S` after the last send, then drain (bounded) and time each decision.

    A backlog already past the stop threshold ends the ramp after this step, so its drain is
    cut to `PAST_KNEE_DRAIN_S`: it then reports what was decided by then. No later step
    runs, so nothing left over can be credited to one.
    """
    target = produced_before + len(records)
    sut.wait_for(target, GRACE_S)
    lag_end = max(0, target - sut.done())
    drain_s = options.drain_timeout_s
    if backlog_past_stop(lag_end, rate):
        drain_s = min(drain_s, PAST_KNEE_DRAIN_S)
    sut.wait_for(target, drain_s, stall_s=5.0)
    timed: list[tuple[float, float]] = []
    if sut.clock is not None:
        seen = sut.clock.seen
        timed = [
            (sent_at, 1000.0 * (seen[txn_id] - sent_at))
            for (txn_id, _, _), sent_at in zip(records, sent["sent"], strict=True)
            if txn_id in seen
        ]
        decided = len(timed)
    else:
        decided = min(len(records), max(0, sut.done() - produced_before))
    latencies = [latency for _, latency in timed]
    return {
        "tps_target": rate,
        "tps_achieved": len(records) / sent["seconds"] if sent["seconds"] > 0 else 0.0,
        "produced": len(records),
        "decided": decided,
        "e2e_latency_ms": latency_percentiles(latencies),
        "lag_end": lag_end,
        "drain_limit_s": drain_s,
        "e2e_p99_ms_by_10s_window": p99_by_window(timed),
        "cpu_s_per_1000_txn": sut.cpu.per_1000(len(records), {"producer": sent["cpu_s"]}),
        "load_average": load_average(),
        "stages_ms": {},
    }


def _step_line(step: dict[str, Any]) -> str:
    latency = step["e2e_latency_ms"]
    p99 = "n/a" if latency["p99"] is None else f"{latency['p99']:.1f} ms"
    return (
        f"target {step['tps_target']:,.0f}/s achieved {step['tps_achieved']:,.0f}/s "
        f"decided {step['decided']:,}/{step['produced']:,} lag_end {step['lag_end']:,} "
        f"p99 {p99}"
    )


def add_loadtest_arguments(parser: argparse.ArgumentParser) -> None:
    """The `fraudstream loadtest` flags (the CLI adds a subparser and calls this)."""
    parser.add_argument("--tps", type=float, default=None, help="one step at this rate")
    parser.add_argument("--ramp", default=None, help="START:STEP:MAX transactions/s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--partitions", type=int, default=None,
        help="per topic (default: one per worker on the embedded broker)",
    )  # fmt: skip
    parser.add_argument("--budget-ms", type=float, default=100.0, help="p99 budget")
    parser.add_argument(
        "--baseline", default="", help="also run these baselines, e.g. noop,passthrough"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("runs/loadtest/loadtest.json"),
        help="figures; <stem>.md and <stem>_*.png are written beside it",
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.set_defaults(run=run_from_args)


def run_from_args(args: argparse.Namespace) -> int:
    """Pipeline first, then each `--baseline`; writes the report and prints the verdict."""
    baselines = tuple(name.strip() for name in args.baseline.split(",") if name.strip())
    options = LoadTestOptions(
        tps=args.tps,
        ramp=args.ramp,
        duration_s=args.duration,
        workers=args.workers,
        partitions=args.partitions,
        budget_ms=args.budget_ms,
        compare_with=baselines,
        out=args.json,
        seed=args.seed,
    )
    try:
        options.rates()
    except ValueError as error:
        print(f"fraudstream loadtest: {error}", file=sys.stderr)
        return 2
    result = run_loadtest(Settings.from_env(), options)
    paths = write_loadtest_report(result, args.json)
    best = result["max_sustainable_tps"]
    print(
        f"max sustainable: {'none' if best is None else f'{best:,.0f}/s'} "
        f"(p99 <= {options.budget_ms:g} ms); ratios {result['ratios']}"
    )
    print("wrote " + ", ".join(str(path) for path in paths))
    return 0
