"""The Faust worker: agents and timers of a few lines that call `WorkerRuntime`.

`score_transactions` takes micro-batches from `transactions`, has the runtime decide them
and sends decisions and dead letters on; `learn_from_labels` hands late fraud labels to
the runtime. Everything else (start-up, hot reload, thresholds, what to do when Redis
fails) lives in stream/worker/runtime.py, framework-free.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import faust
from aiokafka.errors import IllegalStateError

from fraudstream.models.registry import load_version
from fraudstream.stream.settings import Settings
from fraudstream.stream.worker.batching import Coalescer
from fraudstream.stream.worker.delivery import (
    HandOver,
    Outgoing,
    OverlappedDelivery,
    batch_hand_over,
    confirm_with_retries,
)
from fraudstream.stream.worker.faust_app import (
    BATCH_MAX,
    LABEL_BATCH_WITHIN_S,
    ack_all,
    commit_before_revoke,
    consume_as_the_worker,
    freeze_start_up_heap,
    key_partition,
    natural_batches,
    new_faust_app,
    owned_partitions,
    raw_topic,
    run_faust_worker,
    write_status,
)
from fraudstream.stream.worker.lost_log import LostLogWatch
from fraudstream.stream.worker.metrics import WorkerMetrics, attach_faust_sensor
from fraudstream.stream.worker.pipeline import BatchOutcome, IncomingRecord
from fraudstream.stream.worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)

#: How often consumer lag is exported and a lost broker log looked for: a restarted broker
#: refills the offsets below the old position within seconds (see lost_log.py).
LAG_CHECK_S = 0.25

#: The exit status of a worker that stopped because it could not deliver a batch.
EXIT_UNDELIVERED = 70


def create_app(
    settings: Settings,
    kafka_url: str,
    redis_url: str,
    *,
    datadir: Path,
    status_file: Path | None = None,
    session_timeout_s: float = 6.0,
    metrics: WorkerMetrics | None = None,
) -> faust.App:
    """The worker app; `metrics` (default: a fresh registry) is what /metrics serves."""
    metrics = metrics if metrics is not None else WorkerMetrics()
    app = new_faust_app(settings, kafka_url, datadir=datadir, session_timeout_s=session_timeout_s)
    runtime = WorkerRuntime(settings, redis_url, metrics)
    lost_logs = LostLogWatch(settings, metrics, stop_unacked)
    add_agents(app, settings, runtime, metrics, lost_logs)
    add_timers(app, settings, runtime, metrics, lost_logs)
    add_rebalance_hooks(app, settings, runtime, status_file, lost_logs)
    return app


def add_agents(
    app: faust.App, settings: Settings, runtime: WorkerRuntime, metrics: WorkerMetrics,
    lost_logs: LostLogWatch,
) -> None:  # fmt: skip
    """The two consumers: transactions to decisions, labels to the runtime.

    Both take unacked batches (`natural_batches`, `noack_take`) and ack a batch only after
    the broker confirmed its records (refused records are sent again for a while,
    `confirm_with_retries`). Deciding never raises (`DecisionPipeline.process`), nor does
    a Redis outage in `WorkerRuntime.learn`.
    Should anything still fail (delivery given up, a bug here), the worker stops at once
    without acking (`stop_unacked`): letting the agent raise would make Faust restart it,
    and its later acks can commit past the failed batch (faust/transport/consumer.py
    `_new_offset` misses a gap with no committed offset yet, or a gap of one record).
    """

    hand_over = producer_hand_over(app)

    @app.agent(raw_topic(app, settings.topic_transactions))
    async def score_transactions(stream: Any) -> None:
        await runtime.start()
        freeze_start_up_heap()
        delivery = OverlappedDelivery(
            partial(ack_unless_stale, stream, app.consumer, lost_logs), metrics.observe_emit,
            confirm=partial(confirm_with_retries, hand_over),
        )  # fmt: skip

        async def decide_and_hand_over(events: list[Any]) -> None:
            outcome = await runtime.decide([record_of(event) for event in events])
            metrics.observe_batch(outcome)
            await delivery.submit(events, await hand_over(outgoing(settings, outcome)))

        batches = Coalescer(decide_and_hand_over, max_batch=BATCH_MAX)
        try:
            try:
                async for events in natural_batches(stream, BATCH_MAX):
                    lost_logs.taken(events)
                    await batches.put(events)
            finally:  # a clean stop decides and acks what it took: no duplicates after it
                await batches.close()
                await delivery.drain()
        except Exception as error:
            stop_unacked(error)

    @app.agent(raw_topic(app, settings.topic_labels))
    async def learn_from_labels(stream: Any) -> None:
        await runtime.start()
        # noack_take, not take: take acks a batch even when this body raises for it.
        try:
            async for events in stream.noack_take(BATCH_MAX, within=LABEL_BATCH_WITHIN_S):
                letters = await runtime.learn([event.value for event in events])
                outcome = BatchOutcome(dead_letters=letters)
                await confirm_with_retries(hand_over, await hand_over(outgoing(settings, outcome)))
                await ack_all(stream, events)
        except Exception as error:
            stop_unacked(error)


#: How often a worker looks whether its rules file changed (a stat; a read only on change).
RULES_CHECK_S = 1.0


def add_timers(
    app: faust.App, settings: Settings, runtime: WorkerRuntime, metrics: WorkerMetrics,
    lost_logs: LostLogWatch,
) -> None:  # fmt: skip
    """The control plane's clocks: the group's threshold, the registry, the rules file,
    consumer lag (and, with it, a broker that lost its log: see stream/worker/lost_log.py)."""

    @app.timer(interval=0.5)
    async def follow_live_threshold() -> None:
        await runtime.follow_live_threshold()

    @app.timer(interval=2.0)
    async def follow_live_model() -> None:
        await runtime.follow_live_model()

    @app.timer(interval=RULES_CHECK_S)
    async def follow_rules() -> None:
        runtime.follow_rules()

    @app.timer(interval=LAG_CHECK_S)
    async def report_consumer_lag() -> None:
        metrics.clear_lag()
        for tp, position, highwater in await partition_positions(app, settings.topic_transactions):
            if (lost := lost_logs.lost(tp, position, highwater)) is not None:
                await lost_logs.follow(app.consumer, tp, lost)
            else:
                metrics.set_lag(tp.partition, highwater - position)


def add_rebalance_hooks(
    app: faust.App, settings: Settings, runtime: WorkerRuntime, status_file: Path | None,
    lost_logs: LostLogWatch,
) -> None:  # fmt: skip
    """Cached card windows must not outlive partition ownership; report what we own; the
    lost-log watch forgets partitions no longer owned."""

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_cards_on_revoke(sender: Any, *args: Any, **kwargs: Any) -> None:
        runtime.forget_cached_cards()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_assignment(sender: Any, *args: Any, **kwargs: Any) -> None:
        runtime.forget_cached_cards()  # again: a batch may have been finishing meanwhile
        lost_logs.after_rebalance(set(app.consumer.assignment()))
        if status_file is not None:
            partitions = owned_partitions(app, settings.topic_transactions)
            write_status(status_file, {"partitions": partitions})


def outgoing(settings: Settings, outcome: BatchOutcome) -> list[Outgoing]:
    """A batch's decisions (keyed by card) and dead letters, as records for the broker."""
    return [
        Outgoing(settings.topic_decisions, decision.card_id.encode(), decision.to_json_bytes())
        for decision in outcome.decisions
    ] + [Outgoing(settings.topic_dlq, None, letter.to_json_bytes())
         for letter in outcome.dead_letters]  # fmt: skip


