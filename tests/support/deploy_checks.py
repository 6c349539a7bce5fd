"""Offline checks of deploy/: each manifest against its schema, and the variables it sets
against what stream/settings.py reads.

Every check returns a list of problems (empty: fine), each naming the file's object and
what is wrong, so one test run shows them all; tests/deploy feeds broken inputs to the
same functions to show they can fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from fraudstream.stream.settings import ENV_PREFIX, VARIABLES

REPOSITORY = Path(__file__).resolve().parents[2]
DEPLOY = REPOSITORY / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
#: The official Compose Specification schema, vendored (tests/deploy/README.md: source).
COMPOSE_SCHEMA = REPOSITORY / "tests" / "deploy" / "compose-spec.json"
#: The Kubernetes release the manifests must be valid for: fixed, so a new
#: kubernetes-validate release adds schemas without changing what passes here.
KUBERNETES_VERSION = "1.30.0"

Resource = dict[str, Any]


def load_k8s() -> list[Resource]:
    """Every object in deploy/k8s/*.yaml, in file order."""
    return [
        document
        for path in sorted(K8S.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if document is not None
    ]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def name_of(resource: Resource) -> str:
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


def _where(path: Iterable[object]) -> str:
    """A schema error's location as dotted steps, `(top)` for the document itself."""
    return ".".join(str(step) for step in path) or "(top)"


def k8s_schema_problems(resource: Resource) -> list[str]:
    """What makes `resource` invalid for KUBERNETES_VERSION, strict: unknown fields fail too."""
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{name_of(resource)}: {_where(error.path)}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{name_of(resource)}: {error.message}"]
    return []


@cache
def _compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


def compose_schema_problems(compose: Resource) -> list[str]:
    """Where `compose` breaks the Compose Specification (unknown keys included)."""
    return [
        f"{_where(error.absolute_path)}: {error.message}"
        for error in _compose_validator().iter_errors(compose)
    ]


def unknown_variables(where: str, names: Iterable[str], *, fraudstream_only: bool) -> list[str]:
    """The names no setting reads: a typo, or a setting since removed. With
    `fraudstream_only` (a FraudStream container) every name counts; otherwise (Kafka,
    Grafana, ...) only the `FRAUDSTREAM_*` ones."""
    return [
        f"{where}: {name} is not read by stream/settings.py (settings.VARIABLES)"
        for name in names
        if name not in VARIABLES and (fraudstream_only or name.startswith(ENV_PREFIX))
    ]


def containers(resource: Resource) -> Iterator[Resource]:
    """The containers of a workload's pod template (none for other kinds)."""
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def k8s_environment(resources: list[Resource]) -> tuple[dict[str, str | None], list[str]]:
    """Every variable the containers get, with its value (None: from a Secret), and the
    problems found collecting them (an envFrom ConfigMap not among `resources`)."""
    config_maps = {r["metadata"]["name"]: r for r in resources if r.get("kind") == "ConfigMap"}
    environment: dict[str, str | None] = {}
    problems: list[str] = []
    for resource in resources:
        for container in containers(resource):
            for source in container.get("envFrom", []):
                if "configMapRef" not in source:
                    continue  # a Secret: not in the repository
                wanted = source["configMapRef"]["name"]
                if wanted not in config_maps:
                    problems.append(f"{name_of(resource)}: envFrom ConfigMap {wanted} is missing")
                    continue
                environment.update(config_maps[wanted].get("data", {}))
            for variable in container.get("env", []):
                environment[variable["name"]] = variable.get("value")
    return environment, problems


def k8s_variable_problems(resources: list[Resource]) -> list[str]:
    """Variables set on containers (env, envFrom ConfigMaps) that settings.py does not read;
    every container in deploy/k8s runs FraudStream."""
    environment, problems = k8s_environment(resources)
    return problems + unknown_variables("deploy/k8s", environment, fraudstream_only=True)


def compose_environment(service: Resource) -> dict[str, str | None]:
    """A compose service's `environment`, in either of its two spellings (map or list)."""
    environment = service.get("environment", {})
    if isinstance(environment, dict):
        return {name: None if value is None else str(value) for name, value in environment.items()}
    return {
        name: value if sep else None
        for name, sep, value in (entry.partition("=") for entry in environment)
    }


def compose_variable_problems(compose: Resource) -> list[str]:
    """Variables set on compose services that settings.py does not read (on the services
    running the FraudStream image: any name; on the others: `FRAUDSTREAM_*` ones)."""
    return [
        problem
        for service_name, service in compose.get("services", {}).items()
        for problem in unknown_variables(
            f"compose {service_name}",
            compose_environment(service),
            fraudstream_only=str(service.get("image", "")).startswith("fraudstream:"),
        )
    ]
