"""The test harness's signing key: one per test run, signing every registry it trains.

Tests that go through `fraudstream train` without FRAUDSTREAM_SIGNING_KEY get the key file
beside their registry instead, as a user would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fraudstream.models.registry import write_manifest
from fraudstream.models.signing import SigningKey

TEST_SIGNING_KEY = SigningKey.generate()


def copy_version(registry: Path, source: str, target: str) -> None:
    """Copy version `source` to a new version `target`, re-signed under its new name.

    A plain copy would be refused: a manifest is signed for the version it belongs to.
    """
    shutil.copytree(registry / source, registry / target)
    write_manifest(registry / target, target, TEST_SIGNING_KEY)
