"""Kafka security settings become the options every client library takes, alike everywhere,
and no password shows in a repr, a log or a URL printed for the user."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
import redis.connection
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.services import free_port
from fraudstream.stream.transport import (
    PLAINTEXT,
    KafkaSecurity,
    Secret,
    TransportSecurityError,
    faust_credentials,
    kafka_client_options,
    kafka_ssl_context,
    redact_url,
    redis_url_with_ca_file,
)
from fraudstream.stream.worker.faust_app import new_faust_app
from tests.support.tls import needs_openssl, self_signed_certificate

PASSWORD = "correct horse battery staple"

SECURITIES = {
    "plaintext": PLAINTEXT,
    "ssl": KafkaSecurity("SSL"),
    "sasl-plaintext-plain": KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "alice", Secret(PASSWORD)),
    "sasl-ssl-scram-256": KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "alice", Secret(PASSWORD)),
    "sasl-ssl-scram-512": KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "alice", Secret(PASSWORD)),
}


def comparable(options: dict[str, Any]) -> dict[str, Any]:
    """Options with None dropped and the TLS context reduced to what it checks."""
    shown = {key: value for key, value in options.items() if value is not None}
    if "ssl_context" in shown:
        context = shown["ssl_context"]
        shown["ssl_context"] = (context.verify_mode, context.check_hostname)
    return shown


@pytest.mark.parametrize("security", SECURITIES.values(), ids=SECURITIES.keys())
def test_our_clients_get_the_options_faust_gives_its_own(security: KafkaSecurity) -> None:
    ours = kafka_client_options(security)
    fausts = credentials_to_aiokafka_auth(faust_credentials(security))
    assert comparable(ours) == comparable(fausts)
    assert ours["security_protocol"] == security.protocol
    if security.uses_tls:
        assert comparable(ours)["ssl_context"] == (ssl.CERT_REQUIRED, True)
    if security.uses_sasl:
        assert ours["sasl_mechanism"] == security.sasl_mechanism
        assert ours["sasl_plain_password"] == PASSWORD  # a str to the client libraries


@pytest.mark.parametrize("security", SECURITIES.values(), ids=SECURITIES.keys())
def test_kafka_python_and_aiokafka_accept_the_options(security: KafkaSecurity) -> None:
    options = kafka_client_options(security)
    for client in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        assert set(options) <= set(client.DEFAULT_CONFIG), client  # it refuses unknown keys

    async def construct() -> None:  # aiokafka checks protocol, context and SASL here
        AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **options)
        AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **options)

    asyncio.run(construct())


def test_the_faust_app_reaches_the_broker_with_the_settings_credentials(tmp_path: Path) -> None:
    settings = Settings(kafka_url="kafka://b:9093", kafka_security=SECURITIES["sasl-ssl-scram-512"])
    app = new_faust_app(settings, "kafka://b:9093", datadir=tmp_path)
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(credentials, app.conf.ssl_context)
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    plain = new_faust_app(Settings(), "kafka://b:9093", datadir=tmp_path)
    assert plain.conf.broker_credentials is None


@needs_openssl
def test_the_tls_context_trusts_the_ca_file_and_presents_the_client_certificate(
    tmp_path: Path,
) -> None:
    ca = self_signed_certificate(tmp_path, "broker-ca")
    client = self_signed_certificate(tmp_path, "client")
    security = KafkaSecurity("SSL", ca_file=ca.cert_file, cert_file=client.cert_file,
                             key_file=client.key_file)  # fmt: skip
    context = kafka_ssl_context(security)
    assert context is not None
    subjects = [cert["subject"] for cert in context.get_ca_certs()]
    assert subjects == [((("commonName", "broker-ca"),),)]  # that CA alone, not the system's
    wrong_key = KafkaSecurity("SSL", cert_file=client.cert_file, key_file=ca.key_file)
    with pytest.raises(TransportSecurityError, match="client.pem"):
        kafka_ssl_context(wrong_key)


def test_an_unreadable_ca_file_is_an_error_naming_it(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate")
    with pytest.raises(TransportSecurityError, match="ca.pem"):
        kafka_client_options(KafkaSecurity("SASL_SSL", "PLAIN", "alice", Secret(PASSWORD),
                                           ca_file=not_pem))  # fmt: skip


def test_no_repr_shows_the_password() -> None:
    security = SECURITIES["sasl-ssl-scram-256"]
    settings = Settings(kafka_url="kafka://b:9093", kafka_security=security,
                        redis_url=f"rediss://:{PASSWORD}@r:6380/0")  # fmt: skip
    shown = [repr(security), repr(settings), repr(kafka_client_options(security)),
             repr(faust_credentials(security))]  # fmt: skip
    assert not [text for text in shown if PASSWORD in text]
    assert "sasl_password='***'" in repr(security)  # it says a password is set


def test_kafka_pythons_debug_log_of_its_configuration_hides_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = kafka_client_options(SECURITIES["sasl-plaintext-plain"])
    with caplog.at_level(logging.DEBUG, logger="kafka"), pytest.raises(KafkaError):
        KafkaAdminClient(  # nothing listens: it logs its configuration, then gives up
            bootstrap_servers=f"127.0.0.1:{free_port()}", bootstrap_timeout_ms=300, **options
        )
    assert "sasl_plain_password" in caplog.text
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        (
            "rediss://app:pw@host:6380/1?ssl_ca_certs=/ca.pem",
            "rediss://app:***@host:6380/1?ssl_ca_certs=/ca.pem",
        ),
        ("unix://:p%40ss@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("redis://host:6379/0?password=pw&db=2", "redis://host:6379/0?password=***&db=2"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_redact_url_masks_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_redis_ca_file_rides_in_the_url_where_redis_py_reads_it() -> None:
    url = redis_url_with_ca_file("rediss://:pw@r:6380/2?ssl_ca_certs=/old.pem&health_check_interval=5",
                                 Path("/etc/ca/redis ca.pem"))  # fmt: skip
    parsed = redis.connection.parse_url(url)
    assert parsed["ssl_ca_certs"] == "/etc/ca/redis ca.pem"
    assert (parsed["password"], parsed["db"], parsed["health_check_interval"]) == ("pw", 2, 5)
    assert parsed["connection_class"] is redis.connection.SSLConnection
