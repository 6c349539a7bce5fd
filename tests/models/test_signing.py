"""Signing keys: HMAC over canonical JSON, and the key file training keeps beside a registry."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fraudstream.models.signing import (
    SigningKey,
    SigningKeyError,
    key_file_for,
    signing_key_for,
)


def test_a_signature_covers_the_content_not_its_key_order() -> None:
    key = SigningKey("k" * 16)
    signature = key.sign({"a": 1, "b": [0.5, "x"]})
    assert key.verify({"b": [0.5, "x"], "a": 1}, signature)
    assert not key.verify({"a": 2, "b": [0.5, "x"]}, signature)
    assert not SigningKey("j" * 16).verify({"a": 1, "b": [0.5, "x"]}, signature)
    assert not key.verify({"a": 1, "b": [0.5, "x"]}, None)
    assert not key.verify({"a": 1, "b": [0.5, "x"]}, "é" * 64), "non-ASCII: False, no TypeError"


def test_a_short_key_is_refused_and_no_key_is_ever_printed() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        SigningKey("fifteen bytes!!")
    assert "secret-value" not in repr(SigningKey("secret-value-of-some-length"))


def test_the_configured_key_wins_over_the_key_file(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    made = signing_key_for(registry, None, create=True)
    configured = SigningKey.generate()
    assert signing_key_for(registry, configured) == configured
    assert signing_key_for(registry, None) == made


def test_training_makes_a_private_key_file_beside_the_registry_once(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    with pytest.raises(SigningKeyError, match="set FRAUDSTREAM_SIGNING_KEY"):
        signing_key_for(registry, None)
    first = signing_key_for(registry, None, create=True)
    path = key_file_for(registry)
    assert path == tmp_path / "registry.signing-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing_key_for(registry, None, create=True) == first
    assert signing_key_for(registry, None) == first
    assert [p.name for p in tmp_path.iterdir()] == ["registry.signing-key"], "no leftovers"


def test_an_unusable_key_file_is_an_error_naming_it(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    key_file_for(registry).write_text("short\n")
    with pytest.raises(SigningKeyError, match=r"registry\.signing-key is unusable"):
        signing_key_for(registry, None, create=True)
