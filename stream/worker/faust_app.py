"""The one `faust.App` set-up shared by the worker and the load-test baselines.

Both must consume with the same settings, or a baseline would not measure what the worker
pays for: the same Faust options on Tansu, the same micro-batch size, the same fetch wait.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import faust
import mode.loop
from aiokafka.partitioner import DefaultPartitioner
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import EventT
from mode.services import WaitResults
from mode.utils.futures import maybe_async, notify

from fraudstream.stream.settings import Settings
from fraudstream.stream.transport import faust_credentials

_HASHED = DefaultPartitioner()


def key_partition(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (the Java client's murmur2 of the key), except that a
    topic of one partition gets it without hashing: the embedded defaults have one, and
    the pure-Python hash of every decision's key was 1.5 % of the worker's CPU (issue 9)."""
    if len(all_partitions) == 1:
        return all_partitions[0]
    return _HASHED(key, all_partitions, available)


#: How long the worker's producer lets decisions gather into one produce request: not at
#: all. A batch's decisions are handed to the producer in one go, before its sender runs,
#: so they already make one request (one stored batch on the broker, which pays per
#: batch); lingering 20 ms, as the load test's producer does (`PRODUCER_LINGER_MS`), only
#: held each decision back: at 600/s the load test's p50 was 51 ms against 30 ms without,
#: for the same worker and broker CPU (issue 9).
WORKER_PRODUCER_LINGER_S = 0.0
#: Faust settings that make it quick and reliable on Tansu (docs/notes-faust-on-tansu.md):
#: Tansu holds a group join for about half the session timeout, so the session timeout
#: is the rebalance latency; heartbeats must fire well inside it.
FAUST_ON_TANSU: dict[str, Any] = {
    "topic_replication_factor": 1,
    "web_enabled": False,
    "consumer_auto_offset_reset": "earliest",
    "broker_max_poll_records": 1000,
    "producer_linger": WORKER_PRODUCER_LINGER_S,
    "producer_partitioner": key_partition,
    "broker_commit_interval": 0.5,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 20.0,
}
#: A worker may have a busy thread beside its event loop: now and then a recalibration (the
#: models and Faust's consumer run on the loop, models/guarded.py and
#: `consume_on_the_app_loop`). A thread woken by another
#: waits up to this long for the GIL (CPython's default: 5 ms). With the models on their
#: own threads, 0.5 ms instead of 5 gave p99 311 ms against 421 in the demo (one run each);
#: with them inline the two were within the spread between runs (issue 9).
GIL_SWITCH_INTERVAL_S = 0.0005
#: Micro-batch: up to this many events of what arrived together (`natural_batches`).
BATCH_MAX = 500
#: Labels arrive days late, so half a second more costs nothing, and each label batch pays
#: its own Redis round trips and recalibration check: fewer, larger batches (issue 9).
LABEL_BATCH_WITHIN_S = 0.5


