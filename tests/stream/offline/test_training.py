"""generate -> train -> evaluate through the CLI, on a small stream."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from fraudstream.models.registry import RegistryError, live_version, load_version
from fraudstream.models.tree_search import GRIDS, TreeSearch
from fraudstream.stream.cli import main
from fraudstream.stream.offline import training
from fraudstream.stream.offline.training import ensure_trained_model
from fraudstream.stream.served_features import trained_label_delay_s
from fraudstream.stream.settings import Settings
from tests.support.outdated import OLD_MERCHANT_FEATURES, rename_features
from tests.support.signing import TEST_SIGNING_KEY


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("offline")
    data = run / "fraudstream.stream.jsonl"
    assert main(["generate", "--transactions", "30000", "--seed", "3", "--out", str(data)]) == 0
    assert main(["train", "--data", str(data), "--registry", str(run / "registry")]) == 0
    return run


def test_evaluate_reports_every_model_and_scenario(trained_run: Path) -> None:
    out = trained_run / "evaluation.json"
    data = trained_run / "fraudstream.stream.jsonl"
    registry = trained_run / "registry"
    assert (
        main(["evaluate", "--data", str(data), "--registry", str(registry), "--json", str(out)])
        == 0
    )
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"xgboost", "isolation_forest", "ensemble", "rules"}
    # The default limits: a 2 % review capacity and a 0.1 % FPR cap on declines.
    assert report["constraints"] == {"max_fpr": 0.001, "min_recall": None, "max_review_rate": 0.02}
    for figures in report["models"].values():
        assert 0.0 <= figures["auc_roc"] <= 1.0
        assert figures["review_threshold"] <= figures["decline_threshold"]
        assert figures["review_rate"] <= 0.02 and figures["fpr"] <= 0.001
        assert 0.0 <= figures["card_precision_at_capacity"] <= 1.0
    assert "novel" in report["recall_by_scenario"]
    # The deployed scorer ranks better than the rules. XGBoost alone need not on this small
    # stream: with cards known compromised left out (docs/evaluation.md) it read 0.843
    # against the rules' 0.857, the ensemble 0.949.
    assert report["models"]["ensemble"]["auc_roc"] > report["models"]["rules"]["auc_roc"]


def test_evaluate_reads_the_features_train_kept(
    trained_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = trained_run / "fraudstream.stream.jsonl"
    registry = trained_run / "registry"
    [kept] = (registry / "feature-cache").glob("*.npz")
    with caplog.at_level(logging.INFO, logger="fraudstream.stream.offline.feature_cache"):
        assert main(["evaluate", "--data", str(data), "--registry", str(registry)]) == 0
    assert f"features from cache {kept}" in caplog.text
    assert list((registry / "feature-cache").glob("*.npz")) == [kept]


def test_registry_records_split_thresholds_and_weights(trained_run: Path) -> None:
    models = load_version(trained_run / "registry")
    split = models.metadata["split"]
    assert split["train_end"] < split["valid_end"]
    assert set(models.metadata["thresholds"]) == {
        "xgboost",
        "isolation_forest",
        "ensemble",
        "rules",
    }
    assert abs(sum(models.metadata["weights"].values()) - 1.0) < 1e-9
    assert models.metadata["label_delay_days"] == 7  # FRAUDSTREAM_LABEL_DELAY_DAYS unset
    # The pair is chosen within half of each limit (FRAUDSTREAM_LIMIT_MARGIN 0.5).
    assert models.metadata["constraints"] == {
        "max_fpr": 0.0005,
        "min_recall": None,
        "max_review_rate": 0.01,
    }


def test_training_searches_the_quick_grid_and_says_what_it_kept(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metadata = load_version(trained_run / "registry", "v0001").metadata
    search = TreeSearch.from_json(metadata["tree_search"])
    assert metadata["tree_search_grid"] == "quick"
    assert [candidate.settings for candidate in search.candidates] == list(GRIDS["quick"])
    assert metadata["params"]["xgb_max_bin"] == search.chosen.settings.max_bin
    assert main(["models", "--registry", str(trained_run / "registry"), "list"]) == 0
    assert f"xgboost {search.summary()}" in capsys.readouterr().out


def test_tampered_model_file_is_refused(trained_run: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    (registry / "v0001").mkdir(parents=True)
    for source in (trained_run / "registry" / "v0001").iterdir():
        (registry / "v0001" / source.name).write_bytes(source.read_bytes())
    with (registry / "v0001" / "xgboost.ubj").open("ab") as model_file:
        model_file.write(b"\0")
    with pytest.raises(RegistryError, match="xgboost.ubj"):
        load_version(registry)


def test_retrain_since_uses_the_recent_part_and_models_commands_manage_live(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, registry = trained_run / "fraudstream.stream.jsonl", trained_run / "registry"
    first = load_version(registry)
    since = str(first.metadata["split"]["train_end"])
    retrain = ["train", "--data", str(data), "--registry", str(registry), "--since", since]
    assert main([*retrain, "--search", "none"]) == 0
    assert "* depth 6, lr 0.1, hist/256 " in capsys.readouterr().out
    second = load_version(registry)
    assert second.version != first.version
    assert second.metadata["tree_search_grid"] == "none"
    assert len(second.metadata["tree_search"]["candidates"]) == 1
    assert second.metadata["since"] == float(since)
    assert second.metadata["split"]["train_end"] > first.metadata["split"]["train_end"]

    assert main(["models", "--registry", str(registry), "list"]) == 0
    listing = capsys.readouterr().out
    assert f"* {second.version}" in listing and f"  {first.version}" in listing
    assert main(["models", "--registry", str(registry), "rollback"]) == 0
    assert load_version(registry).version == first.version
    assert main(["models", "--registry", str(registry), "promote", second.version]) == 0
    assert load_version(registry).version == second.version
    assert main(["models", "--registry", str(registry), "promote", "v9999"]) == 1


def test_the_demo_retrains_a_registry_made_before_the_features_changed(
    trained_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(trained_registry, registry)
    settings = Settings(registry_path=registry, signing_key=TEST_SIGNING_KEY)
    said, _ = ensure_trained_model(settings, tmp_path)
    assert said.startswith("using model registry")  # today's features, the same delay

    rename_features(registry / "v0001", OLD_MERCHANT_FEATURES)
    monkeypatch.setattr(training, "TRAINING_TRANSACTIONS", 20_000)  # a quick retrain
    said, _ = ensure_trained_model(
        Settings(registry_path=registry, signing_key=TEST_SIGNING_KEY, label_delay_days=3),
        tmp_path,
    )
    assert said.startswith("trained v0002")
    assert live_version(registry) == "v0002"
    assert trained_label_delay_s(load_version(registry), registry) == 3 * 86_400.0
