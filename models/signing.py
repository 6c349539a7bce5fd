"""What a worker trusts: model versions and threshold pairs signed with one secret key.

A sha256 manifest proves a file did not change by accident, not that the right party
wrote it: whoever can edit a model file can recompute its hash. So the manifest, and every
threshold pair published to Redis, carries an HMAC-SHA256 over its canonical JSON, made
with the key in ``FRAUDSTREAM_SIGNING_KEY``; a worker applies only what verifies.

Where no key is configured (a laptop, the demo, ``fraudstream train`` on its own), training
keeps one in a key file beside the registry, ``<registry>.signing-key`` (mode 0600), and the
demo hands it to its workers. Workers themselves never read a key file. That file protects
the registry only from someone who can write the registry but can neither read nor replace
the key file (another account, a directory they cannot write); when one user owns both, it
catches accidents (an edited file, a version copied under another name), not an attacker.

Example:
    >>> key = SigningKey("a secret of at least sixteen bytes")
    >>> signature = key.sign({"version": "v0001", "files": {"a": "00"}})
    >>> key.verify({"files": {"a": "00"}, "version": "v0001"}, signature)
    True
    >>> key.verify({"version": "v0002", "files": {"a": "00"}}, signature)
    False
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: A shorter secret is refused: HMAC-SHA256 is only as strong as its key.
MIN_KEY_BYTES = 16
KEY_FILE_SUFFIX = ".signing-key"


class SigningKeyError(Exception):
    """No signing key is known for a registry, or a key file does not hold a usable one."""


def canonical_json(document: object) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, ASCII only, no NaN."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


@dataclass(frozen=True)
class SigningKey:
    """A secret (any string of at least `MIN_KEY_BYTES` UTF-8 bytes, used as it is).

    Its repr hides the secret, so settings and errors can be printed safely.
    """

    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret.encode()) < MIN_KEY_BYTES:
            raise ValueError(
                f"a signing key needs at least {MIN_KEY_BYTES} bytes; make one with "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh random key: 32 random bytes as 64 hex characters."""
        return cls(secrets.token_hex(32))

    def sign(self, document: object) -> str:
        """The hex HMAC-SHA256 of `document`'s canonical JSON."""
        return hmac.new(self.secret.encode(), canonical_json(document), hashlib.sha256).hexdigest()

    def verify(self, document: object, signature: object) -> bool:
        """True when `signature` is this key's signature of `document` (constant time)."""
        return isinstance(signature, str) and hmac.compare_digest(
            self.sign(document).encode(), signature.encode()
        )


def key_file_for(registry_dir: Path) -> Path:
    """Where training keeps a key for `registry_dir` when none is configured: beside it."""
    registry = registry_dir.resolve()
    return registry.with_name(registry.name + KEY_FILE_SUFFIX)


def signing_key_for(
    registry_dir: Path, configured: SigningKey | None, *, create: bool = False
) -> SigningKey:
    """The key that signs `registry_dir`: `configured` (the setting) when given, else the
    key file beside the registry, which `create` makes (training) when there is none.

    Raises `SigningKeyError` when there is neither, or the key file is unusable.
    """
    if configured is not None:
        return configured
    path = key_file_for(registry_dir)
    if create and not path.exists():
        _write_new_key(path)
    try:
        return SigningKey(path.read_text().strip())
    except FileNotFoundError:
        raise SigningKeyError(
            f"no signing key for {registry_dir}: set FRAUDSTREAM_SIGNING_KEY to the key its "
            f"versions were signed with ({path} does not exist)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise SigningKeyError(f"signing key file {path} is unusable: {error}") from error


def _write_new_key(path: Path) -> None:
    """Create `path` holding a fresh key, readable by its owner only.

    The key is written to a private temporary file first and linked into place, so a
    reader never sees a half-written key, and of two racing trainers the first one's stays.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(SigningKey.generate().secret + "\n")
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