async def natural_batches(stream: Any, max_batch: int) -> AsyncIterator[list[Any]]:
    """The stream's events, unacked, in batches of what arrived together (at most `max_batch`).

    faust-streaming's `noack_take(max_, within)` closes a batch on a clock: it waits `within`
    again and again, idle or not, each time through mode's `wait_for_stopped` (four tasks).
    At 5 ms that was 200 waits a second, and a record waited 2.5 ms on average for the next
    tick. Records come from the broker a fetch at a time and Faust queues a fetch's records
    for the stream together, so here a batch closes as soon as what is queued is taken:
    nothing waits on a clock, and an idle stream waits for its next record only. The stream
    takes a batch's first event; the events queued behind it are taken at once
    (`_take_queued`), not one per pass round the event loop as the stream would.
    Everything else is `noack_take`'s: the caller acks, a batch is handed over whole (the
    stream stops taking while the caller holds it), and stopping the stream ends the loop.
    """
    loop = asyncio.get_running_loop()
    events: list[Any] = []
    arrived = asyncio.Event()
    room = asyncio.Event()
    handed_over: asyncio.Future[None] | None = None

    async def add_to_batch(value: Any) -> Any:
        nonlocal handed_over
        try:
            if handed_over is not None:  # the caller holds the last batch: wait till it is done
                try:
                    await handed_over
                finally:
                    handed_over = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("natural_batches found no current event")
            events.append(event)
            await _take_queued(stream, events, max_batch)
            arrived.set()
            if len(events) >= max_batch:
                room.clear()
                await stream.wait(room)
        except Exception as error:  # as noack_take: a broken processor crashes the stream
            await stream.crash(error)
        return value

    channel = aiter(stream.channel)
    acks_were_enabled = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(add_to_batch)
    stream._enable_passive(channel)
    # A stop (or crash) wakes the wait for the next batch. One watcher for the whole
    # stream: mode's `wait_for_stopped(arrived)` made three tasks for every batch.
    stopping = asyncio.ensure_future(stream.wait_until_stopped())
    stopping.add_done_callback(lambda _: arrived.set())
    try:
        while not stream.should_stop:
            await arrived.wait()
            if not stream.should_stop:
                await _take_queued(stream, events, max_batch)  # what came meanwhile
            if events:  # handed over even when stopping, as noack_take does
                handed_over = loop.create_future()
                try:
                    yield list(events)
                finally:
                    events.clear()
                    arrived.clear()
                    notify(handed_over)
                    room.set()
    finally:
        stopping.cancel()
        stream.enable_acks = acks_were_enabled
        stream._processors.remove(add_to_batch)


async def ack_all(stream: Any, events: Sequence[Any]) -> None:
    """Ack a batch's input events, so their offsets may be committed."""
    for event in events:
        await stream.ack(event)


async def _take_queued(stream: Any, events: list[Any], max_batch: int) -> None:
    """Add the events queued for `stream` to `events`, up to `max_batch` in all, doing for
    each what Faust's stream iterator does when it takes one (faust/streams.py `_py_aiter`).

    The iterator goes once round the event loop for every event (`await sleep(0)`), so a
    batch of 12 cost 12 passes; taken here, the worker used ~2 % less CPU at 600/s (paired
    runs, bench/RESULTS.md, issue 9). As the iterator does, an event taken while the flow
    is suspended or from an earlier consumer generation (a rebalance) is acked, not
    batched; a message is tracked as unacked before it is batched, so a rebalance waits
    for its ack; the sensors see each event come in. An error thrown into the queue is
    left for the iterator to raise.
    """
    queue = stream.channel.queue
    app = stream.app
    consumer = app.consumer
    acking_topics = app.topics.acking_topics
    while len(events) < max_batch and not queue.empty() and not queue._errors:
        event = queue.get_nowait()
        if not isinstance(event, EventT):
            raise RuntimeError(  # its type only: a record's repr would show its ids in clear
                f"natural_batches takes events, the queue held a {type(event).__name__}"
            )
        message = event.message
        if not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id:
            await stream.ack(event)
            continue
        tp, offset = message.tp, message.offset
        if message.topic in acking_topics and not message.tracked:
            message.tracked = True
            consumer.unacked.add(message)
            stream._on_message_in(tp, offset, message)
        stream._on_stream_event_in(tp, offset, stream, event)
        stream.events_total += 1
        events.append(event)


