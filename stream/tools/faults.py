"""Faults on the servers a chaos run uses: Redis stopped or killed, the broker restarted.

`ChaosServices` holds the broker and Redis one run of stream/tools/chaos.py talks to. A
fault that kills a server starts a new, empty one on the same port, as an orchestrator
restarting the process would; only the servers it started itself may be faulted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Sequence

from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis, create_topics


class ChaosServices:
    """The broker and Redis a run talks to, and the faults that hit them.

    Only the servers this object started (`running`) can be faulted; shared ones (test
    fixtures) can serve the runs that fault neither. The worker reaches Redis over TCP
    (a restarted Redis keeps the port), database `redis_db`.
    """

    def __init__(
        self, broker: EmbeddedBroker, redis: EmbeddedRedis, redis_db: int = 0,
        owned: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.broker, self.redis, self.redis_db, self.owned = broker, redis, redis_db, owned

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, broker: EmbeddedBroker | None = None, redis: EmbeddedRedis | None = None,
        redis_db: int = 0,
    ) -> Iterator[ChaosServices]:  # fmt: skip
        """Start the servers not given; stop them (and their replacements) on exit."""
        services = cls(broker or EmbeddedBroker().start(), redis or EmbeddedRedis().start(),
                       redis_db, [name for name, given in (("broker", broker), ("redis", redis))
                                  if given is None])  # fmt: skip
        try:
            yield services
        finally:
            if "broker" in services.owned:
                services.broker.stop()
            if "redis" in services.owned:
                services.redis.stop()

    @property
    def redis_url(self) -> str:
        return self.redis.url.replace("/0", f"/{self.redis_db}")

    def _own(self, name: str) -> None:
        if name not in self.owned:
            raise ValueError(f"this fault needs a {name} of its own, not a shared one")

    def signal_redis(self, signum: signal.Signals) -> None:
        self._own("redis")
        assert self.redis.pid is not None
        os.kill(self.redis.pid, signum)

    def kill_redis(self) -> None:
        self.signal_redis(signal.SIGKILL)
        self.redis.stop()

    def start_redis_again(self) -> None:
        """A new, empty Redis where the killed one was (same TCP port)."""
        self.redis = EmbeddedRedis(self.redis.port).start()

    def restart_broker(self, down_s: float, topics: Sequence[str], partitions: int) -> None:
        """SIGKILL the broker, start an empty one on its port `down_s` later, re-create `topics`.

        Killed, not stopped: Tansu takes seconds to exit on SIGTERM and serves meanwhile.
        Produce nothing until this returns (the chaos row pauses its producer): Tansu 0.6
        acknowledges, then drops, records sent to a topic that does not exist yet, and a
        produce racing the topic's creation left two offset sequences in one partition in
        a trial. A real Kafka keeps its topics across a restart.
        """
        self._own("broker")
        assert self.broker.pid is not None
        os.kill(self.broker.pid, signal.SIGKILL)
        self.broker.stop()
        time.sleep(down_s)
        self.broker = EmbeddedBroker(self.broker.port).start()
        create_topics(self.broker.bootstrap, topics, partitions)
