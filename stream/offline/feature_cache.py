"""Feature matrices kept between `fraudstream train` and `fraudstream evaluate`.

Building the features of a long stream costs far more than scoring it, and `evaluate` on
the file `train` has just read would build the very same matrix. So the matrix is kept in
the registry, `<registry>/feature-cache/<key>.npz`: the features, labels and scenarios,
and the transactions as columns, so that a hit neither builds nor parses anything.

The key is a SHA-256 over the stream file's bytes, its labels file's bytes, the feature
definition (`FEATURE_NAMES`, `FEATURE_DEFINITION_VERSION`, the window lengths and caps)
and the `since` of a retrain. Change any of them and the old entry is never found: that
is the whole invalidation. The newest `KEPT_ENTRIES` entries are kept, older ones deleted
when a new one is written; a damaged entry is ignored and written anew. Deleting the
folder is always safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.builder import FeatureMatrix
from fraudstream.features.card_windows import distinct_codes
from fraudstream.features.definitions import FEATURE_DEFINITION_VERSION, FEATURE_NAMES
from fraudstream.features.transaction import Transaction
from fraudstream.features.windows import MAX_CARD_EVENTS, RETENTION_SECONDS, WINDOWS
from fraudstream.models.registry import file_sha256

log = logging.getLogger(__name__)

CACHE_FOLDER = "feature-cache"
#: Matrices kept per registry (one per stream file and `since`, typically).
KEPT_ENTRIES = 4
_TEXT_COLUMNS = ("txn_id", "card_id", "merchant_id", "currency", "country", "channel")
#: Stored as float64; a missing lat/lon (None) as NaN.
_NUMBER_COLUMNS = ("amount", "event_time", "lat", "lon")


def feature_definition() -> str:
    """What, besides the data, decides the feature matrix."""
    return repr(
        (FEATURE_DEFINITION_VERSION, FEATURE_NAMES, WINDOWS, MAX_CARD_EVENTS, RETENTION_SECONDS)
    )


def cache_key(
    data: Path, labels: Path, since: float | None, label_delay_s: float, strict: bool
) -> str:
    """The entry of one build: the files' bytes, the feature definition, the build's
    arguments, and whether bad records stop it (`strict`): a matrix built by skipping bad
    records must not let a strict run skip reading them."""
    digest = hashlib.sha256()
    for part in (
        file_sha256(data),
        file_sha256(labels) if labels.exists() else "no labels",
        feature_definition(),
        repr(since),
        repr(float(label_delay_s)),
        "strict" if strict else "skips bad records",
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _categories(values: Sequence[str]) -> tuple[NDArray[np.str_], NDArray[np.int64]]:
    """Distinct values (first-seen order) and each value's index among them."""
    codes, distinct = distinct_codes(values)
    return np.array(distinct, dtype=np.str_), codes


def _columns(matrix: FeatureMatrix) -> dict[str, NDArray[np.generic]]:
    txns = matrix.transactions
    arrays: dict[str, NDArray[np.generic]] = {
        "features": matrix.features,
        "is_fraud": matrix.is_fraud,
        "feature_names": np.array(matrix.feature_names, dtype=np.str_),
    }
    for name, values in (
        *((column, [getattr(t, column) for t in txns]) for column in _TEXT_COLUMNS),
        ("scenario", matrix.scenarios),
    ):
        arrays[f"{name}_values"], arrays[f"{name}_codes"] = _categories(values)
    for column in _NUMBER_COLUMNS:
        arrays[column] = np.array([getattr(t, column) for t in txns], dtype=np.float64)
    return arrays


def _text(arrays: dict[str, NDArray[np.generic]], name: str) -> list[str]:
    values = arrays[f"{name}_values"].tolist()
    return [values[code] for code in arrays[f"{name}_codes"].tolist()]


def _matrix(arrays: dict[str, NDArray[np.generic]]) -> FeatureMatrix:
    if tuple(arrays["feature_names"].tolist()) != FEATURE_NAMES:
        raise ValueError("cached feature names differ from FEATURE_NAMES")
    located = ~np.isnan(arrays["lat"])
    lat = [value if ok else None for value, ok in zip(arrays["lat"].tolist(), located, strict=True)]
    lon = [value if ok else None for value, ok in zip(arrays["lon"].tolist(), located, strict=True)]
    text = {column: _text(arrays, column) for column in _TEXT_COLUMNS}
    transactions = list(
        map(Transaction, text["txn_id"], text["card_id"], text["merchant_id"],
            arrays["amount"].tolist(), text["currency"], text["country"], text["channel"],
            arrays["event_time"].tolist(), lat, lon)
    )  # fmt: skip
    return FeatureMatrix(
        transactions=transactions,
        features=np.asarray(arrays["features"], dtype=np.float64),
        is_fraud=np.asarray(arrays["is_fraud"], dtype=np.float64),
        scenarios=_text(arrays, "scenario"),
    )


class FeatureCache:
    """Feature matrices of stream files, in one folder (see the module doc)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def in_registry(cls, registry: Path) -> FeatureCache:
        return cls(registry / CACHE_FOLDER)

    def entry(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str) -> FeatureMatrix | None:
        """The matrix stored under `key`, or None if there is none or it is damaged."""
        path = self.entry(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                matrix = _matrix({name: stored[name] for name in stored.files})
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            log.warning("ignoring damaged feature cache %s (%s); building anew", path, error)
            return None
        with contextlib.suppress(OSError):  # a read-only registry still serves its cache
            os.utime(path)  # recently used: kept longest
        return matrix

    def store(self, key: str, matrix: FeatureMatrix) -> Path:
        """Write `matrix` under `key` (atomically), then drop all but the newest entries."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.entry(key)
        partial = path.with_suffix(".partial")
        columns: dict[str, Any] = _columns(matrix)  # (typing: else taken for savez's flags)
        with partial.open("wb") as out:
            np.savez(out, allow_pickle=False, **columns)
        partial.replace(path)
        entries = sorted(self.folder.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in entries[KEPT_ENTRIES:]:
            stale.unlink(missing_ok=True)
        return path

    def load_or_build(self, key: str, build: Callable[[], FeatureMatrix]) -> FeatureMatrix:
        cached = self.load(key)
        if cached is not None:
            log.info("features from cache %s", self.entry(key))
            return cached
        matrix = build()
        try:
            self.store(key, matrix)
        except OSError as error:  # a cache that cannot be written must not fail the command
            log.warning("could not keep the features in %s: %s", self.folder, error)
        return matrix
