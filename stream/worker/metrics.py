"""Prometheus metrics for one worker: what the pipeline did, how fast, and what is live.

`WorkerMetrics` owns its own `CollectorRegistry` (tests and the in-process demo run
several workers side by side, and the default registry would collide). The worker calls
`observe_batch(outcome)` once per micro-batch and `observe_emit(seconds)` once its records
are confirmed; the load tester scrapes
`/metrics` and reads per-stage counts and means back with `quantiles_from_exposition`.

Percentiles from here are histogram estimates (interpolated inside a bucket, as Grafana's
`histogram_quantile` does), not the exact percentiles of raw latencies that the reports
compute with `stream.latency.latency_percentiles`; the two can differ by a bucket's width.

Units and cardinality: latencies are observed in seconds (Prometheus convention) from the
pipeline's milliseconds, once per decision, so percentiles are per transaction. Labels
hold only bounded values: fallback reasons become `timeout`/`error` and dead-letter
messages one of `DEAD_LETTER_CLASSES` (the raw message is in the DLQ record, not here).

Faust's own sensor (`faust.sensors.prometheus`) registers into any registry, but
`setup_prometheus_sensors` also mounts a page on Faust's web server, which our workers
disable. `attach_faust_sensor` therefore builds the same `PrometheusMonitor` itself, into
our registry, under the prefix `faust_`: its names are Faust's (millisecond histograms,
no `_seconds`; only `events_runtime_ms`, which promtool rejects, is kept in seconds), so they
stay out of the `fraudstream_` namespace our conventions cover.
"""

from __future__ import annotations

import collections
import functools
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.parser import text_string_to_metric_families

from fraudstream.models.names import ModelName

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from fraudstream.stream.worker.pipeline import BatchOutcome

STAGES = ("validate", "features", *ModelName, "ensemble", "threshold", "emit")
#: Seconds; dense between 1 and 100 ms, where the 100 ms p99 budget is decided.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
FALLBACK_REASONS = ("timeout", "error")
DEAD_LETTER_CLASSES = (
    "tombstone", "oversized", "invalid_json", "missing_field", "wrong_type", "out_of_range",
    "invalid_value", "invalid_text", "conflicting_duplicate", "internal", "other",
)  # fmt: skip

# First match wins; patterns follow the messages of features.transaction.InvalidTransaction.
_DEAD_LETTER_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("tombstone", r"^tombstone: null value"),
        ("oversized", r"exceeds the \d+-byte limit|is longer than"),
        ("invalid_json", r"^not valid JSON"),
        ("missing_field", r"got (None|'')$|must be given together"),
        ("wrong_type", r"^expected a JSON object|must be an? (non-empty string|number|boolean)"),
        ("out_of_range", r"must (lie in|lie within|be in|be finite)|between"),
        ("invalid_value", r"must be one of|must be ISO"),
        ("invalid_text", r"must be text encodable as UTF-8"),
        ("conflicting_duplicate", r"^conflicting_duplicate: "),
        ("internal", r"^[A-Z]\w*(Error|Exception)\b"),  # "KeyError: ..." from stage decide
    )
)


def classify_dead_letter(error: str) -> str:
    """A bounded class (one of `DEAD_LETTER_CLASSES`) for a dead letter's error message."""
    for kind, pattern in _DEAD_LETTER_RULES:
        if pattern.search(error):
            return kind
    return "other"


def classify_fallback(reason: str) -> str:
    """`timeout` or `error` for a GuardedScorer reason ("timeout after 50 ms", "error: ...")."""
    return "timeout" if reason.startswith("timeout") else "error"


