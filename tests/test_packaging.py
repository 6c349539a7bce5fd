"""The installed distribution: everything under `fraudstream.`, no generic top-level name."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("stream", "models", "features", "thresholds")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--quiet", "--wheel-dir", str(out), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("fraudstream-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_installs_nothing_but_the_fraudstream_namespace(wheel_names: set[str]) -> None:
    top_level = {name.split("/", 1)[0] for name in wheel_names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"fraudstream"}


def test_every_module_of_the_package_folders_is_in_the_wheel(wheel_names: set[str]) -> None:
    sources = {
        f"fraudstream/{path.relative_to(REPO).as_posix()}"
        for folder in PACKAGE_FOLDERS
        for path in (REPO / folder).rglob("*.py")
    }
    assert sources <= wheel_names, sorted(sources - wheel_names)


def test_the_shipped_rules_file_is_in_the_wheel(wheel_names: set[str]) -> None:
    assert "fraudstream/thresholds/rules/default.yaml" in wheel_names