def producer_hand_over(app: faust.App) -> HandOver:
    """Hand records to the app's own aiokafka producer (Faust's settings: no linger, our
    partitioner), a broker batch per partition (`batch_hand_over`)."""
    transport_producer: Any = app.producer  # faust/transport/drivers/aiokafka.py `Producer`
    return batch_hand_over(transport_producer._ensure_producer, key_partition)


def stop_unacked(error: Exception) -> NoReturn:
    """Stop the worker at once, acking and committing nothing more.

    What was taken but not acked is consumed again by whoever owns the partition next: at
    worst decided twice, never lost. A supervisor (systemd, Kubernetes) restarts the worker.
    """
    log.critical("stopping the worker without acking: %s: %s", type(error).__name__, error,
                 exc_info=error)  # fmt: skip
    logging.shutdown()
    os._exit(EXIT_UNDELIVERED)


async def ack_unless_stale(
    stream: Any, consumer: Any, lost_logs: LostLogWatch, events: Sequence[Any]
) -> None:
    """`ack_all`, releasing unacked the events taken from a log the broker lost since
    (lost_log.py)."""
    await ack_all(stream, lost_logs.release_stale(consumer, events))


async def partition_positions(app: faust.App, topic: str) -> list[tuple[Any, int, int]]:
    """(partition, position, high-water mark) of each owned partition of `topic` with both.

    A partition a rebalance revoked while we asked is left out: its position raises
    `IllegalStateError`, which crashed the worker when a second one joined (issue 13 §2).
    """
    positions = []
    for tp in list(app.consumer.assignment()):
        if tp.topic == topic:
            try:
                position = await app.consumer.position(tp)
            except IllegalStateError:
                continue
            highwater = app.consumer.highwater(tp)
            if position is not None and highwater is not None:
                positions.append((tp, position, highwater))
    return positions


def record_of(event: Any) -> IncomingRecord:
    """A consumed Faust event as the pipeline takes it: value (None: a tombstone), produce time."""
    return IncomingRecord(event.value, event.message.timestamp or time.time())


def run_worker(
    settings: Settings, kafka_url: str, redis_url: str, *, datadir: Path,
    status_file: Path | None = None, session_timeout_s: float = 6.0,
) -> None:  # fmt: skip
    """Run one worker in the foreground until SIGTERM / Ctrl-C."""
    load_version(settings.registry_path, signing_key=settings.signing_key)  # fail fast: tampered?
    consume_as_the_worker(settings.fetch_max_wait_ms)
    commit_before_revoke()
    metrics = WorkerMetrics()
    metrics.serve(settings.metrics_port, settings.metrics_host)
    print(f"metrics on {metrics.url}", flush=True)
    if status_file is not None:
        status_file.with_suffix(".metrics").write_text(f"{metrics.url}\n")
    app = create_app(
        settings, kafka_url, redis_url, datadir=datadir, status_file=status_file,
        session_timeout_s=session_timeout_s, metrics=metrics,
    )  # fmt: skip
    attach_faust_sensor(app, metrics)
    run_faust_worker(app)