class WorkerMetrics:
    """Every FraudStream metric of one worker, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.stage_latency = Histogram(
            "fraudstream_stage_latency_seconds", "Time per pipeline stage, per micro-batch.",
            ["stage"], registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.end_to_end_latency = Histogram(
            "fraudstream_end_to_end_latency_seconds",
            "From the record's produce timestamp to its decision.",
            registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.transactions = Counter(
            "fraudstream_transactions", "Transactions consumed (decided or dead-lettered).",
            registry=r,
        )  # fmt: skip
        self.decisions = Counter(
            "fraudstream_decisions", "Decisions by outcome.", ["decision"], registry=r
        )
        self.fallbacks = Counter(
            "fraudstream_model_fallbacks", "Transactions scored without a model's own score.",
            ["model", "reason"], registry=r,
        )  # fmt: skip
        self.dead_letters = Counter(
            "fraudstream_dead_letters", "Records sent to the dead-letter topic.",
            ["stage", "error"], registry=r,
        )  # fmt: skip
        self.feature_store_errors = Counter(
            "fraudstream_feature_store_errors",
            "Batches featurised without Redis history (all of it, or one cluster master's).",
            registry=r,
        )  # fmt: skip
        self.feature_store_resets = Counter(
            "fraudstream_feature_store_resets",
            "Times Redis was found to have lost the feature windows (restarted empty).",
            registry=r,
        )  # fmt: skip
        self.partial_history = Counter(
            "fraudstream_partial_history_decisions",
            "Decisions whose windows may miss events Redis lost in a reset.",
            registry=r,
        )  # fmt: skip
        self.degraded = Counter(
            "fraudstream_degraded_decisions", "Decisions made with a fallback or no history.",
            registry=r,
        )  # fmt: skip
        self.stand_in = Counter(
            "fraudstream_stand_in_decisions",
            "Decisions made by XGBoost alone because the record was already late (a backlog).",
            registry=r,
        )
        self.labels = Counter(
            "fraudstream_labels", "Late fraud labels received.", ["is_fraud"], registry=r
        )
        self.threshold = Gauge(
            "fraudstream_threshold", "Live score thresholds.", ["kind"], registry=r
        )
        self.threshold_version = Gauge(
            "fraudstream_threshold_version_info", "1 for the live threshold version.",
            ["version"], registry=r,
        )  # fmt: skip
        self.model_version = Gauge(
            "fraudstream_model_version_info", "1 for the live model version.", ["version"],
            registry=r,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            "fraudstream_consumer_lag", "Messages behind the end of each owned partition.",
            ["partition"], registry=r,
        )  # fmt: skip
        self.lost_logs = Counter(
            "fraudstream_broker_lost_log",
            "Times a partition's log ended before this worker's position: the broker lost "
            "records it had confirmed.", ["partition"], registry=r,
        )  # fmt: skip
        self.shared_threshold_errors = Counter(
            "fraudstream_shared_threshold_errors",
            "Failed reads or writes of the group's threshold in Redis (the pair in force stays).",
            registry=r,
        )
        self.score_psi = Gauge(
            "fraudstream_score_psi",
            "Population stability index of recent scores against the training scores.",
            registry=r,
        )
        self.rules_fired = Counter(
            "fraudstream_rule_fired",
            "Decisions a business rule or block/allow list matched, by its id and action (ids "
            "come from the rules file, so the labels are bounded by it).",
            ["rule", "action"], registry=r,
        )  # fmt: skip
        self.rules_decided = Counter(
            "fraudstream_rule_decided",
            "Decisions made by a business rule or list's action (first in precedence), by id.",
            ["rule", "action"], registry=r,
        )  # fmt: skip
        self.rules_invalid = Counter(
            "fraudstream_rules_invalid",
            "Times the rules file was found invalid (the last good rules stayed in force).",
            registry=r,
        )
        # labels() costs as much as observe(); cache the children used per decision.
        self._stage = {stage: self.stage_latency.labels(stage) for stage in STAGES}
        self._server: WSGIServer | None = None

    def observe_batch(self, outcome: BatchOutcome) -> None:
        """Record one decided micro-batch: its stage times once, each decision's outcome.

        Stage times are per batch (every decision of a batch shares them); end-to-end
        latency is per decision. Counters move once per label, not once per decision.
        """
        self.transactions.inc(len(outcome.decisions) + len(outcome.dead_letters))
        for stage, ms in outcome.stage_ms.items():
            child = self._stage.get(stage)
            if child is None:  # a model beyond the two known ones: still bounded
                child = self._stage[stage] = self.stage_latency.labels(stage)
            child.observe(ms / 1000.0)
        for decision in outcome.decisions:
            self.end_to_end_latency.observe(max(decision.latency_ms["end_to_end"], 0.0) / 1000.0)
        for action, count in collections.Counter(d.decision for d in outcome.decisions).items():
            self.decisions.labels(action).inc(count)
        fallbacks = collections.Counter(
            (model, classify_fallback(reason))
            for decision in outcome.decisions
            for model, reason in decision.fallbacks.items()
        )
        for (model, reason), count in fallbacks.items():
            self.fallbacks.labels(model, reason).inc(count)
        if degraded := sum(decision.degraded for decision in outcome.decisions):
            self.degraded.inc(degraded)
        if stand_ins := sum(decision.stand_in for decision in outcome.decisions):
            self.stand_in.inc(stand_ins)
        for letter in outcome.dead_letters:
            self.observe_dead_letter(letter.stage, letter.error)
        self.feature_store_errors.inc(outcome.feature_store_errors)  # inc(0) is a no-op
        self.feature_store_resets.inc(outcome.feature_store_resets)
        self.partial_history.inc(outcome.partial_history)
        self._observe_rules(outcome)

    def _observe_rules(self, outcome: BatchOutcome) -> None:
        for (rule_id, action), count in outcome.rules_fired.items():
            self.rules_fired.labels(rule_id, action).inc(count)
        for (rule_id, action), count in outcome.rules_decided.items():
            self.rules_decided.labels(rule_id, action).inc(count)

    def observe_invalid_rules(self, _why: str) -> None:
        """Count a rules file found invalid (the log line says why, once per content)."""
        self.rules_invalid.inc()

    def observe_emit(self, seconds: float) -> None:
        """Record how long one batch's records took to be confirmed by the broker."""
        self._stage["emit"].observe(seconds)

    def observe_dead_letter(self, stage: str, error: str) -> None:
        """Count one dead letter outside a batch (e.g. a bad label in `learn_from_labels`)."""
        self.dead_letters.labels(stage, classify_dead_letter(error)).inc()

    def set_thresholds(self, version: str, review: float, decline: float) -> None:
        self.threshold.labels("review").set(review)
        self.threshold.labels("decline").set(decline)
        self.threshold_version.clear()  # only the live version reads 1
        self.threshold_version.labels(version).set(1)

    def set_model_version(self, version: str) -> None:
        self.model_version.clear()
        self.model_version.labels(version).set(1)

    def observe_shared_threshold_error(self) -> None:
        self.shared_threshold_errors.inc()

    def set_score_psi(self, value: float) -> None:
        self.score_psi.set(value)

    def observe_labels(self, n_fraud: int, n_legit: int) -> None:
        self.labels.labels("true").inc(n_fraud)
        self.labels.labels("false").inc(n_legit)

    def set_lag(self, partition: int, lag: int) -> None:
        self.consumer_lag.labels(str(partition)).set(lag)

    def observe_lost_log(self, partition: int) -> None:
        self.lost_logs.labels(str(partition)).inc()

    def clear_lag(self) -> None:
        """Forget all partitions, e.g. on rebalance, so a revoked one leaves no stale lag."""
        self.consumer_lag.clear()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve `/metrics` on `addr` on a daemon thread; port 0 lets the OS pick. Returns
        the port.

        Binding port 0 and reading the bound port back avoids the race of probing for a
        free port and binding it later. The default address is this machine's only: the
        page tells anyone who reaches it about traffic and models (``0.0.0.0`` in a
        container, where the scraper is outside).
        """
        server, _thread = _start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        return int(server.server_port)

    @property
    def url(self) -> str:
        """``http://host:port/metrics`` as bound (the address the OS resolved `addr` to)."""
        if self._server is None:
            raise RuntimeError("metrics are not served; call serve() first")
        host, port = self._server.socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host  # an IPv6 literal
        return f"http://{shown}:{port}/metrics"

    def close(self) -> None:
        """Stop the HTTP server started by `serve`, if any."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def stage_quantiles_ms(self) -> dict[str, dict[str, float]]:
        """Histogram estimates of p50/p95/p99 (ms), count and mean (ms) per stage, plus
        `end_to_end` (see `quantiles_from_exposition`)."""
        text = self.exposition().decode()
        quantiles = quantiles_from_exposition(text, "fraudstream_stage_latency_seconds", "stage")
        end_to_end = quantiles_from_exposition(text, "fraudstream_end_to_end_latency_seconds")
        if "" in end_to_end:
            quantiles["end_to_end"] = end_to_end[""]
        return quantiles


def quantiles_from_exposition(
    text: str, metric: str, label: str | None = None, scale: float = 1000.0
) -> dict[str, dict[str, float]]:
    """Histogram estimates of percentiles of `metric` per value of `label`, from Prometheus
    text format: what Grafana and the alert rules show, not exact percentiles of raw values.

    `text` may concatenate several workers' scrapes: buckets are summed across them and
    across other labels, like `histogram_quantile(q, sum by (le, label) (...))`, including
    its linear interpolation inside a bucket. Values are multiplied by `scale` (seconds to
    ms by default); `count` is not scaled. With `label=None` the single key is "".
    A quantile falling in the +Inf bucket reports the largest finite bound; an empty
    histogram reports NaN.
    """
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    sums: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        if family.name != metric:
            continue
        for sample in family.samples:
            key = sample.labels.get(label, "") if label else ""
            if sample.name == f"{metric}_bucket":
                buckets[key][float(sample.labels["le"])] += sample.value
            elif sample.name == f"{metric}_sum":
                sums[key] += sample.value
    result = {}
    for key, cumulative in buckets.items():
        bounds = sorted(cumulative.items())
        count = bounds[-1][1] if bounds else 0.0
        result[key] = {
            f"p{round(q * 100)}": _bucket_quantile(q, bounds) * scale for q in (0.5, 0.95, 0.99)
        }
        result[key]["count"] = count
        result[key]["mean"] = sums[key] / count * scale if count else math.nan
    return result


def _bucket_quantile(q: float, bounds: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over sorted (upper bound, cumulative count) pairs."""
    if not bounds or bounds[-1][1] == 0:
        return math.nan
    rank = q * bounds[-1][1]
    lower, below = 0.0, 0.0
    for upper, cumulative in bounds:
        if cumulative >= rank and cumulative > below:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return lower


