"""Two versions of the worker deciding the same transactions at the same time: CPU ratio.

A 60 s load test at 600/s varies by ±7 % from run to run on this machine (its speed
swings, bench/RESULTS.md), so alternating two versions cannot show a change worth 3 %.
Here both run at once: each version is a folder put first on PYTHONPATH (holding
`fraudstream/{stream,models,features,thresholds}`, e.g. `git archive REV stream models
features thresholds | tar -x -C A/fraudstream`), and its worker consumes the same
transactions topic in its own consumer group, with its own Redis database and output
topics, on one embedded broker and redis-server. Each worker's CPU over the same window
is divided by the transactions produced in it; the runs alternate which starts first.

    python -m bench.bench_paired_workers A B [--tps 600] [--seconds 40] [--runs 4]

Both workers share two cores with the broker, Redis and the producer, so the figures per
1,000 are higher than a lone worker's; the ratio B / A is the result. A run where either
worker did not decide everything by the end is reported as such.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fraudstream.models.signing import signing_key_for
from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.cpu_usage import CpuSource, cpu_seconds
from fraudstream.stream.tools.ledger import read_topic
from fraudstream.stream.tools.loadtest_traffic import PRODUCER_PROGRAM, build_step_records
from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from fraudstream.stream.tools.workers import (
    REPLAYED_HISTORY,
    WorkerProcess,
    start_workers,
    stop_workers,
    worker_env,
)

#: Seconds after the producer starts before CPU is counted (start-up, cold card caches),
#: and before it ends (the last records' decisions still in flight).
WARM_UP_S = 10.0
COOL_DOWN_S = 5.0
#: How long the workers get after the last record to decide the rest.
DRAIN_S = 10.0


def paired_run(
    broker: EmbeddedBroker, redis_socket: str, versions: tuple[Path, Path], run: str,
    registry: Path, tps: float, seconds: float, seed: int,
) -> dict[Path, float | None]:  # fmt: skip
    """CPU s per 1,000 of each version's worker in one run (None: it fell behind or died).

    `redis_socket` is a `unix://` URL without a database: each version gets its own."""
    key = signing_key_for(registry, Settings.from_env().signing_key)
    transactions = f"{run}-transactions"
    outputs = {version: (f"{run}-{index}-decisions", f"{run}-{index}-dlq", f"{run}-{index}-labels")
               for index, version in enumerate(versions)}  # fmt: skip
    broker.create_topics([transactions, *(t for names in outputs.values() for t in names)], 1)
    records = build_step_records([tps], seconds, seed)[0]
    workers: dict[Path, WorkerProcess] = {}
    with tempfile.TemporaryDirectory(prefix=f"paired-{run}-") as folder_name:
        folder = Path(folder_name)
        try:
            for index, version in enumerate(versions):
                decisions, dlq, labels = outputs[version]
                env = worker_env(
                    broker.url, f"{redis_socket}?db={index + 1}", key,
                    "paired-workers-id-hash-key-0123456789abcdef", registry=str(registry),
                    app_id=f"{run}-{index}", partitions="1", max_event_skew_s=REPLAYED_HISTORY,
                    topic_transactions=transactions, topic_decisions=decisions, topic_dlq=dlq,
                    topic_labels=labels,
                )  # fmt: skip
                env["PYTHONPATH"] = str(version.resolve())
                workers[version] = start_workers(1, env, folder / f"worker-{index}")[0]
            records_path = folder / "records"
            records_path.write_bytes(b"".join(card + b"\t" + v + b"\n" for _, card, v in records))
            producer = subprocess.Popen(
                [sys.executable, "-c", PRODUCER_PROGRAM, broker.bootstrap, transactions,
                 str(records_path), str(folder / "sent.json"), repr(tps)],
            )  # fmt: skip
            time.sleep(WARM_UP_S)
            before = {version: _worker_cpu(worker) for version, worker in workers.items()}
            started = time.monotonic()
            time.sleep(seconds - WARM_UP_S - COOL_DOWN_S)
            after = {version: _worker_cpu(worker) for version, worker in workers.items()}
            thousands = tps * (time.monotonic() - started) / 1000
            producer.wait()
            time.sleep(DRAIN_S)
        finally:
            stop_workers(list(workers.values()))
    result: dict[Path, float | None] = {}
    for version, (decisions, dlq, _) in outputs.items():
        # read, not `end_offsets`: Tansu 0.6's falls short by its last batch (`read_topic`)
        decided = sum(len(read_topic(broker.bootstrap, topic)) for topic in (decisions, dlq))
        start, end = before[version], after[version]
        if start is None or end is None or decided < len(records):
            result[version] = None
        else:
            result[version] = (end - start) / thousands
    return result


def _worker_cpu(worker: WorkerProcess) -> float | None:
    return cpu_seconds(CpuSource("worker", worker.process.pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("versions", type=Path, nargs=2, metavar="FOLDER")
    parser.add_argument("--tps", type=float, default=600.0)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    args = parser.parse_args()
    a, b = args.versions
    ratios = []
    print(f"| run | first | {a} | {b} | ratio |\n|---:|---|---:|---:|---:|")
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis:
        assert redis.unix_url is not None, "the embedded redis-server listens on a socket"
        redis_socket = redis.unix_url.split("?")[0]
        for run in range(args.runs):
            order = (a, b) if run % 2 == 0 else (b, a)
            cpu = paired_run(broker, redis_socket, order, f"paired{run}-{int(time.time())}",
                             args.registry.resolve(), args.tps, args.seconds, seed=run)  # fmt: skip
            cpu_a, cpu_b = cpu[a], cpu[b]
            ratio = cpu_b / cpu_a if cpu_a and cpu_b else None
            if ratio is not None:
                ratios.append(ratio)
            figures = " | ".join("behind" if c is None else f"{c:.3f}" for c in (cpu_a, cpu_b))
            print(f"| {run + 1} | {order[0]} | {figures} | "
                  f"{'-' if ratio is None else f'{ratio:.3f}'} |", flush=True)  # fmt: skip
    if ratios:
        print(f"\nmedian ratio {b} / {a}: {statistics.median(ratios):.3f} ({len(ratios)} runs)")


if __name__ == "__main__":
    main()
