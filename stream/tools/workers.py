"""Start and stop `fraudstream worker` processes, for the demo, the load test and tests.

A worker is a separate process (Faust owns its event loop and signal handlers), told
where the services are through the same `FRAUDSTREAM_*` variables a user would set. It
reports its partition assignment in a status file, which is how we know it is ready.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fraudstream.models.signing import SigningKey
from fraudstream.stream.settings import Settings


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    status_file: Path
    log_file: Path

    def partitions(self) -> list[int] | None:
        try:
            return list(json.loads(self.status_file.read_text())["partitions"])
        except (OSError, ValueError, KeyError):
            return None

    def metrics_url(self) -> str | None:
        """The /metrics URL the worker wrote beside its status file (None before it did)."""
        try:
            return self.status_file.with_suffix(".metrics").read_text().strip()
        except OSError:
            return None

    def log_tail(self, max_chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-max_chars:]
        except OSError:
            return "<no log>"


class WorkerStartError(RuntimeError):
    """A worker exited or never got partitions; the message carries its log tail."""


def start_workers(
    count: int, env: dict[str, str], run_dir: Path, *, session_timeout_s: float = 6.0,
    ready_timeout_s: float = 60.0,
) -> list[WorkerProcess]:  # fmt: skip
    """Start `count` workers in one consumer group and wait until the group covers them."""
    return start_group(["fraudstream.stream.cli", "worker"], "worker", count, env, run_dir,
                       session_timeout_s=session_timeout_s,
                       ready_timeout_s=ready_timeout_s)  # fmt: skip


def start_group(
    module_args: list[str], name: str, count: int, env: dict[str, str], run_dir: Path, *,
    session_timeout_s: float, ready_timeout_s: float,
) -> list[WorkerProcess]:  # fmt: skip
    """`python -m <module_args>` processes sharing one consumer group (workers, baselines).

    Each gets `--status-file`, `--datadir` and `--session-timeout`, logs to a file in
    `run_dir`, and counts as started once it reports its partitions.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    processes = []
    for index in range(count):
        label = f"{name}-{index + 1}"
        status_file = run_dir / f"{label}.status.json"
        status_file.unlink(missing_ok=True)
        log_file = run_dir / f"{label}.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", *module_args, "--status-file", str(status_file),
                 "--datadir", str(run_dir / f"{label}-data"),
                 "--session-timeout", str(session_timeout_s)],
                env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(WorkerProcess(label, process, status_file, log_file))
    wait_until_assigned(processes, ready_timeout_s)
    return processes


def wait_until_assigned(workers: list[WorkerProcess], timeout_s: float) -> None:
    """Wait until every worker reported an assignment (workers may own no partition)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.process.poll() is not None:
                stop_workers(workers)
                raise WorkerStartError(
                    f"{worker.name} exited with {worker.process.returncode}:\n{worker.log_tail()}"
                )
        if all(worker.partitions() is not None for worker in workers):
            return
        time.sleep(0.1)
    stop_workers(workers)
    raise WorkerStartError(
        f"workers got no partitions within {timeout_s:.0f}s:\n{workers[0].log_tail()}"
    )


def stop_workers(workers: list[WorkerProcess], timeout_s: float = 20.0) -> None:
    """SIGTERM all first (one by one would make the survivors rebalance), then wait."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        try:
            worker.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def partitions_per_topic(settings: Settings, workers: int, asked: int | None = None) -> int:
    """Partitions of the topics a run creates: as asked, else one per worker on the
    embedded broker, else the settings' (a user's own Kafka: the topics exist already).

    A partition is the unit of parallelism, so one per worker loses nothing; more cost the
    embedded broker CPU, because Tansu 0.6's memory engine lists a partition's whole log
    on every fetch that finds data there (one partition instead of four halved its CPU in
    the demo, issue 9).
    """
    if asked is not None:
        return asked
    return workers if settings.kafka_url is None else settings.partitions


#: `FRAUDSTREAM_MAX_EVENT_SKEW_S` for workers fed generated history at many times its pace
#: (the demo, load test and tests): no event-time check against the broker's clock.
REPLAYED_HISTORY = "0"


def worker_env(
    kafka_url: str, redis_url: str, signing_key: SigningKey, id_hash_key: str, **settings: str
) -> dict[str, str]:
    """The environment that points a worker at these services, with the key its registry is
    signed with and the run's id hash key (`Settings.run_id_hash_key`: every worker of a
    group must get the same); a worker refuses to start without either."""
    env = {"FRAUDSTREAM_KAFKA_URL": kafka_url, "FRAUDSTREAM_REDIS_URL": redis_url,
           "FRAUDSTREAM_SIGNING_KEY": signing_key.secret,
           "FRAUDSTREAM_ID_HASH_KEY": id_hash_key}  # fmt: skip
    env.update({f"FRAUDSTREAM_{name.upper()}": value for name, value in settings.items()})
    return env
