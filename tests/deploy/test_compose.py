"""deploy/compose: a valid Compose file (the official schema), only settings that exist, and
wired to the Prometheus scrape config and the Grafana files it mounts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from fraudstream.features.pseudonyms import new_id_hash_key
from fraudstream.stream.settings import Settings
from tests.support.deploy_checks import (
    COMPOSE_FILE,
    DEPLOY,
    PROMETHEUS_CONFIG,
    compose_environment,
    compose_schema_problems,
    compose_variable_problems,
    load_yaml,
)

COMPOSE: dict[str, Any] = load_yaml(COMPOSE_FILE)
SERVICES: dict[str, Any] = COMPOSE["services"]


def worker_environment() -> dict[str, str | None]:
    return compose_environment(SERVICES["worker"])


def test_the_compose_file_is_valid_for_the_compose_specification() -> None:
    assert compose_schema_problems(COMPOSE) == []


def test_an_unknown_key_or_a_wrong_type_is_rejected() -> None:
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["worker"]["restart_policy"] = "always"  # belongs under deploy:
    broken["services"]["redis"]["ports"] = 6379
    problems = compose_schema_problems(broken)
    assert len(problems) == 2
    assert any(p.startswith("services.worker") and "restart_policy" in p for p in problems)
    assert any(p.startswith("services.redis.ports") for p in problems)


def test_it_runs_kafka_in_kraft_mode_redis_workers_prometheus_and_grafana() -> None:
    assert {"kafka", "redis", "worker", "prometheus", "grafana"} <= set(SERVICES)
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # no ZooKeeper
    assert kafka["environment"]["KAFKA_NUM_PARTITIONS"] == int(
        worker_environment()["FRAUDSTREAM_PARTITIONS"] or 0
    )


def test_every_variable_set_on_a_service_is_one_settings_reads() -> None:
    assert compose_variable_problems(COMPOSE) == []


def test_an_unknown_variable_is_rejected_in_either_spelling_of_environment() -> None:
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["worker"]["environment"] = {"FRAUDSTREAM_REDIS_URI": "redis://r:6379"}
    broken["services"]["replay"]["environment"] = ["FRAUDSTREAM_PARTITION=6", "REDIS_URL=x"]
    broken["services"]["kafka"]["environment"]["FRAUDSTREAM_TOPIC"] = "transactions"
    problems = compose_variable_problems(broken)
    assert len(problems) == 4
    assert any("compose worker: FRAUDSTREAM_REDIS_URI" in p for p in problems)
    assert any("compose replay: FRAUDSTREAM_PARTITION " in p for p in problems)
    # A FraudStream container reads no unprefixed name; another service's own ones pass.
    assert any("compose replay: REDIS_URL " in p for p in problems)
    assert any("compose kafka: FRAUDSTREAM_TOPIC " in p for p in problems)


def test_the_workers_settings_parse() -> None:
    # The two secrets are interpolated from the host's environment at `up`.
    environment = {name: value or "" for name, value in worker_environment().items()}
    interpolated = {name for name, value in environment.items() if value.startswith("${")}
    assert interpolated == {"FRAUDSTREAM_SIGNING_KEY", "FRAUDSTREAM_ID_HASH_KEY"}
    settings = Settings.from_env(
        environment
        | {"FRAUDSTREAM_SIGNING_KEY": "s" * 32, "FRAUDSTREAM_ID_HASH_KEY": new_id_hash_key()}
    )
    assert settings.metrics_host == "0.0.0.0" and settings.metrics_port > 0


def test_prometheus_scrapes_every_worker_on_its_metrics_port() -> None:
    port = int(worker_environment()["FRAUDSTREAM_METRICS_PORT"] or 0)
    worker = SERVICES["worker"]
    replicas = worker["deploy"]["replicas"]
    # Compose names the replicas <project>-<service>-<n>, and its network resolves them.
    expected = [f"{COMPOSE['name']}-worker-{n}:{port}" for n in range(1, replicas + 1)]
    (job,) = [
        job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
        if job["job_name"] == "fraudstream-worker"
    ]  # fmt: skip
    (static,) = job["static_configs"]
    assert static["targets"] == expected
    assert str(port) in worker["expose"]
    assert f":{port}/metrics" in " ".join(worker["healthcheck"]["test"])


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> the repository file a service mounts there."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = (COMPOSE_FILE.parent / source).resolve()
    return mounts


def test_prometheus_and_grafana_mount_the_deploy_files_where_they_look() -> None:
    prometheus = bind_mounts(SERVICES["prometheus"])
    grafana = bind_mounts(SERVICES["grafana"])
    for source in [*prometheus.values(), *grafana.values()]:
        assert source.is_file(), source
    config_path = next(a for a in SERVICES["prometheus"]["command"] if a.startswith("--config"))
    assert prometheus[config_path.split("=", 1)[1]] == PROMETHEUS_CONFIG
    assert "/etc/prometheus/alerts.yml" in prometheus  # rule_files: alerts.yml, beside it
    dashboard = DEPLOY / "grafana" / "fraudstream-dashboard.json"
    (dashboard_target,) = [t for t, s in grafana.items() if s == dashboard]
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards.yml")
    assert str(Path(dashboard_target).parent) == provider["providers"][0]["options"]["path"]
    datasource = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources.yml")
    prometheus_port = SERVICES["prometheus"]["ports"][0].split(":")[-1]
    assert datasource["datasources"][0]["url"] == f"http://prometheus:{prometheus_port}"
