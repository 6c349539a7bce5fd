"""Settings come from FRAUDSTREAM_* variables, with defaults, and bad values name the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.stream.settings import Settings, SettingsError
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.optimise import Constraints

KEY = "k" * 32


def test_empty_environment_gives_documented_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.kafka_url is None and settings.redis_url is None
    assert settings.topics == ("transactions", "decisions", "labels", "transactions.dlq")
    assert settings.partitions == 4
    assert settings.registry_path == Path("registry")
    assert settings.model_timeout_ms == 50 and settings.model_timeout_s == 0.05
    assert settings.fallback_policy == "neutral"
    assert (settings.weight_xgboost, settings.weight_isolation_forest) == (None, None)
    assert (settings.cost_fn, settings.cost_fp, settings.cost_review) == (5000, 50, 10)
    assert settings.max_fpr == 0.001
    assert settings.metrics_port == 0
    assert settings.app_id == "fraudstream"


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "FRAUDSTREAM_KAFKA_URL": "kafka://k1:9092;k2:9093",
            "FRAUDSTREAM_REDIS_URL": "unix:///tmp/redis.sock?db=0",
            "FRAUDSTREAM_TOPIC_TRANSACTIONS": "txns",
            "FRAUDSTREAM_TOPIC_DECISIONS": "dec",
            "FRAUDSTREAM_TOPIC_LABELS": "lab",
            "FRAUDSTREAM_TOPIC_DLQ": "txns.dlq",
            "FRAUDSTREAM_PARTITIONS": "8",
            "FRAUDSTREAM_REGISTRY": "/srv/models",
            "FRAUDSTREAM_MODEL_TIMEOUT_MS": "20",
            "FRAUDSTREAM_FALLBACK_POLICY": "LAST_SCORE",
            "FRAUDSTREAM_WEIGHT_XGBOOST": "1",
            "FRAUDSTREAM_WEIGHT_ISOLATION_FOREST": "0",
            "FRAUDSTREAM_COST_FN": "1000",
            "FRAUDSTREAM_COST_FP": "25.5",
            "FRAUDSTREAM_COST_REVIEW": "0",
            "FRAUDSTREAM_MAX_FPR": "0.01",
            "FRAUDSTREAM_METRICS_PORT": "9100",
            "FRAUDSTREAM_APP_ID": "fraud-eu",
            "FRAUDSTREAM_ID_HASH_KEY": KEY,
        }
    )
    assert settings == Settings(
        kafka_url="kafka://k1:9092;k2:9093",
        redis_url="unix:///tmp/redis.sock?db=0",
        topic_transactions="txns",
        topic_decisions="dec",
        topic_labels="lab",
        topic_dlq="txns.dlq",
        partitions=8,
        registry_path=Path("/srv/models"),
        model_timeout_ms=20,
        fallback_policy="last_score",
        weight_xgboost=1,
        weight_isolation_forest=0,
        cost_fn=1000,
        cost_fp=25.5,
        cost_review=0,
        max_fpr=0.01,
        metrics_port=9100,
        app_id="fraud-eu",
        id_hash_key=KEY,
    )


def test_bare_host_port_kafka_url_gets_the_faust_scheme() -> None:
    assert Settings.from_env({"FRAUDSTREAM_KAFKA_URL": "localhost:9092"}).kafka_url == (
        "kafka://localhost:9092"
    )


def test_empty_value_means_default() -> None:
    assert Settings.from_env({"FRAUDSTREAM_PARTITIONS": " ", "FRAUDSTREAM_KAFKA_URL": ""}) == (
        Settings()
    )


def test_other_variables_are_ignored() -> None:
    assert Settings.from_env({"KAFKA_URL": "x", "PARTITIONS": "-1"}) == Settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FRAUDSTREAM_PARTITIONS", "four"),
        ("FRAUDSTREAM_PARTITIONS", "0"),
        ("FRAUDSTREAM_MODEL_TIMEOUT_MS", "0"),
        ("FRAUDSTREAM_MODEL_TIMEOUT_MS", "nan"),
        ("FRAUDSTREAM_FALLBACK_POLICY", "zero"),
        ("FRAUDSTREAM_WEIGHT_XGBOOST", "-0.1"),
        ("FRAUDSTREAM_COST_FN", "lots"),
        ("FRAUDSTREAM_MAX_FPR", "0"),
        ("FRAUDSTREAM_MAX_FPR", "1.5"),
        ("FRAUDSTREAM_METRICS_PORT", "70000"),
        ("FRAUDSTREAM_KAFKA_URL", "http://broker:9092"),
        ("FRAUDSTREAM_KAFKA_URL", "kafka://broker"),
        ("FRAUDSTREAM_REDIS_URL", "localhost:6379"),
        ("FRAUDSTREAM_TOPIC_DLQ", "bad topic"),
        ("FRAUDSTREAM_APP_ID", "two words"),
        ("FRAUDSTREAM_ID_HASH_KEY", "too-short-to-be-a-secret"),
    ],
)
def test_invalid_value_raises_an_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_all_zero_weights_are_rejected() -> None:
    with pytest.raises(SettingsError, match="WEIGHT"):
        Settings.from_env(
            {"FRAUDSTREAM_WEIGHT_XGBOOST": "0", "FRAUDSTREAM_WEIGHT_ISOLATION_FOREST": "0"}
        )


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.partitions = 8  # type: ignore[misc]


def test_cost_variables_build_the_cost_model_and_constraints() -> None:
    settings = Settings.from_env(
        {
            "FRAUDSTREAM_COST_FN": "1000",
            "FRAUDSTREAM_COST_FP": "25.5",
            "FRAUDSTREAM_COST_REVIEW": "0",
            "FRAUDSTREAM_MAX_FPR": "0.01",
        }
    )
    assert settings.cost_model == CostModel(cost_fn=1000, cost_fp=25.5, cost_review=0)
    assert settings.threshold_constraints == Constraints(max_fpr=0.01)
    assert Settings().cost_model == CostModel()
    assert Settings().threshold_constraints == Constraints()


def test_the_id_hash_key_is_never_shown_even_in_an_error() -> None:
    secret = "s3cret-" * 5
    assert secret not in repr(Settings(id_hash_key=secret))
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"FRAUDSTREAM_ID_HASH_KEY": secret[:20]})
    assert secret[:20] not in str(caught.value) and "20 characters" in str(caught.value)


@pytest.mark.parametrize(
    "named", [{"FRAUDSTREAM_KAFKA_URL": "kafka://k:9092"}, {"FRAUDSTREAM_REDIS_URL": "redis://r"}]
)
def test_named_services_need_the_id_hash_key(named: dict[str, str]) -> None:
    settings = Settings.from_env(named)
    for make in (settings.id_pseudonyms, settings.run_id_hash_key):
        with pytest.raises(SettingsError, match="FRAUDSTREAM_ID_HASH_KEY is not set"):
            make()
    keyed = Settings.from_env({**named, "FRAUDSTREAM_ID_HASH_KEY": KEY})
    assert keyed.run_id_hash_key() == KEY
    assert keyed.id_pseudonyms().card("c1") == IdPseudonyms(KEY).card("c1")


def test_with_every_service_embedded_each_run_makes_its_own_key() -> None:
    settings = Settings()
    first, second = settings.run_id_hash_key(), settings.run_id_hash_key()
    assert first != second and len(first) >= 32
    assert settings.id_pseudonyms().card("c1") != settings.id_pseudonyms().card("c1")
