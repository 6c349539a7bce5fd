"""Redis AUTH and TLS come from the URL, against real redis-servers; a refused login or an
untrusted certificate is a store failure (the worker decides degraded), never a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fraudstream.features.builder import build_features
from fraudstream.features.store import RedisFeatureStore, RedisScoreStore
from fraudstream.features.stores import FeatureStoreError, ScoreStoreError
from fraudstream.features.transaction import Transaction
from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.services import EmbeddedRedis
from tests.support.tls import TLS_REDIS_SERVER, needs_tls_redis, self_signed_certificate

pytestmark = pytest.mark.integration

PASSWORD = "redis-pw-under-test"
TRANSACTIONS = generate_stream(GeneratorConfig(transactions=100, seed=21)).transactions[:30]


@pytest.fixture(scope="module")
def redis_with_password() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(password=PASSWORD) as server:
        yield server


def featurize(url: str, transactions: list[Transaction]) -> np.ndarray:
    """Feature vectors through the store (idempotent: featurizing again gives the same)."""

    async def run() -> np.ndarray:
        store = RedisFeatureStore.from_url(url)
        try:
            return np.vstack(await store.record_and_featurize(transactions))
        finally:
            await store.close()

    return asyncio.run(run())


@pytest.mark.parametrize("over", ["tcp", "unix socket"])
def test_the_store_logs_in_with_the_password_in_the_url(
    redis_with_password: EmbeddedRedis, over: str
) -> None:
    url = redis_with_password.url if over == "tcp" else redis_with_password.unix_url
    assert url is not None and f":{PASSWORD}@" in url
    vectors = featurize(url, TRANSACTIONS)
    np.testing.assert_array_equal(vectors, build_features(TRANSACTIONS).features)


@pytest.mark.parametrize(
    ("login", "refusal"),
    [(":not-the-password@", "invalid username-password pair"), ("", "authenticated")],
    ids=["wrong password", "no password"],
)
def test_a_refused_login_is_a_store_failure_naming_the_cause(
    redis_with_password: EmbeddedRedis, login: str, refusal: str
) -> None:
    url = redis_with_password.url.replace(f":{PASSWORD}@", login)

    async def score_store() -> None:
        store = RedisScoreStore.from_url(url)
        try:
            await store.scores_for(["t1"])
        finally:
            await store.close()

    with pytest.raises(FeatureStoreError, match=refusal) as features_failed:
        featurize(url, TRANSACTIONS[:3])
    with pytest.raises(ScoreStoreError, match=refusal) as scores_failed:
        asyncio.run(score_store())
    for failure in (features_failed.value, scores_failed.value):
        assert PASSWORD not in str(failure) and "not-the-password" not in str(failure)


@needs_tls_redis
def test_tls_with_the_ca_file_setting_and_without_it(tmp_path: Path) -> None:
    tls = self_signed_certificate(tmp_path)
    with EmbeddedRedis(
        binary=TLS_REDIS_SERVER, tls=tls, password=PASSWORD, unix_socket=False
    ) as server:
        assert server.url.startswith("rediss://")
        settings = Settings.from_env(
            {"FRAUDSTREAM_REDIS_URL": server.url, "FRAUDSTREAM_REDIS_CA_FILE": str(tls.cert_file)}
        )
        assert settings.redis_url is not None
        vectors = featurize(settings.redis_url, TRANSACTIONS)
        np.testing.assert_array_equal(vectors, build_features(TRANSACTIONS).features)
        # Without the CA file the self-signed certificate is not trusted; no TLS, no answer.
        with pytest.raises(FeatureStoreError, match="certificate verify failed"):
            featurize(server.url, TRANSACTIONS[:3])
        with pytest.raises(FeatureStoreError, match="feature store unavailable"):
            featurize(server.url.replace("rediss://", "redis://"), TRANSACTIONS[:3])
