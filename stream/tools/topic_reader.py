"""Read topics in a background thread, stamping each record with the time it arrived.

The demo's decision follower and the load test's decision clock both read while the main
thread produces and reports; `tail` and `explain` read through `arrivals`. aiokafka (its C
record parser costs a quarter of kafka-python's CPU) runs in the thread's own event loop,
and each record is stamped when its fetch returns, not when the main thread next looks.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Generator, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from fraudstream.stream.transport import PLAINTEXT, KafkaSecurity, kafka_client_options

#: The embedded broker answers a waiting fetch only when the wait ends: keep it short where
#: the arrival time is the measurement (the load test's clock).
FETCH_MAX_WAIT_MS = 10

#: Called in the reader's thread with (topic, value, wall-clock time the fetch returned).
OnRecord = Callable[[str, bytes, float], None]


class TopicReader(threading.Thread):
    """Every partition of `topics`, from the beginning or (`from_end`) from their end now.

    `wait_ready` returns once the start position is resolved (so nothing produced after it
    is missed); an error in the thread is kept in `error` and raised by `raise_error`.
    """

    def __init__(
        self, bootstrap: str, topics: Sequence[str], partitions: int, on_record: OnRecord,
        *, from_end: bool, fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:  # fmt: skip
        super().__init__(daemon=True, name=f"reader-{'-'.join(topics)}")
        self.bootstrap, self.from_end, self.on_record = bootstrap, from_end, on_record
        self.security = security
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.assigned = [TopicPartition(topic, p) for topic in topics for p in range(partitions)]
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._read())
        except BaseException as error:  # handed to the caller by raise_error
            self.error = error
        finally:
            self._ready.set()

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=self.fetch_max_wait_ms,
            **kafka_client_options(self.security),
        )  # fmt: skip
        await consumer.start()
        try:
            consumer.assign(self.assigned)
            if self.from_end:
                await consumer.seek_to_end(*self.assigned)
                for tp in self.assigned:
                    await consumer.position(tp)  # resolve "end" now, before anything is sent
            self._ready.set()
            while not self._stopping.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.time()
                    for record in records:
                        self.on_record(record.topic, record.value or b"", now)
        finally:
            await consumer.stop()

    def wait_ready(self, timeout_s: float) -> None:
        """Block until reading has started; raise its error, or TimeoutError."""
        if not self._ready.wait(timeout_s):
            self.stop()
            raise TimeoutError(f"no reader for {self.assigned} on {self.bootstrap}")
        self.raise_error()

    def raise_error(self) -> None:
        if self.error is not None:
            raise RuntimeError("reading the topics stopped") from self.error

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)


def arrivals(
    bootstrap: str, topics: Sequence[str], partitions: int, *, from_end: bool,
    fetch_max_wait_ms: int, security: KafkaSecurity, ready_timeout_s: float,
    idle_timeout_s: float | None = None, search_timeout_s: float | None = None,
) -> Generator[tuple[str, bytes], None, None]:  # fmt: skip
    """(topic, value) of each record as it arrives, in the caller's thread: a `TopicReader`
    hands them over through a queue, so the caller can stop (a break, Ctrl-C) between two.

    Ends after `idle_timeout_s` without a record, or `search_timeout_s` after reading
    started (None: never); the reader stops when the iteration ends.
    """
    arrived: queue.Queue[tuple[str, bytes]] = queue.Queue()
    reader = TopicReader(
        bootstrap, topics, partitions, lambda topic, value, _at: arrived.put((topic, value)),
        from_end=from_end, fetch_max_wait_ms=fetch_max_wait_ms, security=security,
    )  # fmt: skip
    reader.start()
    try:
        reader.wait_ready(ready_timeout_s)
        started = last = time.monotonic()
        while (idle_timeout_s is None or time.monotonic() - last < idle_timeout_s) and (
            search_timeout_s is None or time.monotonic() - started < search_timeout_s
        ):
            reader.raise_error()
            try:
                record = arrived.get(timeout=0.2)
            except queue.Empty:
                continue
            last = time.monotonic()
            yield record
    finally:
        reader.stop()
