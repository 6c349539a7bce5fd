"""FraudStream settings: the one place that reads the environment.

Every knob is a ``FRAUDSTREAM_*`` environment variable with a documented default, parsed
once into a frozen :class:`Settings`. Other modules receive a ``Settings`` (or the values
they need from it) instead of reading ``os.environ``, so tests can build any configuration
without touching the process environment.

Variables (default in brackets):

=================================== ==========================================================
``FRAUDSTREAM_KAFKA_URL``           broker, ``kafka://host:port[;host:port]`` or ``host:port``
                                    [unset: ``fraudstream demo`` starts an embedded Tansu]
``FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL`` ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``
                                    [``PLAINTEXT``]; anything else needs ``KAFKA_URL`` set
``FRAUDSTREAM_KAFKA_SASL_MECHANISM`` ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``, SASL
                                    protocols only [``PLAIN``]
``FRAUDSTREAM_KAFKA_SASL_USERNAME`` SASL login, required by the SASL protocols [unset]
``FRAUDSTREAM_KAFKA_SASL_PASSWORD`` SASL password, required by them; never printed [unset]
``FRAUDSTREAM_KAFKA_CA_FILE``       PEM file of the CAs that sign the brokers' certificates,
                                    TLS protocols only [unset: the system's CAs]
``FRAUDSTREAM_KAFKA_CERT_FILE``     PEM client certificate (mutual TLS), TLS protocols [unset]
``FRAUDSTREAM_KAFKA_KEY_FILE``      its private key, if not in the certificate file [unset]
``FRAUDSTREAM_REDIS_URL``           ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL, with
                                    AUTH as ``redis://[user]:password@host:port/db``; a Redis
                                    Cluster as ``redis+cluster://host:port[,host:port...]``
                                    (``rediss+cluster://`` for TLS; any nodes, the rest are
                                    discovered; db 0 only)
                                    [unset: an embedded ``redis-server`` is started]
``FRAUDSTREAM_REDIS_CA_FILE``       PEM CA file for a ``rediss://`` or ``rediss+cluster://``
                                    URL, added to it as ``ssl_ca_certs`` [unset: the system's
                                    CAs]
``FRAUDSTREAM_TOPIC_TRANSACTIONS``  [``transactions``]
``FRAUDSTREAM_TOPIC_DECISIONS``     [``decisions``]
``FRAUDSTREAM_TOPIC_LABELS``        [``labels``]
``FRAUDSTREAM_TOPIC_DLQ``           [``transactions.dlq``]
``FRAUDSTREAM_PARTITIONS``          partitions per topic, >= 1 [4]
``FRAUDSTREAM_REGISTRY``            model registry folder [``registry``]
``FRAUDSTREAM_RULES``               business rules file, YAML or JSON (thresholds/rules/);
                                    check one with ``fraudstream rules check``
                                    [unset: the shipped ``thresholds/rules/default.yaml``]
``FRAUDSTREAM_MODEL_TIMEOUT_MS``    per-model scoring budget in ms, > 0 [50]
``FRAUDSTREAM_FALLBACK_POLICY``     ``neutral`` or ``last_score`` [``neutral``]
``FRAUDSTREAM_OFFSET_RESET_POLICY`` what a worker does when a partition's log ends before its
                                    position (the broker lost records): ``earliest`` reads
                                    the partition again from its start (decisions may repeat),
                                    ``stop`` stops the worker for an operator [``earliest``]
``FRAUDSTREAM_MAX_EVENT_SKEW_S``    a transaction whose ``event_time`` is further than this from
                                    its broker timestamp goes to the DLQ; 0 = no check (replays of
                                    history, which the demo and load test run) [86400: ± 1 day]
``FRAUDSTREAM_STAND_IN_AFTER_MS``   a record older than this when taken (a backlog) is decided
                                    by XGBoost alone, marked ``stand_in``; 0 = never [100]
``FRAUDSTREAM_WEIGHT_XGBOOST``      ensemble weight, >= 0 [unset: the registry version's]
``FRAUDSTREAM_WEIGHT_ISOLATION_FOREST`` ensemble weight, >= 0 [unset: the registry version's]
``FRAUDSTREAM_COST_FN``             dollars per missed fraud, >= 0 [5000]; the costs, the
                                    FPR cap and the review capacity serve training, evaluate,
                                    reports and the worker
``FRAUDSTREAM_COST_FP``             dollars per false decline, >= 0 [50]
``FRAUDSTREAM_COST_REVIEW``         dollars per manual review, >= 0 [10]
``FRAUDSTREAM_MAX_FPR``             cap on the false-positive rate of declines, in (0, 1] [0.001]
``FRAUDSTREAM_REVIEW_CAPACITY``     largest share of transactions sent to manual review, what the
                                    analysts can work through, in [0, 1]; 1 = unlimited [0.02]
``FRAUDSTREAM_LIMIT_MARGIN``        share of the FPR cap and review capacity a new threshold pair
                                    (training, recalibration) leaves free on the labelled data
                                    it is chosen on, so the limits hold on traffic it has not
                                    seen; reports hold runs to the full limits, in [0, 1) [0.5]
``FRAUDSTREAM_METRICS_PORT``        Prometheus port, 0 = pick a free one [0]
``FRAUDSTREAM_METRICS_HOST``        address the Prometheus server binds; ``0.0.0.0`` for every
                                    interface (containers) [``127.0.0.1``]
``FRAUDSTREAM_FETCH_MAX_WAIT_MS``   longest a worker's fetch waits for data, ms, > 0 [10]
``FRAUDSTREAM_SHADOW_VERSION``     registry version scored beside the live one, logged only [unset]
``FRAUDSTREAM_DYNAMIC_THRESHOLD``   recalibrate the live threshold from labels, 1/0 [1]
``FRAUDSTREAM_LABEL_MATURITY_DAYS`` a labelled decision counts once this old [10]
``FRAUDSTREAM_LABEL_WINDOW_DAYS``   labelled decisions older than this are dropped [30]
``FRAUDSTREAM_LABEL_DELAY_DAYS``    days before a fraud is known (chargebacks, customer calls),
                                    >= 0: ``evaluate`` tests one delay after what the model was
                                    fitted on and drops cards known compromised by then; the
                                    merchant risk features count a merchant's transactions and
                                    known frauds in windows that end this long before each
                                    transaction. Training records it in the version; a worker
                                    computes with its live version's delay [7]
``FRAUDSTREAM_RECALIBRATION_MIN_RECALL`` recall a new pair must keep on the window, unless
                                    the FPR cap and review capacity allow none that does: then
                                    the cheapest pair within them [0.97]
``FRAUDSTREAM_APP_ID``              Faust app id = Kafka consumer group [``fraudstream``]
``FRAUDSTREAM_SIGNING_KEY``         secret (any string of >= 16 bytes) that signs model versions
                                    and threshold pairs; a worker refuses to start without it
                                    [unset: training keeps one in ``<registry>.signing-key``]
``FRAUDSTREAM_ID_HASH_KEY``         secret key (>= 32 characters) of the card and merchant id
                                    pseudonyms (features/pseudonyms.py), the same for every
                                    worker of a group; with a Kafka or Redis URL set, workers
                                    refuse to start without it [unset: a run on embedded
                                    services makes one]
=================================== ==========================================================
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar, cast
from urllib.parse import urlsplit

from fraudstream.features.definitions import DEFAULT_LABEL_DELAY_DAYS
from fraudstream.features.geo import SECONDS_PER_DAY
from fraudstream.features.pseudonyms import MIN_KEY_CHARS, IdPseudonyms, new_id_hash_key
from fraudstream.models.signing import SigningKey
from fraudstream.stream.transport import (
    PLAINTEXT,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    KafkaSecurity,
    SaslMechanism,
    Secret,
    SecurityProtocol,
    redact_url,
    redis_url_with_ca_file,
)
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.optimise import Constraints
from fraudstream.thresholds.rules import DEFAULT_RULES_FILE

__all__ = [
    "ENV_PREFIX",
    "PRODUCER_LINGER_MS",
    "VARIABLES",
    "FallbackPolicy",
    "Settings",
    "SettingsError",
]

ENV_PREFIX = "FRAUDSTREAM_"
#: Every variable :meth:`Settings.from_env` reads, and it reads no other (it refuses a name
#: not listed here). deploy/'s tests check that compose and Kubernetes set only these, so a
#: misspelt or retired variable there fails a test instead of being silently ignored.
VARIABLES: tuple[str, ...] = tuple(
    ENV_PREFIX + name
    for name in (
        "KAFKA_URL",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_CA_FILE",
        "KAFKA_CERT_FILE",
        "KAFKA_KEY_FILE",
        "REDIS_URL",
        "REDIS_CA_FILE",
        "TOPIC_TRANSACTIONS",
        "TOPIC_DECISIONS",
        "TOPIC_LABELS",
        "TOPIC_DLQ",
        "PARTITIONS",
        "REGISTRY",
        "RULES",
        "MODEL_TIMEOUT_MS",
        "FALLBACK_POLICY",
        "OFFSET_RESET_POLICY",
        "MAX_EVENT_SKEW_S",
        "STAND_IN_AFTER_MS",
        "WEIGHT_XGBOOST",
        "WEIGHT_ISOLATION_FOREST",
        "COST_FN",
        "COST_FP",
        "COST_REVIEW",
        "MAX_FPR",
        "REVIEW_CAPACITY",
        "LIMIT_MARGIN",
        "METRICS_PORT",
        "METRICS_HOST",
        "FETCH_MAX_WAIT_MS",
        "SHADOW_VERSION",
        "DYNAMIC_THRESHOLD",
        "LABEL_MATURITY_DAYS",
        "LABEL_WINDOW_DAYS",
        "LABEL_DELAY_DAYS",
        "RECALIBRATION_MIN_RECALL",
        "APP_ID",
        "SIGNING_KEY",
        "ID_HASH_KEY",
    )
)
#: How long the load test's producer lets records gather into one batch (the replay's
#: transactions linger less: `stream.sim.replay.REPLAY_LINGER_MS`).
#: The embedded broker pays per stored batch and slows down as batches pile up
#: (bench/bench_broker_growth.py): the 50,000-transaction demo's p99 was 8.7-13.1 s with
#: 5 ms, 1.3 s with 20 ms, 0.6 s with 50 ms, which would add up to 50 ms per hop. The
#: worker's decisions come in batches already and do not wait (stream/worker/faust_app.py).
PRODUCER_LINGER_MS = 20

FallbackPolicy = Literal["neutral", "last_score"]
_FALLBACK_POLICIES: tuple[str, ...] = ("neutral", "last_score")
OffsetResetPolicy = Literal["earliest", "stop"]
_OFFSET_RESET_POLICIES: tuple[str, ...] = ("earliest", "stop")
_KAFKA_SCHEMES = ("kafka://", "aiokafka://")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")

T = TypeVar("T")


class SettingsError(ValueError):
    """A ``FRAUDSTREAM_*`` variable holds a value the system cannot use.

    The message always names the variable, so the user knows what to fix.
    """


@dataclass(frozen=True)
class Settings:
    """Validated configuration for every FraudStream command.

    ``kafka_url`` / ``redis_url`` of ``None`` mean "start the embedded server"
    (see ``fraudstream.stream.tools.services.embedded_services``); a set URL is used as-is.
    ``kafka_security`` applies to ``kafka_url``'s brokers (the embedded one is PLAINTEXT).
    ``redis_url`` may hold a password, so it is left out of the repr.
    """

    kafka_url: str | None = None
    kafka_security: KafkaSecurity = PLAINTEXT
    redis_url: str | None = field(default=None, repr=False)
    topic_transactions: str = "transactions"
    topic_decisions: str = "decisions"
    topic_labels: str = "labels"
    topic_dlq: str = "transactions.dlq"
    partitions: int = 4
    registry_path: Path = Path("registry")
    rules_path: Path = DEFAULT_RULES_FILE
    model_timeout_ms: float = 50.0
    fallback_policy: FallbackPolicy = "neutral"
    stand_in_after_ms: float = 100.0
    max_event_skew_s: float = 86_400.0
    offset_reset_policy: OffsetResetPolicy = "earliest"
    weight_xgboost: float | None = None
    weight_isolation_forest: float | None = None
    cost_fn: float = 5000.0
    cost_fp: float = 50.0
    cost_review: float = 10.0
    max_fpr: float = 0.001
    review_capacity: float = 0.02
    limit_margin: float = 0.5
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    fetch_max_wait_ms: int = 10
    dynamic_threshold: bool = True
    shadow_version: str | None = None
    label_maturity_days: float = 10.0
    label_window_days: float = 30.0
    label_delay_days: float = DEFAULT_LABEL_DELAY_DAYS
    recalibration_min_recall: float = 0.97
    app_id: str = "fraudstream"
    signing_key: SigningKey | None = None
    #: A secret: left out of the repr, so printing settings never shows it.
    id_hash_key: str | None = field(default=None, repr=False)

    @property
    def topics(self) -> tuple[str, str, str, str]:
        """All topic names, in data-flow order, for creating them up front."""
        return (self.topic_transactions, self.topic_decisions, self.topic_labels, self.topic_dlq)

    @property
    def label_delay_s(self) -> float:
        """The label delay D in seconds, as the feature builder and stores take it."""
        return self.label_delay_days * SECONDS_PER_DAY

    @property
    def model_timeout_s(self) -> float:
        """The model budget in seconds, as ``asyncio.wait_for`` wants it."""
        return self.model_timeout_ms / 1000.0

    @property
    def event_skew_limit_s(self) -> float | None:
        """The allowed |event_time - broker timestamp|, or None when not checked (0)."""
        return self.max_event_skew_s if self.max_event_skew_s > 0 else None

    @property
    def stand_in_after_s(self) -> float | None:
        """The stand-in age in seconds, or None when the stand-in path is off (0)."""
        return self.stand_in_after_ms / 1000.0 if self.stand_in_after_ms > 0 else None

    @property
    def cost_model(self) -> CostModel:
        """The business costs, for every threshold choice and report, online and offline."""
        return CostModel(self.cost_fn, self.cost_fp, self.cost_review)

    @property
    def threshold_constraints(self) -> Constraints:
        """The hard limits, the FPR cap on declines and the review capacity, that evaluation
        and run reports hold decisions to."""
        return Constraints(max_fpr=self.max_fpr, max_review_rate=self.review_capacity)

    @property
    def selection_constraints(self) -> Constraints:
        """What a new pair is chosen under (training's static pair): the hard limits less
        `limit_margin`."""
        return self.threshold_constraints.with_margin(self.limit_margin)

    @property
    def recalibration_constraints(self) -> Constraints:
        """The selection limits plus the recall floor the online recalibration aims for."""
        return replace(self.selection_constraints, min_recall=self.recalibration_min_recall)

    def id_pseudonyms(self) -> IdPseudonyms:
        """The card and merchant id pseudonyms a worker writes everywhere instead of the ids,
        under `run_id_hash_key`: a worker pointed at a Kafka or Redis refuses to start
        without the key, never falling back to raw ids nor to a key of its own (the workers
        of a group must share one, or each would keep its own windows for the same card);
        with no service named (tests, in-process runs) it gets a fresh key of its own.
        """
        return IdPseudonyms(self.run_id_hash_key())

    def run_id_hash_key(self) -> str:
        """The configured id hash key, else a fresh random one when no service is named
        (all embedded: their data dies with the run, as the key does).

        Raises :class:`SettingsError` naming ``FRAUDSTREAM_ID_HASH_KEY`` when it is unset
        and ``FRAUDSTREAM_KAFKA_URL`` or ``FRAUDSTREAM_REDIS_URL`` is set: pseudonyms kept
        in those services must stay the same across workers and restarts.
        """
        if self.id_hash_key is not None:
            return self.id_hash_key
        if self.kafka_url is None and self.redis_url is None:
            return new_id_hash_key()
        raise SettingsError(
            f"{ENV_PREFIX}ID_HASH_KEY is not set: workers pseudonymise card and merchant ids "
            "with this secret key before they reach Redis, decisions, the dead-letter topic, "
            "metrics or logs. Make one (python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'), keep it secret, and give every worker of "
            "the group the same"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: ``os.environ``).

        Unset or empty variables take the default. Raises :class:`SettingsError` naming the
        variable when a value cannot be parsed or is out of range.
        """
        env = os.environ if environ is None else environ
        d = cls()  # defaults live in one place: the field declarations above

        def get(name: str, parse: Callable[[str, str], T], default: T) -> T:
            key = _variable(name)
            raw = env.get(key, "").strip()
            return default if raw == "" else parse(key, raw)

        kafka_url = get("KAFKA_URL", _kafka_url, d.kafka_url)
        redis_url = get("REDIS_URL", _redis_url, d.redis_url)
        redis_ca_file = get("REDIS_CA_FILE", _existing_file, None)
        if redis_ca_file is not None:
            if redis_url is None or not redis_url.startswith(("rediss://", "rediss+cluster://")):
                shown = "unset (the embedded redis-server has no TLS)"
                raise SettingsError(
                    f"{ENV_PREFIX}REDIS_CA_FILE is for TLS, so {ENV_PREFIX}REDIS_URL must be a"
                    f" rediss:// URL; it is {redact_url(redis_url) if redis_url else shown}"
                )
            redis_url = redis_url_with_ca_file(redis_url, redis_ca_file)

        weight_xgboost = get("WEIGHT_XGBOOST", _non_negative_float, d.weight_xgboost)
        weight_iforest = get(
            "WEIGHT_ISOLATION_FOREST", _non_negative_float, d.weight_isolation_forest
        )
        if (
            weight_xgboost is not None
            and weight_iforest is not None
            and (weight_xgboost + weight_iforest <= 0)
        ):
            raise SettingsError(
                f"{ENV_PREFIX}WEIGHT_XGBOOST and {ENV_PREFIX}WEIGHT_ISOLATION_FOREST are both 0;"
                " at least one model needs a positive weight"
            )
        return cls(
            kafka_url=kafka_url,
            kafka_security=_kafka_security(env, kafka_url),
            redis_url=redis_url,
            topic_transactions=get("TOPIC_TRANSACTIONS", _topic_name, d.topic_transactions),
            topic_decisions=get("TOPIC_DECISIONS", _topic_name, d.topic_decisions),
            topic_labels=get("TOPIC_LABELS", _topic_name, d.topic_labels),
            topic_dlq=get("TOPIC_DLQ", _topic_name, d.topic_dlq),
            partitions=get("PARTITIONS", _positive_int, d.partitions),
            registry_path=get("REGISTRY", lambda _k, v: Path(v), d.registry_path),
            rules_path=get("RULES", _existing_file, d.rules_path),
            model_timeout_ms=get("MODEL_TIMEOUT_MS", _positive_float, d.model_timeout_ms),
            fallback_policy=get("FALLBACK_POLICY", _fallback_policy, d.fallback_policy),
            stand_in_after_ms=get("STAND_IN_AFTER_MS", _non_negative_float, d.stand_in_after_ms),
            max_event_skew_s=get("MAX_EVENT_SKEW_S", _non_negative_float, d.max_event_skew_s),
            offset_reset_policy=get(
                "OFFSET_RESET_POLICY", _offset_reset_policy, d.offset_reset_policy
            ),
            weight_xgboost=weight_xgboost,
            weight_isolation_forest=weight_iforest,
            cost_fn=get("COST_FN", _non_negative_float, d.cost_fn),
            cost_fp=get("COST_FP", _non_negative_float, d.cost_fp),
            cost_review=get("COST_REVIEW", _non_negative_float, d.cost_review),
            max_fpr=get("MAX_FPR", _fraction, d.max_fpr),
            review_capacity=get("REVIEW_CAPACITY", _share, d.review_capacity),
            limit_margin=get("LIMIT_MARGIN", _margin, d.limit_margin),
            metrics_port=get("METRICS_PORT", _port, d.metrics_port),
            metrics_host=get("METRICS_HOST", _bind_host, d.metrics_host),
            fetch_max_wait_ms=get("FETCH_MAX_WAIT_MS", _positive_int, d.fetch_max_wait_ms),
            dynamic_threshold=get("DYNAMIC_THRESHOLD", _flag, d.dynamic_threshold),
            shadow_version=get("SHADOW_VERSION", lambda _k, v: v, d.shadow_version),
            label_maturity_days=get(
                "LABEL_MATURITY_DAYS", _non_negative_float, d.label_maturity_days
            ),
            label_window_days=get("LABEL_WINDOW_DAYS", _positive_float, d.label_window_days),
            label_delay_days=get("LABEL_DELAY_DAYS", _non_negative_float, d.label_delay_days),
            recalibration_min_recall=get(
                "RECALIBRATION_MIN_RECALL", _fraction, d.recalibration_min_recall
            ),
            app_id=get("APP_ID", _app_id, d.app_id),
            signing_key=get("SIGNING_KEY", _signing_key, d.signing_key),
            id_hash_key=get("ID_HASH_KEY", _id_hash_key, d.id_hash_key),
        )


def _variable(name: str) -> str:
    """``FRAUDSTREAM_<name>``, which must be listed in :data:`VARIABLES`."""
    key = ENV_PREFIX + name
    if key not in VARIABLES:
        raise KeyError(f"{key} is read but not listed in settings.VARIABLES; add it there")
    return key


def _float(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise SettingsError(f"{key}={raw!r} must be a finite number")
    return value


def _non_negative_float(key: str, raw: str) -> float:
    value = _float(key, raw)
    if value < 0:
        raise SettingsError(f"{key}={raw!r} must be >= 0")
    return value


def _positive_float(key: str, raw: str) -> float:
    value = _float(key, raw)
    if value <= 0:
        raise SettingsError(f"{key}={raw!r} must be > 0")
    return value


def _fraction(key: str, raw: str) -> float:
    value = _float(key, raw)
    if not 0 < value <= 1:
        raise SettingsError(f"{key}={raw!r} must be in (0, 1], e.g. 0.001 for 0.1 %")
    return value


def _share(key: str, raw: str) -> float:
    value = _float(key, raw)
    if not 0 <= value <= 1:
        raise SettingsError(f"{key}={raw!r} must be in [0, 1], e.g. 0.02 for 2 %")
    return value


def _margin(key: str, raw: str) -> float:
    value = _float(key, raw)
    if not 0 <= value < 1:
        raise SettingsError(f"{key}={raw!r} must be in [0, 1), e.g. 0.5 to aim at half a limit")
    return value


def _flag(key: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key}={raw!r} must be 1 or 0 (true/false)")


def _int(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not an integer") from None


def _positive_int(key: str, raw: str) -> int:
    value = _int(key, raw)
    if value < 1:
        raise SettingsError(f"{key}={raw!r} must be >= 1")
    return value


def _port(key: str, raw: str) -> int:
    value = _int(key, raw)
    if not 0 <= value <= 65535:
        raise SettingsError(f"{key}={raw!r} must be a TCP port 0..65535 (0 = any free port)")
    return value


def _offset_reset_policy(key: str, raw: str) -> OffsetResetPolicy:
    value = raw.lower()
    if value not in _OFFSET_RESET_POLICIES:
        raise SettingsError(f"{key}={raw!r} must be one of {', '.join(_OFFSET_RESET_POLICIES)}")
    return cast(OffsetResetPolicy, value)


def _fallback_policy(key: str, raw: str) -> FallbackPolicy:
    value = raw.lower()
    if value not in _FALLBACK_POLICIES:
        raise SettingsError(f"{key}={raw!r} must be one of {', '.join(_FALLBACK_POLICIES)}")
    return cast(FallbackPolicy, value)


def _topic_name(key: str, raw: str) -> str:
    # Kafka's own rule: [a-zA-Z0-9._-], at most 249 characters, not "." or "..".
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if len(raw) > 249 or raw in (".", "..") or not set(raw) <= allowed:
        raise SettingsError(
            f"{key}={raw!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-')"
        )
    return raw


def _app_id(key: str, raw: str) -> str:
    if any(ch.isspace() for ch in raw):
        raise SettingsError(f"{key}={raw!r} must not contain whitespace")
    return raw


def _signing_key(key: str, raw: str) -> SigningKey:
    try:
        return SigningKey(raw)
    except ValueError as error:  # the message must not echo the secret
        raise SettingsError(f"{key}: {error}") from None
def _id_hash_key(key: str, raw: str) -> str:
    # The value is a secret: the message gives its length, never the value.
    if len(raw) < MIN_KEY_CHARS:
        raise SettingsError(
            f"{key} has {len(raw)} characters; a key needs at least {MIN_KEY_CHARS} "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))' makes one)"
        )
    return raw


def _kafka_url(key: str, raw: str) -> str:
    """Normalise to Faust's form, ``kafka://host:port[;host:port]``."""
    if "://" in raw and not raw.startswith(_KAFKA_SCHEMES):
        raise SettingsError(f"{key}={raw!r} must start with kafka:// (or be host:port)")
    url = raw if raw.startswith(_KAFKA_SCHEMES) else f"kafka://{raw}"
    hosts = url.split("://", 1)[1].rstrip("/")
    for host in hosts.split(";"):
        name, sep, port = host.rpartition(":")
        if not sep or not name or not port.isdigit():
            raise SettingsError(f"{key}={raw!r}: {host!r} is not host:port")
    return url


def _redis_url(key: str, raw: str) -> str:
    if not raw.startswith(_REDIS_SCHEMES):
        raise SettingsError(
            f"{key}={redact_url(raw)!r} must start with one of {', '.join(_REDIS_SCHEMES)}"
        )
    if "+cluster://" in raw:
        nodes = urlsplit(raw).netloc.rpartition("@")[2].split(",")
        if not all(re.fullmatch(r"[^:/]+:\d+", node) for node in nodes):
            raise SettingsError(
                f"{key}={redact_url(raw)!r}: a Redis Cluster URL lists its nodes as "
                "host:port[,host:port...]"
            )
    return raw


def _bind_host(key: str, raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        if not _HOST_NAME.fullmatch(raw):
            raise SettingsError(
                f"{key}={raw!r} must be an IP address or host name to bind (no port), e.g."
                " 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
            ) from None
    return raw


def _existing_file(key: str, raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise SettingsError(f"{key}={raw!r} is not a file")
    return path.resolve()  # workers started elsewhere find it too


def _kafka_security(env: Mapping[str, str], kafka_url: str | None) -> KafkaSecurity:
    """The Kafka protocol, SASL login and TLS files, checked together.

    Every error names the variables to set or unset; none shows the password.
    """

    def key(name: str) -> str:
        return _variable(f"KAFKA_{name}")

    def read(name: str) -> str:
        return env.get(key(name), "").strip()

    def file(name: str) -> Path | None:
        return _existing_file(key(name), read(name)) if read(name) else None

    protocol = _choice(key("SECURITY_PROTOCOL"), read("SECURITY_PROTOCOL"), SECURITY_PROTOCOLS)
    mechanism = _choice(key("SASL_MECHANISM"), read("SASL_MECHANISM"), SASL_MECHANISMS)
    password = env.get(key("SASL_PASSWORD"), "")  # not stripped: spaces may belong to it
    security = KafkaSecurity(
        protocol=cast(SecurityProtocol, protocol or "PLAINTEXT"),
        sasl_mechanism=cast(SaslMechanism, mechanism or "PLAIN"),
        sasl_username=read("SASL_USERNAME") or None,
        sasl_password=Secret(password) if password else None,
        ca_file=file("CA_FILE"),
        cert_file=file("CERT_FILE"),
        key_file=file("KEY_FILE"),
    )
    protocol_is = f"{key('SECURITY_PROTOCOL')}={security.protocol}"
    if security.protocol != "PLAINTEXT" and kafka_url is None:
        raise SettingsError(
            f"{protocol_is} needs {ENV_PREFIX}KAFKA_URL: the embedded broker speaks PLAINTEXT only"
        )
    sasl_set = [key(n) for n in ("SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD") if read(n)]
    if security.uses_sasl:
        missing = [key(n) for n in ("SASL_USERNAME", "SASL_PASSWORD") if not read(n)]
        if missing:
            raise SettingsError(f"{protocol_is} needs {' and '.join(missing)}")
    elif sasl_set:
        raise SettingsError(
            f"{', '.join(sasl_set)} set, but {protocol_is} has no SASL login;"
            " use SASL_SSL (or SASL_PLAINTEXT)"
        )
    tls_set = [key(n) for n in ("CA_FILE", "CERT_FILE", "KEY_FILE") if read(n)]
    if tls_set and not security.uses_tls:
        raise SettingsError(
            f"{', '.join(tls_set)} set, but {protocol_is} has no TLS; use SSL or SASL_SSL"
        )
    if security.key_file is not None and security.cert_file is None:
        raise SettingsError(f"{key('KEY_FILE')} needs {key('CERT_FILE')}, its certificate")
    return security


def _choice(key: str, raw: str, choices: tuple[str, ...]) -> str:
    """`raw` upper-cased if it is one of `choices`; "" when unset."""
    if raw and raw.upper() not in choices:
        raise SettingsError(f"{key}={raw!r} must be one of {', '.join(choices)}")
    return raw.upper()