class SecondsFromMilliseconds(Histogram):
    """A histogram in seconds for code that observes milliseconds (Faust's sensor)."""

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        super().observe(amount / 1000.0, exemplar)


def attach_faust_sensor(app: Any, metrics: WorkerMetrics, prefix: str = "faust") -> None:
    """Install Faust's Prometheus monitor on `app`, writing into `metrics.registry`.

    Call before the worker starts (Faust adds `app.monitor` to its sensors at start), and
    once per registry. Adds commit, send, assignment and rebalance metrics named `faust_*`;
    the per-record ones are left out (see `PerBatchPrometheusMonitor`).
    """
    from faust.sensors.prometheus import FaustMetrics

    faust_metrics = FaustMetrics.create(metrics.registry, prefix)
    # Faust names one histogram `..._events_runtime_ms` and observes milliseconds; Prometheus'
    # linter (promtool) rejects the unit, so the same figure is kept in seconds.
    metrics.registry.unregister(faust_metrics.events_runtime_latency)
    runtime = SecondsFromMilliseconds(
        f"{prefix}_events_runtime_seconds", "Events runtime in seconds", registry=metrics.registry
    )
    monitor_class = _per_batch_monitor_class()
    app.monitor = monitor_class(metrics=faust_metrics._replace(events_runtime_latency=runtime))


