"""The async Redis client every FraudStream component uses, tuned for the worker's hot path.

Two costs dominated the worker's Redis round trips (py-spy, issue 9): redis-py's asyncio
connection packs each command in pure Python (~25 % of the feature stage), and a pipeline
holding registered scripts first sends `SCRIPT EXISTS`, one more round trip per batch.
So connections pack with hiredis (the C codec redis-py already uses to parse replies;
byte-identical output), and the feature store calls its scripts with EVALSHA through
`PipelineScripts`, loading them once and again only when Redis answers NOSCRIPT.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError


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


def redis_client(url: str) -> aioredis.Redis:
    """An asyncio client for `url` (redis://, rediss://, unix://) that packs with hiredis.

    AUTH and TLS come from the URL (`redis://user:password@host`, `rediss://`, and
    connection options such as `ssl_ca_certs` as query parameters).
    """
    pool = aioredis.ConnectionPool.from_url(
        url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    pool.connection_class = _hiredis_packing(pool.connection_class)
    return aioredis.Redis(connection_pool=pool)


class PipelineScripts:
    """Lua scripts queued into pipelines by SHA, without a `SCRIPT EXISTS` per pipeline.

    `run(build)` loads the scripts once, lets `build(pipe, shas)` queue commands and
    executes; if Redis lost the scripts (a restart, `SCRIPT FLUSH`) it reloads them and
    runs the pipeline again, so `build` must queue idempotent commands only.
    """

    def __init__(self, client: aioredis.Redis, sources: Sequence[str]) -> None:
        self._client = client
        self._sources = list(sources)
        self._shas: list[str] | None = None

    async def run(self, build: Callable[[Any, list[str]], None]) -> list[Any]:
        try:
            return await self._execute(build)
        except NoScriptError:
            self._shas = None  # Redis lost them: load again and run once more
            return await self._execute(build)

    async def _execute(self, build: Callable[[Any, list[str]], None]) -> list[Any]:
        if self._shas is None:
            self._shas = [await self._client.script_load(source) for source in self._sources]
        async with self._client.pipeline(transaction=False) as pipe:
            build(pipe, self._shas)
            return list(await pipe.execute())
