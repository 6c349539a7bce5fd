"""Transport security: how FraudStream's Kafka and Redis clients log in and encrypt.

:class:`KafkaSecurity` is the Kafka part of the settings (``stream/settings.py`` parses and
checks ``FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL`` and its companions into one). This module
turns it into what each client library wants, so no client repeats the mapping:

* :func:`faust_credentials`: Faust's ``broker_credentials`` (the worker, the baselines);
* :func:`kafka_client_options`: keyword arguments for kafka-python and aiokafka clients
  (replay, the demo's and load test's readers and producers, topic creation). The two
  libraries name these options alike, and they are what Faust derives from its
  credentials for its own aiokafka clients (a test checks that the two mappings agree).

Redis needs no mapping: redis-py reads AUTH (``redis://user:password@host``) and TLS
(``rediss://``) from the URL, and ``FRAUDSTREAM_REDIS_CA_FILE`` becomes the URL's
``ssl_ca_certs`` parameter (:func:`redis_url_with_ca_file`), so every Redis client made
from the URL, in this process or a worker started with it, trusts that CA.

Passwords are :class:`Secret`: a ``str`` whose repr is masked, so neither our reprs nor
the client configurations libraries log (kafka-python's admin client logs its whole
configuration at DEBUG) show them. :func:`redact_url` masks a URL's password for printing.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

__all__ = [
    "PLAINTEXT",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "KafkaSecurity",
    "SaslMechanism",
    "Secret",
    "SecurityProtocol",
    "TransportSecurityError",
    "faust_credentials",
    "kafka_client_options",
    "kafka_ssl_context",
    "redact_url",
    "redis_url_with_ca_file",
]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SECURITY_PROTOCOLS: tuple[SecurityProtocol, ...] = (
    "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL",
)  # fmt: skip
SASL_MECHANISMS: tuple[SaslMechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_MASK = "***"


class Secret(str):
    """A password: an ordinary ``str`` to the libraries that use it, masked in any repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(_MASK)


class TransportSecurityError(ValueError):
    """The TLS files cannot be loaded; the message names them (never a password)."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How Kafka clients reach the brokers: protocol, SASL login, TLS files.

    The default, PLAINTEXT, is what the embedded broker speaks. SASL fields matter only for
    ``SASL_*`` protocols, files only for ``SSL`` / ``SASL_SSL``; ``stream/settings.py``
    rejects any other combination, naming the variables.
    """

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")


PLAINTEXT = KafkaSecurity()


def kafka_ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL, None otherwise.

    It verifies the broker's certificate and host name against ``ca_file`` (else the
    system's CAs) and presents ``cert_file`` (with ``key_file``, unless the key is in the
    certificate file) when set. Raises :class:`TransportSecurityError` naming the files.
    """
    if not security.uses_tls:
        return None
    try:
        context = ssl.create_default_context(cafile=security.ca_file)
        if security.cert_file is not None:
            context.load_cert_chain(security.cert_file, security.key_file)
    except OSError as error:  # ssl.SSLError is one
        files = {"CA": security.ca_file, "certificate": security.cert_file,
                 "key": security.key_file}  # fmt: skip
        named = ", ".join(f"{what} {path}" for what, path in files.items() if path) or "none"
        raise TransportSecurityError(
            f"cannot load the Kafka TLS files ({named}): {error}"
        ) from error
    return context


def kafka_client_options(security: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for kafka-python and aiokafka clients (producers, consumers, admin)."""
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.uses_tls:
        options["ssl_context"] = kafka_ssl_context(security)
    if security.uses_sasl:
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.sasl_username
        options["sasl_plain_password"] = security.sasl_password
    return options


def faust_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for `security` (None: PLAINTEXT)."""
    import faust  # here: Faust is slow to import and only the worker and baselines need it

    options = kafka_client_options(security)
    if security.uses_sasl:
        return faust.SASLCredentials(
            username=options["sasl_plain_username"], password=options["sasl_plain_password"],
            ssl_context=options.get("ssl_context"), mechanism=options["sasl_mechanism"],
        )  # fmt: skip
    if security.uses_tls:
        return faust.SSLCredentials(options["ssl_context"])
    return None


def redis_url_with_ca_file(url: str, ca_file: Path) -> str:
    """`url` with redis-py's ``ssl_ca_certs`` query parameter set to `ca_file` (replacing any).

    redis-py passes unknown URL parameters to its connections, so every client made from
    the URL verifies the server against that CA.
    """
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k != "ssl_ca_certs"]  # fmt: skip
    query.append(("ssl_ca_certs", str(ca_file)))
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))


def redact_url(url: str) -> str:
    """`url` with its password masked (user info or a ``password=`` parameter), for printing."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        user_info, _, host = netloc.rpartition("@")
        netloc = f"{user_info.split(':', 1)[0]}:{_MASK}@{host}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        masked = [(key, _MASK if key == "password" else value) for key, value in pairs]
        query = urlencode(masked, safe="/*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))
