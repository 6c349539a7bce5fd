"""Registry versions a FraudStream must not serve: another feature list, another label delay.

Made from a trained version by editing it in place and signing it again, as a registry
kept from an older FraudStream (or trained with other settings) would look.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import xgboost as xgb

from fraudstream.models.registry import FEATURES_FILE, XGBOOST_FILE, write_manifest
from tests.support.signing import TEST_SIGNING_KEY

#: What the merchant risk features were called before their windows were delayed.
OLD_MERCHANT_FEATURES = {
    "merchant_fraud_share_7d_delayed": "merchant_fraud_labels_30d",
    "merchant_fraud_share_30d_delayed": "merchant_fraud_rate_30d",
}


def rename_features(folder: Path, renamed: dict[str, str]) -> None:
    """Rename features of the version in `folder` (model and list alike) and re-sign it."""
    names = [renamed.get(name, name) for name in json.loads((folder / FEATURES_FILE).read_text())]
    booster = xgb.Booster()
    booster.load_model(folder / XGBOOST_FILE)
    booster.feature_names = names
    booster.save_model(folder / XGBOOST_FILE)
    (folder / FEATURES_FILE).write_text(json.dumps(names))
    write_manifest(folder, folder.name, TEST_SIGNING_KEY)


def edit_metadata(folder: Path, **changes: Any) -> None:
    """Set (or with None, remove) metadata keys of the version in `folder`; re-sign it."""
    path = folder / "metadata.json"
    metadata = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    path.write_text(json.dumps(metadata))
    write_manifest(folder, folder.name, TEST_SIGNING_KEY)