@functools.cache
def _per_batch_monitor_class() -> type:
    """`PerBatchPrometheusMonitor`, built once, on first use (importing Faust's sensor is
    slow)."""
    from faust.sensors.prometheus import PrometheusMonitor

    class PerBatchPrometheusMonitor(PrometheusMonitor):
        """Faust's Prometheus monitor without its five hooks that run for every record.

        Faust calls them for each message and stream event of every topic (transactions and
        labels): with labelled counters and a gauge per record they cost the worker ~5 % of
        its CPU in the demo (py-spy, issue 9). FraudStream's own metrics count records,
        decisions and lag per batch; Faust's per-record counters stay at zero.
        """

        def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
            """Not per record."""

        def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
            """Not per record (no state: `on_stream_event_out` gets None)."""

        def on_stream_event_out(self, *args: Any, **kwargs: Any) -> None:
            """Not per record."""

        def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
            """Not per record."""

        def track_tp_end_offset(self, tp: Any, offset: int) -> None:
            """Not per record: `fraudstream_consumer_lag` has the lag."""

    return PerBatchPrometheusMonitor


def metric_names(metrics: WorkerMetrics) -> Iterable[str]:
    """Every sample name WorkerMetrics can expose (for checking dashboards and alerts)."""
    for family in metrics.registry.collect():
        if family.name.startswith("fraudstream_"):
            yield from _sample_names(family.name, family.type)


def _sample_names(name: str, kind: str) -> Iterable[str]:
    if kind == "counter":
        yield f"{name}_total"
    elif kind == "histogram":
        yield from (f"{name}_bucket", f"{name}_sum", f"{name}_count")
    else:
        yield name
