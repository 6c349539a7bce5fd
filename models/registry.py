"""A versioned model registry in a plain folder.

Layout::

    registry/
      LIVE                 the live version's name, e.g. "v0003"
      v0001/ v0002/ ...    one folder per trained pair of models:
        xgboost.ubj  isolation_forest.npz  calibration.json  features.json
        metrics.json  metadata.json  manifest.json (sha256 of every other file, signed)

Nothing is read from a version until every file has been checked against its manifest,
and no file is ever unpickled: models are stored as XGBoost UBJSON, plain ``.npz`` arrays
(loaded with ``allow_pickle=False``) and JSON. A version folder is written under a
temporary name and renamed into place, so readers never see a half-written version.

The manifest's ``signature`` is an HMAC-SHA256 (models/signing.py) over the file table
and the version's name: editing a file and recomputing its hash is refused, and so is a
manifest moved to another version. Workers pass their key and load nothing unsigned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sklearn
import xgboost as xgb

from fraudstream.models.isolation import CompiledIsolationForest
from fraudstream.models.scorers import AnomalyCalibration, IsolationForestScorer, XGBoostScorer
from fraudstream.models.signing import SigningKey
from fraudstream.models.training import TrainedModels

LIVE_FILE = "LIVE"
PROMOTIONS_FILE = "PROMOTIONS"
MANIFEST = "manifest.json"
XGBOOST_FILE = "xgboost.ubj"
FOREST_FILE = "isolation_forest.npz"
CALIBRATION_FILE = "calibration.json"
FEATURES_FILE = "features.json"
METRICS_FILE = "metrics.json"
METADATA_FILE = "metadata.json"
REQUIRED_FILES = (
    XGBOOST_FILE,
    FOREST_FILE,
    CALIBRATION_FILE,
    FEATURES_FILE,
    METRICS_FILE,
    METADATA_FILE,
)
_VERSION = re.compile(r"^v(\d{4,})$")
_RESERVED_METADATA = {
    "version",
    "created_at",
    "training_data_hash",
    "params",
    "tree_search",
    "libraries",
}


class RegistryError(Exception):
    """A version is missing, incomplete or does not match its manifest."""


@dataclass(frozen=True)
class LoadedModels:
    """One verified registry version, ready to score."""

    version: str
    feature_names: tuple[str, ...]
    xgboost: XGBoostScorer
    isolation_forest: IsolationForestScorer
    metadata: dict[str, Any]
    metrics: dict[str, Any]


def list_versions(registry_dir: Path) -> list[str]:
    """Version names, oldest first (``v0001`` < ``v0002`` < ... < ``v10000``)."""
    if not registry_dir.is_dir():
        return []
    found = [p.name for p in registry_dir.iterdir() if p.is_dir() and _VERSION.match(p.name)]
    return sorted(found, key=_version_number)


def save_version(
    registry_dir: Path,
    trained: TrainedModels,
    *,
    training_data_hash: str,
    extra_metadata: dict[str, Any],
    signing_key: SigningKey,
    promote: bool = True,
) -> str:
    """Write ``trained`` as the next version, signed, and unless ``promote=False`` make it live.

    ``extra_metadata`` (e.g. the time-split boundaries) is merged into ``metadata.json``;
    it may not override the registry's own keys, among them ``params`` (as chosen) and
    ``tree_search`` (every tree setting tried, see models/tree_search.py). Returns the new
    version's name.
    """
    clash = _RESERVED_METADATA & extra_metadata.keys()
    if clash:
        raise ValueError(f"extra_metadata may not set {sorted(clash)}: the registry writes them")
    registry_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=registry_dir))
    try:
        trained.xgboost.booster.save_model(staging / XGBOOST_FILE)
        trained.isolation_forest.forest.save(staging / FOREST_FILE)
        forest_scorer = trained.isolation_forest
        forest_inputs = (
            list(trained.feature_names)
            if forest_scorer.input_columns is None
            else [trained.feature_names[i] for i in forest_scorer.input_columns]
        )
        _write_json(
            staging / CALIBRATION_FILE,
            {**forest_scorer.calibration.to_json(), "input_features": forest_inputs},
        )
        _write_json(staging / FEATURES_FILE, list(trained.feature_names))
        _write_json(staging / METRICS_FILE, trained.metrics)
        version = _move_into_place(
            staging, registry_dir, trained, training_data_hash, extra_metadata, signing_key
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if promote:
        set_live(registry_dir, version)
    return version


def set_live(registry_dir: Path, version: str, *, record: bool = True) -> None:
    """Point ``LIVE`` at an existing version; `record` appends it to the promotion log."""
    if not (registry_dir / version).is_dir():
        raise RegistryError(f"cannot make {registry_dir / version} live: no such version")
    pending = registry_dir / f".{LIVE_FILE}.tmp"
    pending.write_text(version + "\n")
    os.replace(pending, registry_dir / LIVE_FILE)
    if record:
        with (registry_dir / PROMOTIONS_FILE).open("a") as log:
            log.write(f"{version} {time.time():.3f}\n")


def promotions(registry_dir: Path) -> list[str]:
    """Versions in the order they were made live (the last one is live)."""
    log = registry_dir / PROMOTIONS_FILE
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def rollback(registry_dir: Path) -> str:
    """Make the previously live version live again; returns it.

    The promotion log loses its last entry, so rolling back twice goes back two steps.
    """
    history = promotions(registry_dir)
    if len(history) < 2:
        raise RegistryError(f"nothing to roll back to in {registry_dir}: only {history} promoted")
    previous = history[-2]
    set_live(registry_dir, previous, record=False)
    lines = (registry_dir / PROMOTIONS_FILE).read_text().splitlines()[:-1]
    (registry_dir / PROMOTIONS_FILE).write_text("".join(line + "\n" for line in lines))
    return previous


def live_version(registry_dir: Path) -> str:
    """The version named in ``LIVE``, or the highest version when there is no ``LIVE``."""
    live_file = registry_dir / LIVE_FILE
    if live_file.is_file():
        return live_file.read_text().strip()
    versions = list_versions(registry_dir)
    if not versions:
        raise RegistryError(f"no model versions in {registry_dir}; train a model first")
    return versions[-1]


def verify_version(
    registry_dir: Path, version: str | None = None, *, signing_key: SigningKey
) -> str:
    """Check ``version``'s (default: the live one) signature and hashes without loading it.

    Returns the version's name; raises ``RegistryError`` saying what to do otherwise.
    """
    name = version if version is not None else live_version(registry_dir)
    _verify(_version_folder(registry_dir, name), signing_key)
    return name


def load_version(
    registry_dir: Path, version: str | None = None, *, signing_key: SigningKey | None = None
) -> LoadedModels:
    """Verify every file of ``version`` (default: the live one), then load it.

    With ``signing_key`` the manifest's signature is checked too, and an unsigned or
    wrongly signed version is refused: whatever serves decisions passes it. Without, only
    the hashes are: enough for reports on a registry the caller trusts, never for serving.
    """
    name = version if version is not None else live_version(registry_dir)
    folder = _version_folder(registry_dir, name)
    _verify(folder, signing_key)
    feature_names = tuple(json.loads((folder / FEATURES_FILE).read_text()))
    booster = xgb.Booster()
    booster.load_model(folder / XGBOOST_FILE)
    if booster.feature_names is not None and tuple(booster.feature_names) != feature_names:
        raise RegistryError(
            f"{folder / XGBOOST_FILE} was trained on other features than {FEATURES_FILE} "
            "lists; retrain the version"
        )
    calibration_document = json.loads((folder / CALIBRATION_FILE).read_text())
    calibration = AnomalyCalibration.from_json(calibration_document)
    forest_inputs = calibration_document.get("input_features", list(feature_names))
    unknown = set(forest_inputs) - set(feature_names)
    if unknown:
        raise RegistryError(f"{folder / CALIBRATION_FILE} names unknown features {sorted(unknown)}")
    forest = CompiledIsolationForest.load(folder / FOREST_FILE)
    return LoadedModels(
        version=name,
        feature_names=feature_names,
        xgboost=XGBoostScorer(booster, feature_names),
        isolation_forest=IsolationForestScorer(
            forest, calibration, [feature_names.index(name) for name in forest_inputs]
        ),
        metadata=json.loads((folder / METADATA_FILE).read_text()),
        metrics=json.loads((folder / METRICS_FILE).read_text()),
    )


def write_manifest(folder: Path, version: str, signing_key: SigningKey) -> None:
    """Hash every file of the version folder and sign the table for the name `version`."""
    hashes = {name: file_sha256(folder / name) for name in REQUIRED_FILES}
    signature = signing_key.sign(_signed_manifest(version, hashes))
    _write_json(folder / MANIFEST, {"algorithm": "sha256", "files": hashes,
                                    "signature": signature})  # fmt: skip


def _signed_manifest(version: str, files: dict[str, Any]) -> dict[str, Any]:
    """What a manifest's signature covers: the file table and the version it belongs to."""
    return {"version": version, "algorithm": "sha256", "files": files}


