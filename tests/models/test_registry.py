from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudstream.models.registry import (
    LIVE_FILE,
    MANIFEST,
    METADATA_FILE,
    REQUIRED_FILES,
    RegistryError,
    list_versions,
    live_version,
    load_version,
    promotions,
    rollback,
    save_version,
    set_live,
    verify_version,
)
from fraudstream.models.signing import SigningKey
from fraudstream.models.training import TrainedModels, train_models
from fraudstream.models.tree_search import TreeSearch, TreeSettings
from fraudstream.stream.sim.feature_rows import synthetic_fraud_rows
from tests.support.signing import TEST_SIGNING_KEY, copy_version
from tests.support.small_models import FEATURE_NAMES, SMALL_PARAMS, train_small_models

SPLIT = {"split": {"train_end": 1_700_000_000.0, "valid_end": 1_700_600_000.0}}


@pytest.fixture(scope="module")
def trained() -> TrainedModels:
    return train_small_models()


def _save(registry: Path, trained: TrainedModels, promote: bool = True) -> str:
    return save_version(registry, trained, training_data_hash="abc123", extra_metadata=SPLIT,
                        signing_key=TEST_SIGNING_KEY, promote=promote)  # fmt: skip


def _rewrite_manifest(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_round_trip_scores_identically(tmp_path: Path, trained: TrainedModels) -> None:
    version = _save(tmp_path, trained)
    loaded = load_version(tmp_path, signing_key=TEST_SIGNING_KEY)
    X, _ = synthetic_fraud_rows(300, seed=21)
    assert version == loaded.version == "v0001"
    assert loaded.feature_names == FEATURE_NAMES
    assert np.array_equal(loaded.xgboost.score_batch(X), trained.xgboost.score_batch(X))
    assert np.array_equal(
        loaded.isolation_forest.score_batch(X), trained.isolation_forest.score_batch(X)
    )
    assert loaded.metrics == json.loads(json.dumps(trained.metrics))
    assert loaded.metadata["training_data_hash"] == "abc123"
    assert loaded.metadata["split"] == SPLIT["split"]
    assert loaded.metadata["params"]["xgb_max_rounds"] == 20


def test_manifest_lists_every_file(tmp_path: Path, trained: TrainedModels) -> None:
    version = _save(tmp_path, trained)
    manifest = json.loads((tmp_path / version / MANIFEST).read_text())
    assert sorted(manifest["files"]) == sorted(REQUIRED_FILES)
    assert sorted(p.name for p in (tmp_path / version).iterdir()) == sorted(
        (*REQUIRED_FILES, MANIFEST)
    )


def test_tampered_file_is_refused_and_named(tmp_path: Path, trained: TrainedModels) -> None:
    version = _save(tmp_path, trained)
    model_file = tmp_path / version / "xgboost.ubj"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(RegistryError, match=r"v0001/xgboost\.ubj does not match its manifest"):
        load_version(tmp_path, signing_key=TEST_SIGNING_KEY)


def test_an_edited_file_with_its_hash_recomputed_is_refused_with_the_key(
    tmp_path: Path, trained: TrainedModels
) -> None:
    version = _save(tmp_path, trained)
    folder = tmp_path / version
    metadata = json.loads((folder / METADATA_FILE).read_text())
    metadata["split"]["valid_end"] = 0.0  # any edit that still loads
    (folder / METADATA_FILE).write_text(json.dumps(metadata))
    forged = hashlib.sha256((folder / METADATA_FILE).read_bytes()).hexdigest()
    _rewrite_manifest(folder, lambda manifest: manifest["files"].update({METADATA_FILE: forged}))
    assert load_version(tmp_path).metadata["split"]["valid_end"] == 0.0, "the hashes agree"
    with pytest.raises(RegistryError, match="signature does not match version v0001"):
        load_version(tmp_path, signing_key=TEST_SIGNING_KEY)
    with pytest.raises(RegistryError, match="signature does not match"):
        verify_version(tmp_path, signing_key=TEST_SIGNING_KEY)


def test_an_unsigned_manifest_is_refused(tmp_path: Path, trained: TrainedModels) -> None:
    version = _save(tmp_path, trained)
    _rewrite_manifest(tmp_path / version, lambda manifest: manifest.pop("signature"))
    with pytest.raises(RegistryError, match="manifest.json is not signed"):
        load_version(tmp_path, signing_key=TEST_SIGNING_KEY)


def test_another_key_is_refused(tmp_path: Path, trained: TrainedModels) -> None:
    _save(tmp_path, trained)
    assert verify_version(tmp_path, signing_key=TEST_SIGNING_KEY) == "v0001"
    with pytest.raises(RegistryError, match="signature does not match"):
        load_version(tmp_path, signing_key=SigningKey.generate())


def test_a_version_copied_under_another_name_needs_signing_again(
    tmp_path: Path, trained: TrainedModels
) -> None:
    _save(tmp_path, trained)
    shutil.copytree(tmp_path / "v0001", tmp_path / "v0002")
    with pytest.raises(RegistryError, match="signature does not match version v0002"):
        verify_version(tmp_path, "v0002", signing_key=TEST_SIGNING_KEY)
    shutil.rmtree(tmp_path / "v0002")
    copy_version(tmp_path, "v0001", "v0002")  # what only a keyholder can do
    assert load_version(tmp_path, "v0002", signing_key=TEST_SIGNING_KEY).version == "v0002"


def test_missing_file_is_refused_and_named(tmp_path: Path, trained: TrainedModels) -> None:
    version = _save(tmp_path, trained)
    (tmp_path / version / "isolation_forest.npz").unlink()
    with pytest.raises(RegistryError, match=r"v0001/isolation_forest\.npz is missing"):
        load_version(tmp_path, version)


def test_missing_manifest_is_refused(tmp_path: Path, trained: TrainedModels) -> None:
    version = _save(tmp_path, trained)
    (tmp_path / version / MANIFEST).unlink()
    with pytest.raises(RegistryError, match="manifest.json is missing"):
        load_version(tmp_path, version)


def test_new_versions_become_live_unless_not_promoted(
    tmp_path: Path, trained: TrainedModels
) -> None:
    assert _save(tmp_path, trained) == "v0001"
    assert _save(tmp_path, trained) == "v0002"
    assert _save(tmp_path, trained, promote=False) == "v0003"
    assert list_versions(tmp_path) == ["v0001", "v0002", "v0003"]
    assert (tmp_path / LIVE_FILE).read_text().strip() == "v0002"
    assert load_version(tmp_path).version == "v0002"
    assert load_version(tmp_path, "v0003").version == "v0003"
    set_live(tmp_path, "v0001")
    assert load_version(tmp_path).version == "v0001"


def test_without_live_file_the_highest_version_loads(
    tmp_path: Path, trained: TrainedModels
) -> None:
    _save(tmp_path, trained)
    _save(tmp_path, trained, promote=False)
    (tmp_path / LIVE_FILE).unlink()
    assert load_version(tmp_path).version == "v0002"


def test_empty_or_unknown_registry_is_an_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="train a model first"):
        load_version(tmp_path / "nothing-here")
    (tmp_path / LIVE_FILE).write_text("v0009\n")
    with pytest.raises(RegistryError, match="v0009 does not exist"):
        load_version(tmp_path)


