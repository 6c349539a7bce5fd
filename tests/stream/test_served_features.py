"""A registry version serves only the feature list and label delay it was trained on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fraudstream.models.registry import load_version
from fraudstream.stream.served_features import IncompatibleModel, trained_label_delay_s
from tests.support.outdated import OLD_MERCHANT_FEATURES, edit_metadata, rename_features

DAY = 86_400.0


@pytest.fixture
def registry(trained_registry: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "registry"
    shutil.copytree(trained_registry, copy)
    return copy


def test_a_version_gives_the_label_delay_it_was_trained_with(registry: Path) -> None:
    assert trained_label_delay_s(load_version(registry), registry) == 7 * DAY
    edit_metadata(registry / "v0001", label_delay_days=2.5)
    assert trained_label_delay_s(load_version(registry), registry) == 2.5 * DAY


def test_a_version_trained_on_another_feature_list_is_refused_naming_the_features(
    registry: Path,
) -> None:
    rename_features(registry / "v0001", OLD_MERCHANT_FEATURES)
    models = load_version(registry)  # a consistent version: only its features are stale
    with pytest.raises(IncompatibleModel) as refused:
        trained_label_delay_s(models, registry)
    message = str(refused.value)
    assert str(registry / "v0001") in message and "retrain" in message
    assert "merchant_fraud_rate_30d" in message and "merchant_fraud_share_30d_delayed" in message


@pytest.mark.parametrize("recorded", [None, "seven", -1])
def test_a_version_without_a_usable_label_delay_is_refused(
    registry: Path, recorded: object
) -> None:
    edit_metadata(registry / "v0001", label_delay_days=recorded)
    with pytest.raises(IncompatibleModel, match="label_delay_days"):
        trained_label_delay_s(load_version(registry), registry)
