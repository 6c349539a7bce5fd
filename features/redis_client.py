"""The async Redis client every FraudStream component uses, tuned for the worker's hot path.

Three costs dominated the worker's Redis round trips (py-spy, issue 9): redis-py's asyncio
connection packs each command in pure Python (~25 % of the feature stage); a pipeline
holding registered scripts first sends `SCRIPT EXISTS`, one more round trip per batch; and
its pipeline spends ~39 us of CPU per command reading replies (a timeout context, response
callbacks and bookkeeping per reply), against ~8 us for the same replies read under one
timeout for the batch. So connections pack with hiredis (the C codec redis-py already uses
to parse replies; byte-identical output), the hot path sends its commands with
`execute_commands`, and the feature store calls its scripts with EVALSHA through
`PipelineScripts`, loading them once and again only when Redis answers NOSCRIPT.

A `redis+cluster://` URL gives a Redis Cluster client instead (features/redis_cluster.py):
the same two functions then send each master its share of a batch, concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fraudstream.features.redis_cluster import (
    ClusterClient,
    cluster_client,
    execute_on_cluster,
    is_cluster_url,
    script_shas,
)

#: A single Redis or a Redis Cluster (`redis_client` gives either, by the URL's scheme).
RedisClient = aioredis.Redis | ClusterClient
#: One Redis command: its name and arguments, as `Redis.execute_command` takes them.
Command = tuple[Any, ...]


def _pack_with_hiredis(self: AbstractConnection, *args: Any) -> list[bytes]:
    """What `pack_command` returns, in C; a multi-word command name is split as redis-py does."""
    if isinstance(args[0], str) and " " in args[0]:
        args = (*args[0].split(), *args[1:])
    return [hiredis.pack_command(args)]


def _hiredis_packing(base: type[AbstractConnection]) -> type[AbstractConnection]:
    return type(f"Hiredis{base.__name__}", (base,), {"pack_command": _pack_with_hiredis})


#: How long one Redis command may take before it fails. redis-py's default, 5 s, let a
#: frozen Redis (SIGSTOP, a stalled VM) hold every batch for 5 s; a healthy local Redis
#: answers a batch's pipeline in milliseconds. A `socket_timeout` in the URL wins.
REDIS_TIMEOUT_S = 0.5


def redis_client(url: str) -> RedisClient:
    """An asyncio client for `url` (redis://, rediss://, unix://) that packs with hiredis,
    or a cluster client for `redis+cluster://host:port[,host:port...]` (`rediss+cluster://`).

    AUTH and TLS come from the URL (`redis://user:password@host`, `rediss://`, and
    connection options such as `ssl_ca_certs` as query parameters).
    """
    if is_cluster_url(url):
        return cluster_client(url, REDIS_TIMEOUT_S)
    pool = aioredis.ConnectionPool.from_url(
        url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    pool.connection_class = _hiredis_packing(pool.connection_class)
    return aioredis.Redis(connection_pool=pool)


async def execute_commands(client: RedisClient, commands: Sequence[Command]) -> list[Any]:
    """Send `commands` in one write and return their raw replies, in order.

    What a non-transactional redis-py pipeline does, at a fifth of its client CPU: the
    replies are read under one timeout (the connection's `socket_timeout`) for the batch.
    Replies are not post-processed (`SET` gives b"OK" or None, scripts what they return).
    An error reply raises its `ResponseError` (`NoScriptError` for NOSCRIPT); a lost
    connection goes through the connection's `retry`, as redis-py's own commands do, so
    the commands must be idempotent (our clients keep redis-py's default of no retries:
    the call raises `ConnectionError` and the next one connects again). On a cluster see
    `execute_on_cluster`: a failure there raises `SomeCommandsFailed`, carrying the healthy
    masters' replies.
    """
    if isinstance(client, ClusterClient):
        return await execute_on_cluster(client, commands)
    pool = client.connection_pool
    connection = await pool.get_connection()
    packed = b"".join(hiredis.pack_command(command) for command in commands)

    async def send_and_read() -> list[Any]:
        try:
            async with asyncio.timeout(connection.socket_timeout):
                await _send_under_callers_timeout(connection, packed)
                return await _read_replies(connection, len(commands))
        except TimeoutError as error:
            raise RedisTimeoutError(f"Timeout talking to Redis: {error}") from error

    async def forget_connection(_error: Exception) -> None:
        await connection.disconnect()

    try:
        return list(await connection.retry.call_with_retry(send_and_read, forget_connection))
    except BaseException:
        # Unread replies (after an error reply, a timeout or a cancel) would answer the
        # next caller's commands: this connection is not reused as it is.
        await connection.disconnect(nowait=True)
        raise
    finally:
        await pool.release(connection)


async def _send_under_callers_timeout(connection: AbstractConnection, packed: bytes) -> None:
    """`send_packed_command` without the `wait_for` it wraps the write in (a task per
    send) when the connection has a `socket_timeout`: the caller's timeout bounds it."""
    socket_timeout, connection.socket_timeout = connection.socket_timeout, None
    try:
        await connection.send_packed_command(packed)
    finally:
        connection.socket_timeout = socket_timeout


async def _read_replies(connection: AbstractConnection, count: int) -> list[Any]:
    """`count` replies, or the first error reply raised once all are read.

    Straight from the connection's hiredis reader, which parses them as they arrive:
    redis-py's `read_response` per reply (its checks and timeout context, three calls
    deep) was 3 % of the instructions spent deciding a transaction (issue 9). The
    caller's timeout bounds the reads. Our clients always parse with hiredis.
    """
    parser = connection._parser
    assert isinstance(parser, _AsyncHiredisParser) and parser._reader is not None
    next_reply = parser._reader.gets
    replies = []
    try:
        while len(replies) < count:
            reply = next_reply()
            if reply is NOT_ENOUGH_DATA:
                await parser.read_from_socket()
            elif isinstance(reply, RedisConnectionError):
                raise reply
            else:
                replies.append(reply)
    except OSError as error:  # as `read_response`: a retryable `ConnectionError`
        raise RedisConnectionError(f"Error while reading from Redis: {error}") from error
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


class PipelineScripts:
    """Lua scripts sent by SHA with `execute_commands`, without a `SCRIPT EXISTS` each time.

    `run(build)` loads the scripts once, sends the commands `build(shas)` returns and
    gives their replies; if Redis lost the scripts (a restart, `SCRIPT FLUSH`) it reloads
    them and sends the commands again, so `build` must return idempotent commands only.
    """

    def __init__(self, client: RedisClient, sources: Sequence[str]) -> None:
        self._client = client
        self._sources = list(sources)
        self._shas: list[str] | None = None

    async def run(self, build: Callable[[list[str]], list[Command]]) -> list[Any]:
        try:
            return await self._execute(build)
        except NoScriptError:
            self._shas = None  # Redis lost them: load again and run once more
            return await self._execute(build)

    async def _execute(self, build: Callable[[list[str]], list[Command]]) -> list[Any]:
        if isinstance(self._client, ClusterClient):  # NOSCRIPT is handled per master there
            if self._shas is None:
                self._shas = script_shas(self._sources)
            return await execute_on_cluster(self._client, build(self._shas), self._sources)
        if self._shas is None:
            self._shas = [await self._client.script_load(source) for source in self._sources]
        return await execute_commands(self._client, build(self._shas))
