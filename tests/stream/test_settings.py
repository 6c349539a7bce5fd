"""Settings come from FRAUDSTREAM_* variables, with defaults, and bad values name the variable."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.models.signing import SigningKey
from fraudstream.stream import settings as settings_module
from fraudstream.stream.settings import VARIABLES, Settings, SettingsError
from fraudstream.stream.transport import KafkaSecurity, Secret
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.optimise import Constraints
from fraudstream.thresholds.rules import DEFAULT_RULES_FILE

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
    assert settings.metrics_host == "127.0.0.1"  # this machine only, unless asked
    assert settings.kafka_security == KafkaSecurity("PLAINTEXT")
    assert settings.app_id == "fraudstream"
    assert settings.event_skew_limit_s == 86_400.0  # ± 1 day
    assert settings.label_delay_days == 7 and settings.label_delay_s == 7 * 86_400.0


def test_label_delay_is_a_week_unless_set() -> None:
    assert Settings.from_env({}).label_delay_days == 7.0
    assert Settings.from_env({"FRAUDSTREAM_LABEL_DELAY_DAYS": "2.5"}).label_delay_days == 2.5
    assert Settings.from_env({"FRAUDSTREAM_LABEL_DELAY_DAYS": "0"}).label_delay_days == 0.0


def test_event_time_skew_zero_turns_the_check_off() -> None:
    assert Settings.from_env({"FRAUDSTREAM_MAX_EVENT_SKEW_S": "0"}).event_skew_limit_s is None
    assert Settings.from_env({"FRAUDSTREAM_MAX_EVENT_SKEW_S": "3600"}).event_skew_limit_s == 3600
    with pytest.raises(SettingsError, match="FRAUDSTREAM_MAX_EVENT_SKEW_S"):
        Settings.from_env({"FRAUDSTREAM_MAX_EVENT_SKEW_S": "-1"})


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
            "FRAUDSTREAM_METRICS_HOST": "0.0.0.0",
            "FRAUDSTREAM_APP_ID": "fraud-eu",
            "FRAUDSTREAM_ID_HASH_KEY": KEY,
            "FRAUDSTREAM_LABEL_DELAY_DAYS": "0.5",
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
        metrics_host="0.0.0.0",
        app_id="fraud-eu",
        id_hash_key=KEY,
        label_delay_days=0.5,
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
        ("FRAUDSTREAM_METRICS_HOST", "localhost:9108"),
        ("FRAUDSTREAM_METRICS_HOST", "http://0.0.0.0"),
        ("FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("FRAUDSTREAM_KAFKA_SASL_MECHANISM", "GSSAPI"),
        ("FRAUDSTREAM_REDIS_CA_FILE", "/nonexistent/ca.pem"),
        ("FRAUDSTREAM_KAFKA_URL", "http://broker:9092"),
        ("FRAUDSTREAM_KAFKA_URL", "kafka://broker"),
        ("FRAUDSTREAM_REDIS_URL", "localhost:6379"),
        ("FRAUDSTREAM_REDIS_URL", "redis+cluster://a:7000,b"),
        ("FRAUDSTREAM_TOPIC_DLQ", "bad topic"),
        ("FRAUDSTREAM_APP_ID", "two words"),
        ("FRAUDSTREAM_ID_HASH_KEY", "too-short-to-be-a-secret"),
        ("FRAUDSTREAM_LABEL_DELAY_DAYS", "-1"),
        ("FRAUDSTREAM_LABEL_DELAY_DAYS", "a week"),
        ("FRAUDSTREAM_LABEL_DELAY_DAYS", "inf"),
    ],
)
def test_invalid_value_raises_an_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_the_signing_key_is_read_as_given_and_a_short_one_is_refused_unechoed() -> None:
    secret = "0123456789abcdef0123456789abcdef"
    settings = Settings.from_env({"FRAUDSTREAM_SIGNING_KEY": secret})
    assert settings.signing_key == SigningKey(secret)
    assert Settings().signing_key is None
    assert secret not in repr(settings)
    with pytest.raises(SettingsError, match="FRAUDSTREAM_SIGNING_KEY.*16 bytes") as refused:
        Settings.from_env({"FRAUDSTREAM_SIGNING_KEY": "tiny-secret"})
    assert "tiny-secret" not in str(refused.value)


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
            "FRAUDSTREAM_REVIEW_CAPACITY": "0.05",
            "FRAUDSTREAM_RECALIBRATION_MIN_RECALL": "0.9",
            "FRAUDSTREAM_LIMIT_MARGIN": "0.75",
        }
    )
    assert settings.cost_model == CostModel(cost_fn=1000, cost_fp=25.5, cost_review=0)
    assert settings.threshold_constraints == Constraints(max_fpr=0.01, max_review_rate=0.05)
    assert settings.selection_constraints == Constraints(max_fpr=0.0025, max_review_rate=0.0125)
    assert settings.recalibration_constraints == Constraints(0.0025, 0.9, 0.0125)
    assert Settings().cost_model == CostModel()
    assert Settings().threshold_constraints == Constraints(max_fpr=0.001, max_review_rate=0.02)


@pytest.mark.parametrize("raw", ["-0.01", "1.5", "nan"])
def test_review_capacity_outside_zero_to_one_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="FRAUDSTREAM_REVIEW_CAPACITY"):
        Settings.from_env({"FRAUDSTREAM_REVIEW_CAPACITY": raw})


@pytest.mark.parametrize("raw", ["-0.1", "1", "x"])
def test_limit_margin_outside_zero_to_one_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="FRAUDSTREAM_LIMIT_MARGIN"):
        Settings.from_env({"FRAUDSTREAM_LIMIT_MARGIN": raw})


def test_new_pairs_are_chosen_within_half_of_each_limit_by_default() -> None:
    assert Settings().selection_constraints == Constraints(max_fpr=0.0005, max_review_rate=0.01)


def test_review_capacity_zero_means_declines_only() -> None:
    settings = Settings.from_env({"FRAUDSTREAM_REVIEW_CAPACITY": "0"})
    assert settings.threshold_constraints.max_review_rate == 0.0


PASSWORD = "s3cret-not-for-logs"


def test_transport_security_variables_are_read(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_text("PEM")  # read when a client connects, not here
    settings = Settings.from_env(
        {
            "FRAUDSTREAM_KAFKA_URL": "broker:9093",
            "FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "FRAUDSTREAM_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "FRAUDSTREAM_KAFKA_SASL_USERNAME": "fraudstream",
            "FRAUDSTREAM_KAFKA_SASL_PASSWORD": f" {PASSWORD}",
            "FRAUDSTREAM_KAFKA_CA_FILE": str(ca),
            "FRAUDSTREAM_KAFKA_CERT_FILE": str(cert),
            "FRAUDSTREAM_KAFKA_KEY_FILE": str(key),
            "FRAUDSTREAM_REDIS_URL": f"rediss://:{PASSWORD}@redis:6380/0",
            "FRAUDSTREAM_REDIS_CA_FILE": str(ca),
        }
    )
    assert settings.kafka_security == KafkaSecurity(
        "SASL_SSL", "SCRAM-SHA-512", "fraudstream", Secret(f" {PASSWORD}"), ca, cert, key
    )  # the password as given, spaces included
    assert settings.redis_url == f"rediss://:{PASSWORD}@redis:6380/0?ssl_ca_certs={ca}"
    assert PASSWORD not in repr(settings)


def test_a_redis_cluster_url_takes_the_ca_file_for_every_node(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env({
        "FRAUDSTREAM_REDIS_URL": f"rediss+cluster://:{PASSWORD}@r1:7000,r2:7001,r3:7002",
        "FRAUDSTREAM_REDIS_CA_FILE": str(ca),
    })  # fmt: skip
    assert settings.redis_url == (
        f"rediss+cluster://:{PASSWORD}@r1:7000,r2:7001,r3:7002?ssl_ca_certs={ca}"
    )


def test_sasl_without_tls_needs_no_files() -> None:
    security = Settings.from_env(
        {
            "FRAUDSTREAM_KAFKA_URL": "broker:9092",
            "FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "FRAUDSTREAM_KAFKA_SASL_USERNAME": "fraudstream",
            "FRAUDSTREAM_KAFKA_SASL_PASSWORD": PASSWORD,
        }
    ).kafka_security
    assert (security.protocol, security.sasl_mechanism) == ("SASL_PLAINTEXT", "PLAIN")
    assert security.uses_sasl and not security.uses_tls


SASL = {
    "FRAUDSTREAM_KAFKA_URL": "broker:9093",
    "FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "FRAUDSTREAM_KAFKA_SASL_USERNAME": "fraudstream",
    "FRAUDSTREAM_KAFKA_SASL_PASSWORD": PASSWORD,
}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"FRAUDSTREAM_KAFKA_SASL_USERNAME": ""}, "needs FRAUDSTREAM_KAFKA_SASL_USERNAME"),
        ({"FRAUDSTREAM_KAFKA_SASL_PASSWORD": ""}, "needs FRAUDSTREAM_KAFKA_SASL_PASSWORD"),
        ({"FRAUDSTREAM_KAFKA_URL": ""}, "needs FRAUDSTREAM_KAFKA_URL"),
        ({"FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL"}, "FRAUDSTREAM_KAFKA_SASL_PASSWORD set"),
        ({"FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL": ""}, "PROTOCOL=PLAINTEXT has no SASL"),
        ({"FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
          "FRAUDSTREAM_KAFKA_CA_FILE": __file__}, "FRAUDSTREAM_KAFKA_CA_FILE set"),
        ({"FRAUDSTREAM_KAFKA_KEY_FILE": __file__}, "needs FRAUDSTREAM_KAFKA_CERT_FILE"),
        ({"FRAUDSTREAM_REDIS_URL": f"redis://:{PASSWORD}@redis:6379/0",
          "FRAUDSTREAM_REDIS_CA_FILE": __file__}, "REDIS_URL must be a rediss:// URL"),
        ({"FRAUDSTREAM_REDIS_URL": f"http://:{PASSWORD}@redis:6379/0"}, "FRAUDSTREAM_REDIS_URL"),
        ({"FRAUDSTREAM_REDIS_URL": f"redis+cluster://:{PASSWORD}@r1:7000,r2/"}, "host:port"),
    ],
)  # fmt: skip
def test_security_settings_that_do_not_fit_together_name_what_to_fix_not_the_password(
    change: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named) as raised:
        Settings.from_env({**SASL, **change})
    assert PASSWORD not in str(raised.value)
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


def test_rules_default_to_the_shipped_file_and_may_name_another(tmp_path: Path) -> None:
    assert Settings.from_env({"FRAUDSTREAM_RULES": ""}).rules_path == DEFAULT_RULES_FILE
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    assert Settings.from_env({"FRAUDSTREAM_RULES": str(rules)}).rules_path == rules.resolve()
    with pytest.raises(SettingsError, match="FRAUDSTREAM_RULES=.* is not a file"):
        Settings.from_env({"FRAUDSTREAM_RULES": str(tmp_path / "missing.yaml")})


class _ReadRecorder(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        raise KeyError(key)

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_variables_lists_exactly_what_from_env_reads_and_the_table_documents() -> None:
    environ = _ReadRecorder()
    Settings.from_env(environ)
    assert environ.read == set(VARIABLES)
    documented = re.findall(r"^``(FRAUDSTREAM_[A-Z0-9_]+)``", settings_module.__doc__ or "", re.M)
    assert sorted(documented) == sorted(VARIABLES)