def test_extra_metadata_cannot_override_registry_keys(
    tmp_path: Path, trained: TrainedModels
) -> None:
    with pytest.raises(ValueError, match="training_data_hash"):
        save_version(tmp_path, trained, training_data_hash="x",
                     extra_metadata={"training_data_hash": "y"},
                     signing_key=TEST_SIGNING_KEY)  # fmt: skip
    assert list_versions(tmp_path) == []


def test_metadata_records_every_tree_candidate_and_the_chosen_settings(tmp_path: Path) -> None:
    X_train, y_train = synthetic_fraud_rows(3000, seed=1)
    X_valid, y_valid = synthetic_fraud_rows(1500, seed=2)
    grid = (TreeSettings(3, 0.3, "hist", 256), TreeSettings(2, 0.3, "exact", None))
    trained = train_models(
        X_train, y_train, X_valid, y_valid, FEATURE_NAMES, SMALL_PARAMS, search=grid
    )
    _save(tmp_path, trained)
    metadata = load_version(tmp_path, signing_key=TEST_SIGNING_KEY).metadata
    search = TreeSearch.from_json(metadata["tree_search"])
    assert search == trained.tree_search
    assert [candidate.settings for candidate in search.candidates] == list(grid)
    chosen = search.chosen.settings.to_json()
    assert {key: metadata["params"][f"xgb_{key}"] for key in chosen} == chosen
    with pytest.raises(ValueError, match="tree_search"):
        save_version(tmp_path, trained, training_data_hash="x",
                     extra_metadata={"tree_search": {}}, signing_key=TEST_SIGNING_KEY)  # fmt: skip


def test_rollback_returns_to_the_previously_promoted_version(
    tmp_path: Path, trained: TrainedModels
) -> None:
    first, second, third = (_save(tmp_path, trained) for _ in range(3))
    set_live(tmp_path, first)  # a manual promotion is logged too
    assert promotions(tmp_path) == [first, second, third, first]
    assert rollback(tmp_path) == third
    assert live_version(tmp_path) == third
    assert rollback(tmp_path) == second
    assert load_version(tmp_path).version == second
    rollback(tmp_path)
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback(tmp_path)
