"""Shared fixtures: the real Tansu broker and redis-server, once per test session.

Tests that use them must be marked ``@pytest.mark.integration`` so ``pytest -m
"not integration"`` runs the fast suite alone. Each test uses its own topic names and
consumer group (for example derived from the test name) because the servers are shared.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from tests.support.redis_cluster import LocalRedisCluster
from tests.support.worker_runs import REDIS_TEST_DATABASES

# In CI the property tests draw the same examples every run, so a rare example cannot turn
# one submission red and the next green; on a developer's machine they explore afresh.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker with in-memory storage on a free port (``.url``, ``.bootstrap``)."""
    with EmbeddedBroker() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A redis-server without persistence (``.url`` over TCP, ``.unix_url`` over a socket).

    Integration tests each take a fresh database (`tests.support.worker_runs.REDIS_DATABASES`);
    the suite needs more than redis-server's default 16.
    """
    with EmbeddedRedis(options=["--databases", str(REDIS_TEST_DATABASES)]) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A real three-master Redis Cluster (``.url`` is ``redis+cluster://...``), no replicas."""
    with LocalRedisCluster() as cluster:
        yield cluster


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.redis_cluster)])
def any_redis(request: pytest.FixtureRequest) -> EmbeddedRedis | LocalRedisCluster:
    """The session's redis-server, then its Redis Cluster: a test taking it runs on both."""
    name = "redis_server" if request.param == "redis" else "redis_cluster"
    server: EmbeddedRedis | LocalRedisCluster = request.getfixturevalue(name)
    return server


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with one version trained on a small generated stream (seed 11), signed
    with `TEST_SIGNING_KEY`."""
    from fraudstream.stream.offline.training import train_from_file
    from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
    from fraudstream.stream.sim.streamfile import write_stream
    from tests.support.signing import TEST_SIGNING_KEY

    folder = tmp_path_factory.mktemp("registry")
    data = folder / "train.jsonl"
    write_stream(generate_stream(GeneratorConfig(transactions=20_000, seed=11)), data)
    train_from_file(data, folder / "registry", signing_key=TEST_SIGNING_KEY)
    return folder / "registry"
