"""Issue 9 §4: overload without collapse. Twice the rate one worker keeps up with, then half.

One worker on fresh embedded services (one partition per topic) is offered `--high`
transactions/s for `--seconds`, then `--low`/s for `--seconds`; then the run drains for up
to `--drain` s. Every second it prints the backlog (sent by the schedule minus decided);
at the end it reads the topics back (stream/tools/ledger.py) and reports how long after
the drop the backlog first cleared, the stand-in share, and what was lost (in the
transactions topic, neither decided nor dead-lettered) or decided twice. Pass: the
backlog clears within `--seconds` of the drop, nothing lost, no duplicate (no worker was
killed, so at-least-once has no reason to repeat).

    python -m bench.bench_overload --high 2000 --low 500 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.models.signing import signing_key_for
from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.ledger import account, read_topic
from fraudstream.stream.tools.loadtest_traffic import (
    DecisionClock,
    build_step_records,
    produce_at_rate,
)
from fraudstream.stream.tools.services import create_topics, embedded_services, kafka_bootstrap
from fraudstream.stream.tools.workers import (
    REPLAYED_HISTORY,
    start_workers,
    stop_workers,
    worker_env,
)

#: A backlog at most this many seconds of the low rate counts as cleared (records in flight).
CLEARED_S = 0.2


def run(high: float, low: float, seconds: float, drain_s: float) -> dict[str, Any]:
    settings = replace(Settings.from_env(), partitions=1)
    steps = build_step_records([high, low], seconds, seed=2026)
    run_id = uuid.uuid4().hex[:8]
    topics = {
        f"topic_{name}": f"{name}.overload-{run_id}"
        for name in ("transactions", "decisions", "labels", "dlq")
    }
    id_hash_key = settings.run_id_hash_key()  # the workers' and the ledger's
    with embedded_services(settings, declare_topics=False) as urls:
        bootstrap = kafka_bootstrap(urls.kafka_url)
        create_topics(bootstrap, topics.values(), 1)
        env = worker_env(
            urls.kafka_url, urls.redis_unix_url or urls.redis_url,
            signing_key_for(settings.registry_path, settings.signing_key),
            id_hash_key,
            registry=str(settings.registry_path.resolve()), app_id=f"overload-{run_id}",
            partitions="1", max_event_skew_s=REPLAYED_HISTORY, **topics,
        )  # fmt: skip
        workers = start_workers(1, env, Path(tempfile.mkdtemp(prefix="fraudstream-overload-")))
        clock = DecisionClock(bootstrap, topics["topic_decisions"], 1)
        try:
            pairs = [[[key, value] for _, key, value in step] for step in steps]
            sender = threading.Thread(
                target=lambda: [
                    asyncio.run(produce_at_rate(bootstrap, topics["topic_transactions"], p, r))
                    for p, r in zip(pairs, (high, low), strict=True)
                ]
            )
            started = time.monotonic()
            sender.start()
            backlog: list[tuple[float, int]] = []
            total = sum(len(step) for step in steps)
            while time.monotonic() - started < 2 * seconds + drain_s:
                time.sleep(1.0)
                elapsed = time.monotonic() - started
                scheduled = min(high * min(elapsed, seconds), len(steps[0])) + min(
                    low * max(0.0, elapsed - seconds), len(steps[1])
                )
                backlog.append((round(elapsed, 1), max(0, int(scheduled) - len(clock.seen))))
                print(f"t={elapsed:5.1f}s backlog {backlog[-1][1]:7,d}", flush=True)
                if not sender.is_alive() and len(clock.seen) >= total:
                    break
            sender.join()
        finally:
            clock.close()
            stop_workers(workers)
        transactions, decisions, dead_letters = (
            read_topic(bootstrap, topics[f"topic_{name}"])
            for name in ("transactions", "decisions", "dlq")
        )
        ledger = account(transactions, decisions, dead_letters, IdPseudonyms(id_hash_key))
    sent = {txn_id for step in steps for txn_id, _, _ in step}
    cleared = next(
        (t - seconds for t, left in backlog if t > seconds and left <= low * CLEARED_S), None
    )
    return {
        "high_tps": high, "low_tps": low, "seconds_each": seconds, "sent": len(sent),
        "records_in": ledger.records_in, "decided": ledger.decided, "lost": ledger.lost,
        "decided_twice": ledger.duplicates,
        "stand_in_share": round(ledger.stand_in / max(1, ledger.decision_records), 4),
        "backlog_cleared_s_after_drop": cleared,
        "backlog_by_second": backlog,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--high", type=float, default=2000.0)
    parser.add_argument("--low", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--drain", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.high, args.low, args.seconds, args.drain)
    summary = {k: v for k, v in result.items() if k != "backlog_by_second"}
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
