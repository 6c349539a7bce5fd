"""Deliver a batch's results while the next batch is being decided; ack offsets in order.

Waiting for the broker's acknowledgements after every batch left the worker idle for
about a third of each cycle (issue 9: emit 26 ms per batch against 34 ms of features).
`OverlappedDelivery` lets the agent go on to the next batch as soon as a batch's records
are handed to the producer. The promise is unchanged: a batch's input events are acked
(so their offsets may be committed) only after every one of its records is confirmed, and
only after the batches before it were acked. A record the broker refuses is sent again
(`confirm_with_retries`) until it is confirmed or `DELIVERY_RETRY_S` has passed; a delivery
that still fails acks nothing from then on and raises in the agent at its next `submit` or
at `drain` (the agent then stops the worker without acking, see stream/worker/app.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)

#: Batches whose deliveries may be in flight at once before the agent waits for the oldest.
MAX_BATCHES_IN_FLIGHT = 4
#: How long a refused record is sent again before the worker gives up and stops unacked.
#: The producer itself already retries a broker that is away (for as long as its request
#: timeout); this covers what it gives up on: a leader change, a restart, a full buffer.
DELIVERY_RETRY_S = 120.0
#: First pause between two attempts; it doubles up to `MAX_RETRY_PAUSE_S`.
FIRST_RETRY_PAUSE_S = 0.1
MAX_RETRY_PAUSE_S = 5.0


class DeliveryFailed(RuntimeError):
    """Records stayed unconfirmed after every retry: their batch must never be acked."""


@dataclass(frozen=True)
class Outgoing:
    """One record for the broker, kept so it can be sent again if the broker refuses it."""

    topic: str
    key: bytes | None
    value: bytes


#: Records handed to the producer, each with its confirmation (resolved when the broker has
#: it). Records that travel in one broker batch share one confirmation.
Handed = Sequence[tuple[Outgoing, Awaitable[Any]]]
#: Hands records to the producer, in order.
HandOver = Callable[[Sequence[Outgoing]], Awaitable[Handed]]


def failed_confirmation(error: Exception) -> asyncio.Future[Any]:
    """A confirmation that already failed: a refusal at hand-over is retried like one later."""
    failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    failed.set_exception(error)
    return failed


#: A partitioner as aiokafka calls it: (key, all partitions, available ones) -> partition.
Partitioner = Callable[[bytes | None, list[int], list[int]], int]


def batch_hand_over(
    producer: Callable[[], AIOKafkaProducer], partition_of: Partitioner
) -> HandOver:
    """Hand records to aiokafka as one broker batch per partition (`create_batch`, `send_batch`).

    aiokafka's `send` pays a metadata wait, the partitioner, an accumulator append and a
    future for every record, and Faust's `Producer.send` wraps each once more. A batch's
    decisions left in one produce request anyway; now they are built into it in one go and
    confirmed together: 3 % less worker CPU at 600/s (issue 9, bench/RESULTS.md). A batch
    that fills up (a catch-up after a restart) continues in the next. `producer` is called
    at each hand-over (Faust starts its producer after the agents are defined).
    """

    async def hand_over(records: Sequence[Outgoing]) -> Handed:
        if not records:
            return []
        try:
            kafka = producer()
            groups = await _by_partition(kafka, records, partition_of)
        except Exception as error:  # not started, no metadata: retried like a refusal
            return [(record, failed_confirmation(error)) for record in records]
        handed: list[tuple[Outgoing, Awaitable[Any]]] = []
        for (topic, partition), group in groups.items():
            batch, members = kafka.create_batch(), list[Outgoing]()
            for record in group:
                if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                    handed += await _send_batch(kafka, batch, topic, partition, members)
                    batch, members = kafka.create_batch(), []
                    # the first record always fits: one larger than a batch goes alone
                    batch.append(key=record.key, value=record.value, timestamp=None)
                members.append(record)
            handed += await _send_batch(kafka, batch, topic, partition, members)
        return handed

    return hand_over


async def _by_partition(
    kafka: AIOKafkaProducer, records: Sequence[Outgoing], partition_of: Partitioner
) -> dict[tuple[str, int], list[Outgoing]]:
    """`records` grouped by the (topic, partition) the partitioner gives each, in order."""
    partitions: dict[str, tuple[list[int], list[int]]] = {}
    groups: dict[tuple[str, int], list[Outgoing]] = {}
    for record in records:
        if record.topic not in partitions:
            every = sorted(await kafka.partitions_for(record.topic))
            available = sorted(kafka.client.cluster.available_partitions_for_topic(record.topic))
            partitions[record.topic] = every, available
        partition = partition_of(record.key, *partitions[record.topic])
        groups.setdefault((record.topic, partition), []).append(record)
    return groups


async def _send_batch(
    kafka: AIOKafkaProducer, batch: Any, topic: str, partition: int, members: list[Outgoing]
) -> Handed:
    """Queue one built batch; its records share its confirmation (failed if refused now)."""
    try:
        confirmation: Awaitable[Any] = await kafka.send_batch(batch, topic, partition=partition)
    except Exception as error:
        confirmation = failed_confirmation(error)
    return [(record, confirmation) for record in members]


async def confirm_with_retries(
    hand_over: HandOver,
    handed: Handed,
    retry_for_s: float = DELIVERY_RETRY_S,
) -> None:
    """Wait for every confirmation; send refused records again until `retry_for_s` ends.

    Raises `DeliveryFailed` with the last error when some record is still refused then. A
    record sent twice may be stored twice: consumers keep the first per `txn_id`.
    """
    deadline = time.monotonic() + retry_for_s
    pause = FIRST_RETRY_PAUSE_S
    pending: Handed = handed
    while pending:
        # a batch's records share one confirmation: gather waits for each future once
        results = await asyncio.gather(*(done for _, done in pending), return_exceptions=True)
        refused = [
            (record, result)
            for (record, _), result in zip(pending, results, strict=True)
            if isinstance(result, Exception)
        ]
        if not refused:
            return
        error = refused[0][1]
        if time.monotonic() + pause > deadline:
            raise DeliveryFailed(
                f"{len(refused)} record(s) unconfirmed after {retry_for_s:g} s; last error: "
                f"{type(error).__name__}: {error}"
            ) from error
        log.warning("broker refused %d record(s) (%s: %s); sending them again in %.1f s",
                    len(refused), type(error).__name__, error, pause)  # fmt: skip
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_RETRY_PAUSE_S)
        pending = await hand_over([record for record, _ in refused])


async def confirm_all(handed: Handed) -> None:
    """Wait for every confirmation, no retry: the first refusal raises."""
    await asyncio.gather(*(done for _, done in handed))


class OverlappedDelivery:
    """Confirm-then-ack tasks, one per batch, chained so acks happen in batch order.

    `ack(events)` acks one batch's input events; `delivered(seconds)` is told how long a
    batch took from hand-over to the last confirmation; `confirm(handed)` waits for a
    batch's confirmations (`confirm_with_retries` in the worker) and raises if it gives up.
    """

    def __init__(
        self,
        ack: Callable[[Sequence[Any]], Awaitable[None]],
        delivered: Callable[[float], None],
        max_in_flight: int = MAX_BATCHES_IN_FLIGHT,
        confirm: Callable[[Handed], Awaitable[None]] = confirm_all,
    ) -> None:
        self._ack = ack
        self._delivered = delivered
        self._confirm = confirm
        self.max_in_flight = max_in_flight
        self._in_flight: deque[asyncio.Task[None]] = deque()

    async def submit(self, events: Sequence[Any], handed: Handed) -> None:
        """Track one batch whose records were handed over; wait while too many are in flight."""
        previous = self._in_flight[-1] if self._in_flight else None
        started = time.perf_counter()
        self._in_flight.append(
            asyncio.ensure_future(self._confirm_then_ack(previous, events, handed, started))
        )
        while self._in_flight and (
            len(self._in_flight) > self.max_in_flight or self._in_flight[0].done()
        ):
            await self._in_flight.popleft()  # raises if that batch's delivery failed

    async def drain(self) -> None:
        """Wait until every batch handed over is confirmed and acked (or raise its error)."""
        while self._in_flight:
            await self._in_flight.popleft()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def _confirm_then_ack(
        self,
        previous: asyncio.Task[None] | None,
        events: Sequence[Any],
        handed: Handed,
        started: float,
    ) -> None:
        await self._confirm(handed)
        self._delivered(time.perf_counter() - started)
        if previous is not None:
            await previous  # in order: never ack past a batch that is not acked (or failed)
        await self._ack(events)