def _version_folder(registry_dir: Path, name: str) -> Path:
    folder = registry_dir / name
    if not _VERSION.match(name) or not folder.is_dir():
        raise RegistryError(f"model version {folder} does not exist; see {registry_dir}/LIVE")
    return folder


def _verify(folder: Path, signing_key: SigningKey | None) -> None:
    """Raise ``RegistryError`` unless the manifest exists, is signed with ``signing_key``
    (when given) for this version's name, and every hash in it matches."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise RegistryError(
            f"{manifest_path} is missing, so {folder} cannot be verified; "
            "retrain or restore the version"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError) as error:
        message = f"{manifest_path} is unreadable ({error!r}); retrain or restore the version"
        raise RegistryError(message) from error
    if not isinstance(listed, dict):
        raise RegistryError(f"{manifest_path} has no file table; retrain or restore the version")
    if signing_key is not None:
        _check_signature(manifest_path, folder.name, manifest, signing_key)
    unlisted = [name for name in REQUIRED_FILES if name not in listed]
    if unlisted:
        raise RegistryError(f"{manifest_path} does not list {unlisted}; retrain or restore it")
    for name, expected in listed.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise RegistryError(f"model file {path} is missing; retrain or restore it")
        if file_sha256(path) != expected:
            raise RegistryError(
                f"model file {path} does not match its manifest hash; retrain or restore it"
            )


def _check_signature(
    manifest_path: Path, version: str, manifest: dict[str, Any], signing_key: SigningKey
) -> None:
    if "signature" not in manifest:
        raise RegistryError(
            f"{manifest_path} is not signed, so nothing vouches for {version}'s files; "
            "retrain it with FRAUDSTREAM_SIGNING_KEY set (or restore a signed copy)"
        )
    try:
        matches = signing_key.verify(
            _signed_manifest(version, manifest["files"]), manifest["signature"]
        )
    except ValueError:  # a table no signer writes (NaN): it cannot carry a valid signature
        matches = False
    if not matches:
        raise RegistryError(
            f"{manifest_path}'s signature does not match version {version} under the signing "
            "key in use (another key, an edited manifest, or one copied from another "
            "version); retrain it with this key, or set FRAUDSTREAM_SIGNING_KEY to its key"
        )


def _move_into_place(
    staging: Path,
    registry_dir: Path,
    trained: TrainedModels,
    training_data_hash: str,
    extra_metadata: dict[str, Any],
    signing_key: SigningKey,
) -> str:
    """Finish the staged folder and rename it to the next free version name.

    Renaming onto an existing (non-empty) version fails, so two trainers racing for the
    same number cannot overwrite each other: the loser takes the next number.
    """
    for _ in range(100):
        versions = list_versions(registry_dir)
        number = _version_number(versions[-1]) + 1 if versions else 1
        version = f"v{number:04d}"
        metadata = {
            "version": version,
            "created_at": datetime.now(UTC).isoformat(),
            "training_data_hash": training_data_hash,
            "params": trained.params.to_json(),
            "tree_search": trained.tree_search.to_json(),
            "libraries": {"xgboost": xgb.__version__, "scikit-learn": sklearn.__version__},
            **extra_metadata,
        }
        _write_json(staging / METADATA_FILE, metadata)
        write_manifest(staging, version, signing_key)
        target = registry_dir / version
        staging.chmod(0o755)  # mkdtemp makes it private; a version is for every reader
        try:
            staging.rename(target)
        except OSError:
            if target.exists():
                continue
            raise
        return version
    raise RegistryError(f"could not claim a new version number in {registry_dir}")


def _version_number(name: str) -> int:
    match = _VERSION.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a version name like v0001")
    return int(match.group(1))


def _write_json(path: Path, document: object) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def file_sha256(*paths: Path) -> str:
    """SHA-256 of the files' bytes one after the other, read in 1 MiB blocks (a stream file
    may be gigabytes); a missing file raises."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
