"""Redis Cluster for the worker's hot path: one batch, one write per master, in parallel.

`FRAUDSTREAM_REDIS_URL=redis+cluster://host:port[,host:port...]` (`rediss+cluster://` for
TLS) names a cluster by any of its nodes; the rest are discovered (`CLUSTER SLOTS`).
redis-py's `RedisCluster` pipeline would route a batch too, but at its per-command CPU cost
(see features/redis_client.py); `execute_on_cluster` keeps the single-node shape instead:
the batch's commands are grouped by the master owning their key's slot, each group goes to
its master in one write (concurrently), and the replies come back in the batch's order.

Failures stay per master, as the single-node store's are per Redis: a master that fails
(0.5 s timeout, refused connection, CLUSTERDOWN) is left alone for `PAUSE_AFTER_FAILURE_S`,
its commands fail at once meanwhile, and the other masters' commands go on. Such a batch
raises `SomeCommandsFailed`, whose `replies` hold the error in place of each failed reply,
so a caller can keep what the healthy masters answered. A failure or a redirection (MOVED,
ASK) marks the slot map stale: it is read again before the next batch, so the client
follows a failover or a resharding by itself. Commands must keep their keys in one slot
(hash tags) and be idempotent: a timed-out write may still be applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import hiredis
import redis
import redis.cluster
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
#: After a failed round trip a master, or a single Redis (`RedisGate`, features/store.py), is
#: left alone this long: meanwhile its commands fail at once instead of each waiting for the
#: client's timeout.
PAUSE_AFTER_FAILURE_S = 1.0
#: Commands without a key: sent to any master.
_KEYLESS = frozenset({"PING", "ECHO", "DEBUG", "TIME", "SCRIPT", "INFO", "DBSIZE"})
#: Replies that say the slot map is out of date (or the cluster is mending).
_TOPOLOGY_ERRORS = (AskError, TryAgainError, ClusterDownError)


class SomeCommandsFailed(RedisError):
    """Some commands of a batch failed; `replies` holds each reply, or the error instead."""

    def __init__(self, replies: list[Any], message: str) -> None:
        super().__init__(message)
        self.replies = replies


class ClusterClient(RedisCluster):
    """redis-py's asyncio cluster client, with the per-master state `execute_on_cluster` keeps."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: node name -> (monotonic time until which it is left alone, its last error)
        self.paused: dict[str, tuple[float, str]] = {}
        self.slot_map_stale = False


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def cluster_client(url: str, timeout_s: float) -> ClusterClient:
    """The worker's asyncio client for a cluster URL (see `cluster_startup`)."""
    addresses, options = cluster_startup(url, timeout_s)
    nodes = [ClusterNode(host, port) for host, port in addresses]
    return ClusterClient(startup_nodes=nodes, require_full_coverage=False, **options)


def blocking_client(url: str, timeout_s: float) -> redis.Redis | redis.cluster.RedisCluster:
    """A blocking redis-py client for any Redis URL the worker takes, a cluster's included:
    for tools that read Redis after a run (`fraudstream demo`'s footprint, tests)."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, socket_timeout=timeout_s)
    addresses, options = cluster_startup(url, timeout_s)
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in addresses]
    return redis.cluster.RedisCluster(startup_nodes=nodes, require_full_coverage=False, **options)


def cluster_startup(url: str, timeout_s: float) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The nodes and client options of `redis+cluster://[user:password@]host:port[,...][/?opts]`.

    Credentials and query options (`ssl_ca_certs`, `socket_timeout`, ...) apply to every
    node, as in a `redis://` URL; `timeout_s` is the default read and connect timeout. The
    options suit redis-py's asyncio and blocking cluster clients alike.
    """
    if not is_cluster_url(url):
        raise ValueError(f"not a Redis Cluster URL (want {' or '.join(CLUSTER_SCHEMES)}): {url}")
    parts = urlsplit(url)
    user_info, _, hosts = parts.netloc.rpartition("@")
    addresses = [host.rsplit(":", 1) for host in hosts.split(",") if host]
    if not addresses or any(len(address) != 2 for address in addresses):
        raise ValueError(f"a Redis Cluster URL lists its nodes as host:port,host:port: {hosts}")
    scheme = "rediss" if parts.scheme.startswith("rediss") else "redis"
    login = f"{user_info}@" if user_info else ""
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    options.update(parse_url(f"{scheme}://{login}{hosts.split(',')[0]}/?{parts.query}"))
    for single_node_only in ("host", "port", "db"):
        options.pop(single_node_only, None)
    if options.pop("connection_class", Connection) is SSLConnection:
        options["ssl"] = True
    return [(host, int(port)) for host, port in addresses], options


def script_shas(sources: Sequence[str]) -> list[str]:
    """The SHA1 digests Redis names `sources` by (what `SCRIPT LOAD` would answer)."""
    return [hashlib.sha1(source.encode()).hexdigest() for source in sources]