def shorten_fetch_wait(fetch_max_wait_ms: int) -> None:
    """Make Faust's consumers ask for data with a short `fetch_max_wait_ms`.

    faust-streaming hard-codes 1,500 ms, and Tansu answers a fetch with no data only when
    that wait ends, not when data arrives: measured with aiokafka, a record waited 364 ms
    (median) to be fetched at 1,500 ms against 3 ms at 10 ms. The cost is more fetch
    requests while idle. aiokafka reads the attribute when the consumer starts.
    """
    original = AIOKafkaConsumerThread._create_worker_consumer

    def create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def commit_before_revoke() -> None:
    """Finish and commit the work in flight before Faust forgets the revoked partitions.

    faust-streaming 0.15's `Consumer.on_partitions_revoked` drops the revoked partitions'
    acked offsets first, and only then lets the app stop taking records, wait for the
    records in flight to be acked and commit. So what was acked since the last commit
    timer, and the batch being decided when the rebalance began, were decided again by the
    next owner at every rebalance, joins included (issue 13 §2). Here the app's own first
    steps (stop the flow, pause, drop what is buffered and not started) run before that,
    and `wait_empty` waits for the records in flight and commits while their acks still
    count; Faust's revoke then repeats those steps with nothing left to do.
    """
    original = Consumer.on_partitions_revoked

    async def on_partitions_revoked(self: Consumer, revoked: Any) -> None:
        if not self.app.should_stop:  # stopping, Faust commits on its own way out
            self.stop_flow()
            self.app.flow_control.suspend()
            self.pause_partitions(self.assignment())
            self.app.flow_control.clear()
            await self.wait_empty()
        await original(self, revoked)

    Consumer.on_partitions_revoked = on_partitions_revoked  # type: ignore[method-assign]


#: mode's `Service.wait_first(self, *coros, timeout=None)`.
WaitFirst = Callable[..., Awaitable[WaitResults]]
#: What the drainer's second argument runs (`suspend_flow.wait()`): how its call is known.
_SUSPEND_WAIT_CODE = asyncio.Event.wait.__code__


class _Yield:
    """Awaiting it hands `awaited` to the running task, as the coroutine's own await did."""

    __slots__ = ("awaited",)

    def __init__(self, awaited: Any) -> None:
        self.awaited = awaited

    def __await__(self) -> Generator[Any, None, None]:
        yield self.awaited


