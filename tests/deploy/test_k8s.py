"""deploy/k8s: valid Kubernetes objects (strict schemas), only settings that exist, and the
objects agree with each other: ports, the rules mount, the autoscaler's cap and metric."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from fraudstream.features.pseudonyms import new_id_hash_key
from fraudstream.stream.settings import Settings
from fraudstream.thresholds.rules.fileformat import load_rules
from tests.support.deploy_checks import (
    DEPLOY,
    Resource,
    containers,
    k8s_environment,
    k8s_schema_problems,
    k8s_variable_problems,
    load_k8s,
    name_of,
)

RESOURCES = load_k8s()


def only(kind: str) -> Resource:
    (resource,) = [r for r in RESOURCES if r["kind"] == kind]
    return resource


def config_map(name: str) -> Resource:
    (resource,) = [
        r for r in RESOURCES if r["kind"] == "ConfigMap" and r["metadata"]["name"] == name
    ]
    return resource


def settings_data() -> dict[str, str]:
    return config_map("fraudstream-settings")["data"]


def worker_container() -> Resource:
    (container,) = containers(only("Deployment"))
    return container


def test_the_manifests_hold_every_object_the_workers_need() -> None:
    kinds = sorted(r["kind"] for r in RESOURCES)
    assert kinds == sorted(
        ["ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler",
         "PodDisruptionBudget", "Service"]
    )  # fmt: skip


@pytest.mark.parametrize("resource", RESOURCES, ids=name_of)
def test_every_manifest_is_valid_kubernetes_with_no_unknown_field(resource: Resource) -> None:
    assert k8s_schema_problems(resource) == []


def test_a_misspelt_field_or_a_wrong_type_is_rejected() -> None:
    deployment = copy.deepcopy(only("Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    (problem,) = k8s_schema_problems(deployment)
    assert "readinesProbe" in problem and "spec.template.spec.containers.0" in problem

    autoscaler = copy.deepcopy(only("HorizontalPodAutoscaler"))
    autoscaler["spec"]["maxReplicas"] = "12"
    (problem,) = k8s_schema_problems(autoscaler)
    assert "spec.maxReplicas" in problem and "integer" in problem


def test_every_variable_set_on_the_workers_is_one_settings_reads() -> None:
    assert k8s_variable_problems(RESOURCES) == []


def test_an_unknown_variable_in_env_or_in_the_settings_config_map_is_rejected() -> None:
    broken = copy.deepcopy(RESOURCES)
    for resource in broken:
        if resource["kind"] == "Deployment":
            env = resource["spec"]["template"]["spec"]["containers"][0]["env"]
            env.append({"name": "FRAUDSTREAM_METRICS_PROT", "value": "9108"})
            env.append({"name": "METRICS_PORT", "value": "9108"})
        if resource["metadata"]["name"] == "fraudstream-settings":
            resource["data"]["FRAUDSTREAM_MODEL_TIMEOUT"] = "50"
    problems = k8s_variable_problems(broken)
    assert len(problems) == 3
    assert any("FRAUDSTREAM_METRICS_PROT" in p for p in problems)
    assert any(": METRICS_PORT " in p for p in problems)
    assert any("FRAUDSTREAM_MODEL_TIMEOUT " in p for p in problems)


def test_a_settings_config_map_that_is_not_there_is_reported() -> None:
    without = [r for r in RESOURCES if r["metadata"]["name"] != "fraudstream-settings"]
    assert k8s_variable_problems(without) == [
        "Deployment/fraudstream-worker: envFrom ConfigMap fraudstream-settings is missing"
    ]


def test_the_workers_settings_parse_and_the_mounted_rules_load(tmp_path: Path) -> None:
    environment, _ = k8s_environment(RESOURCES)
    secrets = {name for name, value in environment.items() if value is None}
    assert secrets == {"FRAUDSTREAM_SIGNING_KEY", "FRAUDSTREAM_ID_HASH_KEY"}
    rules = tmp_path / "rules.yaml"  # the file the mount puts at FRAUDSTREAM_RULES
    rules.write_text(config_map("fraudstream-rules")["data"]["rules.yaml"], encoding="utf-8")
    settings = Settings.from_env(
        {name: value for name, value in environment.items() if value is not None}
        | {"FRAUDSTREAM_SIGNING_KEY": "s" * 32, "FRAUDSTREAM_ID_HASH_KEY": new_id_hash_key()}
        | {"FRAUDSTREAM_RULES": str(rules)}
    )
    assert settings.metrics_host == "0.0.0.0" and settings.metrics_port > 0
    assert len(load_rules(settings.rules_path).rules) > 0


def test_the_rules_setting_names_a_key_of_the_rules_config_map_as_mounted() -> None:
    rules_path = Path(settings_data()["FRAUDSTREAM_RULES"])
    spec = only("Deployment")["spec"]["template"]["spec"]
    mounts = worker_container()["volumeMounts"]
    (mount,) = [m for m in mounts if m["mountPath"] == str(rules_path.parent)]
    # With subPath the kubelet never updates the file, so rule edits would not reach workers.
    assert "subPath" not in mount
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert rules_path.name in config_map(volume["configMap"]["name"])["data"]


def test_probes_scrape_annotations_and_service_use_the_metrics_port() -> None:
    port = int(settings_data()["FRAUDSTREAM_METRICS_PORT"])
    container = worker_container()
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named["metrics"] == port
    probes = ("startupProbe", "readinessProbe", "livenessProbe")
    for probe in probes:
        get = container[probe]["httpGet"]
        assert get["path"] == "/metrics"
        assert named.get(get["port"], get["port"]) == port, probe
    pod_annotations = only("Deployment")["spec"]["template"]["metadata"]["annotations"]
    service = only("Service")
    for scrape in (pod_annotations, service["metadata"]["annotations"]):
        assert scrape["prometheus.io/port"] == str(port)
    (service_port,) = service["spec"]["ports"]
    assert named.get(service_port["targetPort"], service_port["targetPort"]) == port


def test_autoscaler_is_capped_at_the_partition_count_and_follows_the_workers_group() -> None:
    data = settings_data()
    spec = only("HorizontalPodAutoscaler")["spec"]
    # A consumer group gives each partition to one member: workers past the count idle.
    assert spec["maxReplicas"] == int(data["FRAUDSTREAM_PARTITIONS"])
    assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
    target = spec["scaleTargetRef"]
    deployment = only("Deployment")
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    (metric,) = spec["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {
        "consumergroup": data["FRAUDSTREAM_APP_ID"],
        "topic": data["FRAUDSTREAM_TOPIC_TRANSACTIONS"],
    }


def adapter_rules() -> list[Resource]:
    """The prometheus-adapter `externalRules` shown in deploy/README.md."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "externalRules" in b]
    return yaml.safe_load(block)["externalRules"]


def test_the_autoscaler_metric_is_the_one_the_documented_adapter_rule_serves() -> None:
    metric = only("HorizontalPodAutoscaler")["spec"]["metrics"][0]["external"]["metric"]
    (rule,) = [r for r in adapter_rules() if r["name"]["as"] == metric["name"]]
    # The HPA's labels select series the rule's query keeps apart, in any namespace.
    grouped_by = re.search(r"by \(([^)]*)\)", rule["metricsQuery"])
    assert grouped_by is not None
    assert set(metric["selector"]["matchLabels"]) <= {
        label.strip() for label in grouped_by.group(1).split(",")
    }
    assert rule["resources"] == {"namespaced": False}


def test_disruption_budget_and_service_select_the_worker_pods() -> None:
    pod_labels = only("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert only("Deployment")["spec"]["selector"]["matchLabels"] == pod_labels
    assert only("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == pod_labels
    assert only("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert only("Service")["spec"]["selector"] == pod_labels