def _key_of(command: Sequence[Any]) -> Any:
    name = str(command[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return command[3] if int(command[2]) > 0 else None
    return None if name in _KEYLESS or len(command) < 2 else command[1]


def _slot(key: Any) -> int:
    return key_slot(key.encode() if isinstance(key, str) else bytes(key))


async def execute_on_cluster(
    client: ClusterClient, commands: Sequence[Sequence[Any]], scripts: Sequence[str] = ()
) -> list[Any]:
    """Send `commands`, one write per master, and return their raw replies in order.

    `scripts` are the Lua sources the commands call by SHA: a master that answers NOSCRIPT
    gets them loaded and its commands sent again, in one more write. Raises
    `SomeCommandsFailed` when any command failed (see the module doc).
    """
    await _refresh_slot_map_if_stale(client)
    replies: list[Any] = [None] * len(commands)
    groups: dict[str, tuple[ClusterNode, list[int]]] = {}
    slots = client.nodes_manager.slots_cache
    now = time.monotonic()
    for index, command in enumerate(commands):
        key = _key_of(command)
        owners = slots.get(_slot(key)) if key is not None else [client.get_default_node()]
        if not owners or owners[0] is None:
            replies[index] = RedisError(f"no master holds the slot of {key!r}")
            continue
        node = owners[0]
        paused_until, last_error = client.paused.get(node.name, (0.0, ""))
        if now < paused_until:
            replies[index] = RedisError(
                f"{node.name} unavailable: {last_error} (less than "
                f"{PAUSE_AFTER_FAILURE_S:g} s ago; not asked again yet)"
            )
            continue
        groups.setdefault(node.name, (node, []))[1].append(index)
    answers = await asyncio.gather(
        *(_send_to_node(node, [commands[i] for i in indexes], scripts)
          for node, indexes in groups.values()),
        return_exceptions=True,
    )  # fmt: skip
    for (node, indexes), answer in zip(groups.values(), answers, strict=True):
        if isinstance(answer, RedisError):
            client.paused[node.name] = (time.monotonic() + PAUSE_AFTER_FAILURE_S, str(answer))
            client.slot_map_stale = True
            answer = [answer] * len(indexes)
        elif isinstance(answer, BaseException):
            raise answer  # a bug or a cancel, not a master failing
        for index, reply in zip(indexes, answer, strict=True):
            replies[index] = reply
    failed = [reply for reply in replies if isinstance(reply, Exception)]
    if failed:
        if any(isinstance(reply, _TOPOLOGY_ERRORS) for reply in failed):
            client.slot_map_stale = True
        raise SomeCommandsFailed(
            replies, f"{len(failed)} of {len(commands)} commands failed, first: {failed[0]}"
        )
    return replies


async def _refresh_slot_map_if_stale(client: ClusterClient) -> None:
    """Read the slot map again after a failure or a redirection (the failed node last)."""
    if client._initialize:  # first use, or redis-py's own commands asked for a new map
        try:
            await client.initialize()
        except RedisClusterException as error:
            raise RedisError(f"Redis Cluster unreachable: {error}") from error
        client.slot_map_stale = False
    if not client.slot_map_stale:
        return
    client.slot_map_stale = False
    now = time.monotonic()
    failed_node = next((name for name, (until, _) in client.paused.items() if until > now), None)
    try:
        await client.nodes_manager.initialize(last_failed_node_name=failed_node)
    except (RedisClusterException, RedisError):
        client.slot_map_stale = True  # keep the old map; the commands will say what is wrong


async def _send_to_node(
    node: ClusterNode, commands: list[Sequence[Any]], scripts: Sequence[str]
) -> list[Any]:
    """One write to `node`, its replies in order (an error reply in place, not raised)."""
    replies = await _round_trip(node, commands)
    if scripts and any(isinstance(reply, NoScriptError) for reply in replies):
        loads = [("SCRIPT", "LOAD", source) for source in scripts]
        replies = (await _round_trip(node, [*loads, *commands]))[len(loads) :]
    return replies


async def _round_trip(node: ClusterNode, commands: Sequence[Sequence[Any]]) -> list[Any]:
    connection = node.acquire_connection()
    try:
        await node.disconnect_if_needed(connection)
        await connection.send_packed_command(
            b"".join(hiredis.pack_command(tuple(command)) for command in commands)
        )
        try:
            async with asyncio.timeout(connection.socket_timeout):
                return [await _reply(connection) for _ in commands]
        except TimeoutError as error:
            raise RedisTimeoutError(f"Timeout reading from {node.name}: {error}") from error
    except BaseException:
        # Unread replies would answer the next caller's commands: drop the connection.
        await connection.disconnect(nowait=True)
        raise
    finally:
        node.release(connection)


async def _reply(connection: Connection) -> Any:
    try:
        return await connection.read_response(timeout=math.inf)
    except ResponseError as error:  # read whole: the connection stays in step
        return error
