"""Prometheus' own checker, where installed (.ci/run installs it; tests skip without it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    """Run promtool; fail the test with its output unless it exits 0."""
    assert PROMTOOL is not None
    checked = subprocess.run(
        [PROMTOOL, *args], input=stdin, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return checked.stdout