async def _resume(coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Run the rest of `coroutine`, whose first step ran by hand and yielded `waiting_on`,
    as its task would have: its result, exceptions and cancellation pass through."""
    while True:
        try:
            await _Yield(waiting_on)
        except BaseException as error:
            try:
                waiting_on = coroutine.throw(error)
            except StopIteration as finished:
                return finished.value
        else:
            try:
                waiting_on = coroutine.send(None)
            except StopIteration as finished:
                return finished.value


def eager_hand_over(original: WaitFirst) -> WaitFirst:
    """`original` (mode's `Service.wait_first`), except for the drainer's hand-over of one
    record, which runs at once and goes to `original` only if it has to wait."""

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> WaitResults:
        if not _is_hand_over(coros, timeout) or self.suspend_flow.is_set():
            return await original(self, *coros, timeout=timeout)
        hand_over, suspend_wait = coros
        try:
            waiting_on = hand_over.send(None)
        except StopIteration as finished:
            suspend_wait.close()
            return WaitResults([hand_over], [finished.value], False)
        except BaseException:
            suspend_wait.close()
            raise
        return await original(self, _resume(hand_over, waiting_on), suspend_wait)

    return wait_first


def _is_hand_over(coros: tuple[Any, ...], timeout: Any) -> bool:
    return (
        len(coros) == 2
        and timeout is None
        and inspect.iscoroutine(coros[0])
        and getattr(coros[1], "cr_code", None) is _SUSPEND_WAIT_CODE
    )


def hand_over_without_tasks() -> None:
    """Let Faust's consumer hand each record to its stream without making four tasks.

    faust-streaming's drainer (`Consumer._drain_messages`) hands every record over with
    `wait_first(callback(message), suspend_flow.wait())`: four tasks (the hand-over, the
    suspend wait, mode's stopped and crashed waits), a wait on them, three cancelled, for
    each record, though the hand-over almost never waits (flow running, room in the stream
    buffer). Now it runs at once; only when it must wait does `wait_first` take over the
    rest, so a rebalance that suspends the flow still abandons it as before. In `make demo`
    it cut the worker's CPU per transaction by about a tenth and the p99 by about a
    quarter (three alternated runs each, bench/RESULTS.md, issue 9).
    """
    if not getattr(Consumer.wait_first, "hands_over_eagerly", False):
        eager = eager_hand_over(Consumer.wait_first)
        eager.hands_over_eagerly = True  # type: ignore[attr-defined]
        Consumer.wait_first = eager  # type: ignore[method-assign,assignment]


def run_on_uvloop() -> None:
    """Make every event loop made from now on a uvloop one: the worker's, and any that mode's
    `ServiceThread` makes with `new_event_loop` for a service on a thread of its own.

    A worker turns its event loops thousands of times a second (a fetch every ~12 ms,
    Redis round trips, the producer, timers): asyncio's own Python code (the loop, its
    selector, handles, transports, task helpers) was about a fifth of its CPU at 600/s
    (py-spy, issue 9). uvloop runs the loop and the transports in C. Call it before
    anything makes a loop.
    """
    mode.loop.use("uvloop")  # what `faust -L uvloop worker` does: sets asyncio's policy


class ConsumerOnTheAppLoop(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer service run as a task of the app's event loop, not on a
    thread and loop of its own (`consume_on_the_app_loop`).

    Everything else is mode's `ServiceThread`; Faust's calls into it (`call_thread`) run
    at once in the caller's task.
    """

    _serving: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """`ServiceThread.start` without the thread: `_serve` runs as a task of this loop.

        Its thread watchdog (`_keepalive2`) is left out: there is no thread to watch.
        """
        if self._thread_started.is_set():
            raise RuntimeError("Faust's consumer service was started twice")
        self._thread_started.set()
        self._thread_running = self.parent_loop.create_future()
        self._serving = asyncio.ensure_future(self._serve())
        try:
            await self._thread_running  # set by `_serve` once started, or its start error
        finally:
            self._thread_running = None

    async def call_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `fun` at once: on one loop, mode's method queue (a queued call, a worker
        task woken to run it, its result sent back to the caller's loop) only adds turns
        of the loop to every fetch."""
        return await maybe_async(fun(*args, **kwargs))

    async def _gather_remaining_tasks(self) -> None:
        """Nothing: mode cancels every task left on the thread's loop when the service
        ends, and this loop's other tasks are the app's."""


def consume_on_the_app_loop() -> None:
    """Run Faust's aiokafka consumer on the app's event loop instead of its own thread.

    faust-streaming runs aiokafka on a thread with its own loop, and every fetch crosses
    between the two loops twice (mode's method queue there, the result back), as do
    commits and the lag timer's position reads; the two threads also contend for the GIL.
    The worker's CPU is mostly fixed costs paid per fetch and per batch at 600/s
    (bench/RESULTS.md, issue 9): with the consumer on the app's loop, paired workers used
    5 % less CPU (`bench_paired_workers`, median of 4 runs 0.947), and 2.6 % less again
    with Faust's calls into it made at once (`ConsumerOnTheAppLoop.call_thread`, 0.974).
    """
    if AIOKafkaConsumer._new_consumer_thread is not _new_consumer_on_the_app_loop:
        AIOKafkaConsumer._new_consumer_thread = _new_consumer_on_the_app_loop  # type: ignore[method-assign]


def _new_consumer_on_the_app_loop(self: AIOKafkaConsumer) -> AIOKafkaConsumerThread:
    return ConsumerOnTheAppLoop(self, loop=self.loop, thread_loop=self.loop, beacon=self.beacon)


def consume_as_the_worker(fetch_max_wait_ms: int) -> None:
    """Faust's consumer as every FraudStream process consumes: worker and baselines alike,
    so a baseline measures what the worker pays for (the module doc)."""
    run_on_uvloop()
    consume_on_the_app_loop()
    shorten_fetch_wait(fetch_max_wait_ms)
    hand_over_without_tasks()


def new_faust_app(
    settings: Settings, kafka_url: str, *, datadir: Path, session_timeout_s: float = 6.0
) -> faust.App:
    """A Faust app in the settings' consumer group, with the options above, reaching
    `kafka_url` as `settings.kafka_security` says (SASL, TLS)."""
    app = faust.App(
        settings.app_id,
        broker=kafka_url,
        broker_credentials=faust_credentials(settings.kafka_security),
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        broker_session_timeout=session_timeout_s,
        **FAUST_ON_TANSU,
    )
    read_per_record_settings_once(app)
    return app


def read_per_record_settings_once(app: faust.App) -> None:
    """Read once the two settings Faust reads again for every record it consumes.

    Before handing a record to its stream, Faust's conductor asks the producer buffer
    whether it holds over 100 messages, and the buffer's size reads `producer_threaded`;
    the record's event is made by `app.create_event`, which reads the `Event` class. Each
    read goes through Faust's settings descriptors, ~3 us apiece: together ~1/4 of Faust's
    hand-over of a record to its stream (py-spy, issue 9). Settings do not change once the
    app is made. A threaded producer keeps Faust's own size check.
    """
    event_class: Any = app.conf.Event
    app.create_event = partial(event_class, app)  # type: ignore[method-assign]
    if app.conf.producer_threaded:
        return
    buffer = app.producer.buffer
    wait_until_ebb = buffer.wait_until_ebb

    async def wait_until_ebb_unless_small() -> None:
        if buffer.pending.qsize() > buffer.max_messages:
            await wait_until_ebb()

    buffer.wait_until_ebb = wait_until_ebb_unless_small  # type: ignore[method-assign]


class RawBytes(faust.Schema):
    """Keys and values as the broker holds them: bytes, or None for none.

    What Faust's own schema gives for `bytes` with the `raw` codec, without going through
    its serializer registry twice for every record consumed (the codec looked up by name,
    `loads`, `want_bytes`, for the key and again for the value): paired workers at 600/s
    used 1.6 % less CPU (issue 9, 4 runs, 0.978-1.004). Producing through the topic is
    Faust's as before.
    """

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw")  # fmt: skip

    def compile(self, app: faust.types.AppT, **_: Any) -> Callable[..., Awaitable[EventT]]:
        """The topic's decoder; nothing can fail to decode, so no error handler is used."""
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = False) -> EventT:
            return create_event(message.key, message.value, message.headers, message)

        return decode


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic of raw bytes: parsing is ours, so a bad record cannot break Faust's codec."""
    return app.topic(name, schema=RawBytes())


def owned_partitions(app: faust.App, topic: str) -> list[int]:
    """The partitions of `topic` this app's consumer owns now."""
    return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)


def write_status(status_file: Path, status: dict[str, Any]) -> None:
    """Tell whoever started the process how it is doing (atomically: write, then rename)."""
    pending = status_file.with_suffix(".tmp")
    pending.write_text(json.dumps({**status, "time": time.time()}))
    pending.replace(status_file)


def freeze_start_up_heap() -> None:
    """Collect once, then move every object alive now out of the cycle collector's sight.

    Modules, the app and the loaded models live as long as the process, yet every full
    collection walked all ~160,000 of them with the event loop stopped. Frozen, a full
    collection walks only what the stream made since: in `make demo` the longest pause went
    from 233-258 ms to 69-77 ms and their total from about 1.1 s to 0.3 s a run (issue 9).
    Frozen objects that reference counting frees are still freed.
    """
    gc.collect()
    gc.freeze()


def run_faust_worker(app: faust.App) -> None:
    """Run `app` in the foreground until SIGTERM / Ctrl-C, logging warnings and worse.

    Without Faust's terminal spinner: it sets the root logger to DEBUG so that it turns once
    per log record, so every aiokafka debug message was formatted (a few % of a worker's CPU).

    The GIL switch interval is shortened (see `GIL_SWITCH_INTERVAL_S`).
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    worker = faust.Worker(app, loglevel="warning", redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()
