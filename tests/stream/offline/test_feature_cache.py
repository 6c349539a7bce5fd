"""The feature matrix `train` builds is reused by `evaluate`, and never when stale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fraudstream.features.builder import FeatureMatrix
from fraudstream.features.definitions import (
    DEFAULT_LABEL_DELAY_S,
    FEATURE_DEFINITION_VERSION,
    FEATURE_NAMES,
)
from fraudstream.features.transaction import InvalidTransaction
from fraudstream.features.windows import MAX_CARD_EVENTS
from fraudstream.stream.offline import feature_cache
from fraudstream.stream.offline.feature_cache import CACHE_FOLDER, KEPT_ENTRIES, FeatureCache
from fraudstream.stream.offline.training import load_labelled_stream
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.sim.rejected import RejectedRecords
from fraudstream.stream.sim.streamfile import labels_path_for, write_stream


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "stream.jsonl"
    write_stream(generate_stream(GeneratorConfig(transactions=1500, seed=4)), path)
    return path


def assert_same_matrix(got: FeatureMatrix, expected: FeatureMatrix) -> None:
    assert got.transactions == expected.transactions
    assert got.features.tobytes() == expected.features.tobytes()
    np.testing.assert_array_equal(got.is_fraud, expected.is_fraud)
    assert got.scenarios == expected.scenarios
    assert got.feature_names == expected.feature_names


def entries(cache: FeatureCache) -> list[Path]:
    return sorted(cache.folder.glob("*.npz"))


def test_evaluate_reads_the_matrix_train_built_instead_of_building(
    data: Path, tmp_path: Path
) -> None:
    cache = FeatureCache.in_registry(tmp_path / "registry")
    built = load_labelled_stream(data, cache=cache)  # as `train` does
    assert cache.folder == tmp_path / "registry" / CACHE_FOLDER
    [entry] = entries(cache)
    # `evaluate` on the same files computes the same key, and finds the same matrix.
    key = feature_cache.cache_key(
        data, labels_path_for(data), None, DEFAULT_LABEL_DELAY_S, strict=True
    )
    assert entry.stem == key
    assert_same_matrix(cache.load_or_build(key, lambda: pytest.fail("built again")), built)
    assert_same_matrix(load_labelled_stream(data, cache=cache), built)
    assert entries(cache) == [entry]


def test_a_changed_stream_or_labels_file_is_not_served_the_old_matrix(
    data: Path, tmp_path: Path
) -> None:
    cache = FeatureCache(tmp_path / "cache")
    old = load_labelled_stream(data, cache=cache)
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:1000]))
    labels = labels_path_for(data)
    labels.write_text("".join(labels.read_text().splitlines(keepends=True)[:1000]))
    shorter = load_labelled_stream(data, cache=cache)
    assert len(shorter.transactions) == 1000 != len(old.transactions)
    assert_same_matrix(shorter, load_labelled_stream(data))

    labels.write_text("")
    unlabelled = load_labelled_stream(data, cache=cache)
    assert np.isnan(unlabelled.is_fraud).all()
    assert len(entries(cache)) == 3


def test_a_changed_feature_definition_is_not_served_the_old_matrix(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FeatureCache(tmp_path / "cache")
    load_labelled_stream(data, cache=cache)
    [old] = entries(cache)
    for name, changed in (
        ("FEATURE_NAMES", (*FEATURE_NAMES, "new_feature")),
        ("FEATURE_DEFINITION_VERSION", FEATURE_DEFINITION_VERSION + 1),
        ("MAX_CARD_EVENTS", MAX_CARD_EVENTS // 2),
    ):
        with monkeypatch.context() as patch:
            patch.setattr(feature_cache, name, changed)
            key = feature_cache.cache_key(
                data, labels_path_for(data), None, DEFAULT_LABEL_DELAY_S, strict=True
            )
            assert key != old.stem
    # Even found under its old key, a matrix of other features is not served.
    monkeypatch.setattr(feature_cache, "FEATURE_NAMES", (*FEATURE_NAMES, "new_feature"))
    assert cache.load(old.stem) is None


def test_a_retrain_since_a_time_has_its_own_entry(data: Path, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    full = load_labelled_stream(data, cache=cache)
    since = full.transactions[len(full.transactions) // 2].event_time
    recent = load_labelled_stream(data, since, cache=cache)
    assert len(recent.transactions) < len(full.transactions)
    assert_same_matrix(load_labelled_stream(data, cache=cache), full)
    assert len(entries(cache)) == 2


def test_a_damaged_entry_is_rebuilt(data: Path, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    built = load_labelled_stream(data, cache=cache)
    [entry] = entries(cache)
    entry.write_bytes(entry.read_bytes()[:1000])
    assert cache.load(entry.stem) is None
    assert_same_matrix(load_labelled_stream(data, cache=cache), built)
    assert cache.load(entry.stem) is not None


def test_only_the_newest_entries_are_kept(data: Path, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    matrix = load_labelled_stream(data)
    for number in range(KEPT_ENTRIES + 2):
        cache.store(f"entry{number}", matrix)
    assert len(entries(cache)) == KEPT_ENTRIES
    assert cache.entry(f"entry{KEPT_ENTRIES + 1}").exists()


def test_a_cache_folder_that_cannot_be_written_does_not_fail_the_build(
    data: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    cache = FeatureCache(blocker / CACHE_FOLDER)
    assert_same_matrix(load_labelled_stream(data, cache=cache), load_labelled_stream(data))


def test_another_label_delay_has_its_own_entry(data: Path, tmp_path: Path) -> None:
    """The delay moves the merchant risk windows: a matrix of another delay is other features."""
    cache = FeatureCache(tmp_path / "cache")
    week = load_labelled_stream(data, cache=cache)
    day = load_labelled_stream(data, label_delay_s=86_400.0, cache=cache)
    assert len(entries(cache)) == 2
    assert not np.array_equal(week.features, day.features)
    assert_same_matrix(day, load_labelled_stream(data, label_delay_s=86_400.0))


def test_a_strict_read_does_not_reuse_a_build_that_skipped_bad_records(
    data: Path, tmp_path: Path
) -> None:
    cache = FeatureCache(tmp_path / "cache")
    with data.open("a") as stream:
        stream.write('{"txn_id": "cut", "amo\n')
    with RejectedRecords(tmp_path / "rejected.jsonl") as rejects:
        load_labelled_stream(data, rejects=rejects, cache=cache)
    assert rejects.count == 1
    with pytest.raises(InvalidTransaction, match="line"):
        load_labelled_stream(data, cache=cache)
