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


#: Hands one record to the producer; returns its confirmation (resolved when the broker has it).
Send = Callable[[Outgoing], Awaitable[Awaitable[Any]]]
#: Records handed to the producer, each with its confirmation.
Handed = Sequence[tuple[Outgoing, Awaitable[Any]]]


async def _handed(send: Send, record: Outgoing) -> Awaitable[Any]:
    """`send(record)`, with a refusal at hand-over returned as a failed confirmation."""
    try:
        return await send(record)
    except Exception as error:
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(error)
        return failed


async def send_all(send: Send, records: Sequence[Outgoing]) -> Handed:
    """Hand every record over at once; each is paired with its confirmation."""
    return [(record, await _handed(send, record)) for record in records]


async def confirm_with_retries(
    send: Send,
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
        pending = await send_all(send, [record for record, _ in refused])


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
