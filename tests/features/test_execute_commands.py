"""`execute_commands`, the hot path's pipeline, against a real redis-server: replies in
order, an error or a timeout never leaves replies behind for the next caller, and scripts
Redis forgot are loaded again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fraudstream.features.redis_client import PipelineScripts, execute_commands, redis_client
from fraudstream.stream.tools.services import EmbeddedRedis

pytestmark = pytest.mark.integration

T = TypeVar("T")


def with_client(url: str, body: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def run() -> T:
        client = redis_client(url)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_replies_come_back_raw_and_in_order(redis_server: EmbeddedRedis) -> None:
    key = f"test:{uuid.uuid4().hex}"

    async def body(client: aioredis.Redis) -> list[object]:
        return await execute_commands(client, [
            ("SET", key, "first", "NX", "EX", 60),
            ("SET", key, "second", "NX", "EX", 60),  # already held: no reply value
            ("GET", key),
            ("INCRBY", f"{key}:n", 5),
            ("HMGET", f"{key}:absent", "a", "b"),
        ])  # fmt: skip

    assert with_client(redis_server.url, body) == [b"OK", None, b"first", 5, [None, None]]


def test_replies_larger_than_many_socket_reads_come_back_whole_and_in_order(
    redis_server: EmbeddedRedis,
) -> None:
    """The replies are parsed as they come in, a socket read (64 KiB) at a time."""
    key = f"test:{uuid.uuid4().hex}"
    values = [f"{index:06d}".encode() * 200 for index in range(2_000)]  # 2.4 MB of replies

    async def body(client: aioredis.Redis) -> list[object]:
        await execute_commands(client, [
            ("SET", f"{key}:{index}", value, "EX", 60) for index, value in enumerate(values)
        ])  # fmt: skip
        return await execute_commands(client, [("GET", f"{key}:{index}") for index in range(2_000)])

    assert with_client(redis_server.url, body) == values


def test_an_error_reply_raises_and_leaves_no_reply_for_the_next_call(
    redis_server: EmbeddedRedis,
) -> None:
    key = f"test:{uuid.uuid4().hex}"

    async def body(client: aioredis.Redis) -> list[object]:
        await execute_commands(client, [("SET", key, "text")])
        with pytest.raises(ResponseError, match="not an integer"):
            await execute_commands(client, [("INCR", key), ("GET", key), ("PING",)])
        return await execute_commands(client, [("ECHO", "mine"), ("GET", key)])

    assert with_client(redis_server.url, body) == [b"mine", b"text"]


def test_a_reply_later_than_the_socket_timeout_fails_fast_then_the_client_recovers(
    redis_server: EmbeddedRedis,
) -> None:
    url = f"{redis_server.url}?socket_timeout=0.2"

    async def body(client: aioredis.Redis) -> tuple[float, list[object]]:
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await execute_commands(client, [("DEBUG", "SLEEP", "0.6"), ("PING",)])
        waited = time.monotonic() - started
        await asyncio.sleep(0.6)  # Redis is busy sleeping until then
        return waited, await execute_commands(client, [("ECHO", "after")])

    waited, replies = with_client(url, body)
    assert waited < 0.5
    assert replies == [b"after"]


def test_the_connection_keeps_its_socket_timeout_for_other_callers(
    redis_server: EmbeddedRedis,
) -> None:
    """`execute_commands` sends under its own timeout, lifting the connection's meanwhile."""
    url = f"{redis_server.url}?socket_timeout=0.2"

    async def body(client: aioredis.Redis) -> tuple[float | None, object]:
        await execute_commands(client, [("PING",)])
        connection = await client.connection_pool.get_connection()
        try:
            return connection.socket_timeout, await client.ping()
        finally:
            await client.connection_pool.release(connection)

    assert with_client(url, body) == (0.2, True)


def test_a_connection_redis_closed_fails_one_call_and_the_next_connects_again(
    redis_server: EmbeddedRedis,
) -> None:
    """Redis dropping the connection (a restart, `CLIENT KILL`, an idle timeout) shows as
    the end of its replies: a `ConnectionError` (the pool's connections are not retried),
    and the next call gets a new connection."""
    key = f"test:{uuid.uuid4().hex}"

    async def body(client: aioredis.Redis) -> list[object]:
        await execute_commands(client, [("SET", key, "kept")])
        other = aioredis.Redis.from_url(redis_server.url)
        try:
            assert await other.client_kill_filter(_type="normal", skipme=True) >= 1
        finally:
            await other.aclose()
        with pytest.raises(RedisConnectionError):
            await execute_commands(client, [("GET", key)])
        return await execute_commands(client, [("GET", key), ("ECHO", "again")])

    assert with_client(redis_server.url, body) == [b"kept", b"again"]


def test_scripts_redis_forgot_are_loaded_again(redis_server: EmbeddedRedis) -> None:
    key = f"test:{uuid.uuid4().hex}"

    async def body(client: aioredis.Redis) -> tuple[list[object], list[object]]:
        scripts = PipelineScripts(client, ["return redis.call('INCR', KEYS[1])"])

        def commands(shas: list[str]) -> list[tuple[object, ...]]:
            return [("EVALSHA", shas[0], 1, key)]

        first = await scripts.run(commands)
        await client.script_flush()
        return first, await scripts.run(commands)

    assert with_client(redis_server.url, body) == ([1], [2])
