"""The command line: subcommands honour their flags and the FRAUDSTREAM_* settings.

One small stream (8,000 transactions) and one registry trained on it with the default
costs are shared by the module; tests that need other settings train into their own
registry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudstream.models.registry import list_versions
from fraudstream.stream.cli import main

SMALL_STREAM = ["--transactions", "8000", "--seed", "3"]
#: Costs far from the defaults (5000, 50, 10), so the chosen thresholds move.
OTHER_COSTS = {
    "FRAUDSTREAM_COST_FN": "300",
    "FRAUDSTREAM_COST_FP": "5",
    "FRAUDSTREAM_COST_REVIEW": "2",
    "FRAUDSTREAM_MAX_FPR": "0.02",
}


@pytest.fixture(autouse=True)
def no_fraudstream_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set the FRAUDSTREAM_* variables they mean; none leak in from the shell."""
    for name in [name for name in os.environ if name.startswith("FRAUDSTREAM_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "transactions.jsonl"
    assert main(["generate", *SMALL_STREAM, "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def default_registry(stream_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    registry = tmp_path_factory.mktemp("default") / "registry"
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("FRAUDSTREAM_")]:
            patch.delenv(name)
        assert main(["train", "--data", str(stream_file), "--registry", str(registry)]) == 0
    yield registry


def test_offline_demo_generates_trains_and_evaluates(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--offline", "--transactions", "8000", "--out", str(out)]) == 0
    assert list_versions(out / "registry") == ["v0001"]
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report["models"]) == {"xgboost", "isolation_forest", "ensemble", "rules"}
