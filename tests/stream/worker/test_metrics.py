"""Worker metrics: what a batch records, bounded labels, percentiles, exposition, deploy/."""

from __future__ import annotations

import collections
import json
import math
import re
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.sensors.prometheus import PrometheusMonitor
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from fraudstream.features.pseudonyms import IdPseudonyms, new_id_hash_key
from fraudstream.stream.contract import DeadLetter, Decision
from fraudstream.stream.worker.metrics import (
    DEAD_LETTER_CLASSES,
    WorkerMetrics,
    attach_faust_sensor,
    classify_dead_letter,
    classify_fallback,
    metric_names,
    quantiles_from_exposition,
)
from fraudstream.stream.worker.pipeline import BatchOutcome
from tests.support.decisions import a_decision
from tests.support.promtool import needs_promtool, promtool

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
IDS = IdPseudonyms(new_id_hash_key())


STAGE_MS = {"validate": 0.2, "features": 3.0, "xgboost": 4.0, "isolation_forest": 2.0,
            "ensemble": 0.1, "threshold": 0.01}  # fmt: skip


def decision(outcome: str, end_to_end_ms: float, **extra: Any) -> Decision:
    latency = {**STAGE_MS, "end_to_end": end_to_end_ms}
    return a_decision(decision=outcome, latency_ms=latency, threshold_version="v1-static",
                      model_version="v1", **extra)  # fmt: skip


@pytest.fixture
def metrics() -> Iterator[WorkerMetrics]:
    worker = WorkerMetrics()
    yield worker
    worker.close()


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def a_batch() -> BatchOutcome:
    return BatchOutcome(
        decisions=[
            decision("approve", 12.0),
            decision("approve", 30.0),
            decision("decline", 80.0, fallbacks={"xgboost": "timeout after 50 ms"}, degraded=True),
            decision(
                "review",
                140.0,
                degraded=True,
                fallbacks={
                    "isolation_forest": "error: ValueError: bad shape; used the card's last score",
                    "xgboost": "timeout after 50 ms",
                },
            ),  # fmt: skip
        ],
        dead_letters=[
            DeadLetter.of(b"{", "not valid JSON: Expecting value: line 1 column 1", "validate",
                          IDS),
            DeadLetter.of(b"{}", "field 'amount' must be a number, got None", "validate", IDS),
            DeadLetter.of(b"{}", "KeyError: 'weights'", "decide", IDS),
        ],
        feature_store_errors=1,
        fallbacks=[("xgboost", "timeout after 50 ms")],
        stage_ms=dict(STAGE_MS),
        rules_fired=collections.Counter({("card-testing", "decline"): 2, ("vip", "allow"): 1}),
        rules_decided=collections.Counter({("card-testing", "decline"): 1}),
    )


def observe_a_delivered_batch(metrics: WorkerMetrics) -> None:
    metrics.observe_batch(a_batch())
    metrics.observe_emit(0.004)


def test_a_batch_is_counted_per_transaction(metrics: WorkerMetrics) -> None:
    observe_a_delivered_batch(metrics)

    assert sample(metrics, "fraudstream_transactions_total") == 7  # 4 decisions + 3 letters
    assert sample(metrics, "fraudstream_decisions_total", decision="approve") == 2
    assert sample(metrics, "fraudstream_decisions_total", decision="decline") == 1
    assert sample(metrics, "fraudstream_decisions_total", decision="review") == 1
    assert sample(metrics, "fraudstream_degraded_decisions_total") == 2
    assert sample(metrics, "fraudstream_feature_store_errors_total") == 1
    fallback = "fraudstream_model_fallbacks_total"
    assert sample(metrics, fallback, model="xgboost", reason="timeout") == 2
    assert sample(metrics, fallback, model="isolation_forest", reason="error") == 1
    letters = "fraudstream_dead_letters_total"
    assert sample(metrics, letters, stage="validate", error="invalid_json") == 1
    assert sample(metrics, letters, stage="validate", error="missing_field") == 1
    assert sample(metrics, letters, stage="decide", error="internal") == 1
    rules = "fraudstream_rule_fired_total"
    assert sample(metrics, rules, rule="card-testing", action="decline") == 2
    assert sample(metrics, rules, rule="vip", action="allow") == 1
    assert sample(metrics, "fraudstream_rule_decided_total", rule="card-testing",
                  action="decline") == 1  # fmt: skip


def test_end_to_end_is_observed_per_decision_and_stages_once_per_batch(
    metrics: WorkerMetrics,
) -> None:
    observe_a_delivered_batch(metrics)

    e2e = "fraudstream_end_to_end_latency_seconds"
    assert sample(metrics, f"{e2e}_count") == 4
    assert sample(metrics, f"{e2e}_sum") == pytest.approx((12 + 30 + 80 + 140) / 1000)
    assert sample(metrics, f"{e2e}_bucket", le="0.1") == 3
    stage = "fraudstream_stage_latency_seconds"
    for name in ("validate", "features", "xgboost", "isolation_forest", "ensemble", "threshold"):
        assert sample(metrics, f"{stage}_count", stage=name) == 1
    assert sample(metrics, f"{stage}_sum", stage="features") == pytest.approx(0.003)
    assert sample(metrics, f"{stage}_sum", stage="emit") == pytest.approx(0.004)


def test_stage_quantiles_interpolate_within_buckets(metrics: WorkerMetrics) -> None:
    observe_a_delivered_batch(metrics)

    quantiles = metrics.stage_quantiles_ms()

    assert quantiles["features"]["count"] == 1
    assert quantiles["features"]["mean"] == pytest.approx(3.0)
    # One batch at 3 ms, in the (2, 5] ms bucket: p50 is its midpoint.
    assert quantiles["features"]["p50"] == pytest.approx(3.5)
    # e2e: 12 (10-15], 30 (25-35], 80 (75-100], 140 (100-150]; rank 2 ends bucket (25, 35].
    assert quantiles["end_to_end"]["p50"] == pytest.approx(35.0)


def test_gauges_hold_only_the_live_versions(metrics: WorkerMetrics) -> None:
    metrics.set_thresholds("v1-static", review=0.4, decline=0.9)
    metrics.set_thresholds("v1-online-3", review=0.35, decline=0.85)
    metrics.set_model_version("v1")
    metrics.set_model_version("v2")
    metrics.set_lag(0, 120)
    metrics.set_lag(3, 7)
    metrics.observe_labels(n_fraud=2, n_legit=40)

    assert sample(metrics, "fraudstream_threshold", kind="review") == 0.35
    assert sample(metrics, "fraudstream_threshold", kind="decline") == 0.85
    info = "fraudstream_threshold_version_info"
    assert sample(metrics, info, version="v1-online-3") == 1
    assert sample(metrics, info, version="v1-static") is None
    assert sample(metrics, "fraudstream_model_version_info", version="v2") == 1
    assert sample(metrics, "fraudstream_model_version_info", version="v1") is None
    assert sample(metrics, "fraudstream_consumer_lag", partition="0") == 120
    assert sample(metrics, "fraudstream_consumer_lag", partition="3") == 7
    assert sample(metrics, "fraudstream_labels_total", is_fraud="true") == 2
    assert sample(metrics, "fraudstream_labels_total", is_fraud="false") == 40
    metrics.clear_lag()
    assert sample(metrics, "fraudstream_consumer_lag", partition="0") is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("payload of 70000 bytes exceeds the 65536-byte limit", "oversized"),
        ("field 'txn_id' is longer than 128 characters", "oversized"),
        ("not valid JSON: Expecting ',' delimiter: line 1 column 9", "invalid_json"),
        ("expected a JSON object, got list", "wrong_type"),
        ("field 'card_id' must be a non-empty string, got None", "missing_field"),
        ("field 'card_id' must be a non-empty string, got ''", "missing_field"),
        ("field 'card_id' must be a non-empty string, got a value of type int", "wrong_type"),
        ("field 'txn_id' must be a non-empty string, got 17", "wrong_type"),
        ("field 'amount' must be a number, got '12.5'", "wrong_type"),
        ("field 'is_fraud' must be a boolean, got 'yes'", "wrong_type"),
        ("field 'amount' must be finite, got nan", "out_of_range"),
        ("field 'amount' must be in [0, 1e+06], got -5.0", "out_of_range"),
        ("field 'lat' must lie in [-90.0, 90.0], got 91.0", "out_of_range"),
        ("field 'event_time' must be epoch seconds between 2000 and 2100, got 5", "out_of_range"),
        ("field 'channel' must be one of ('pos', 'web'), got 'fax'", "invalid_value"),
        ("'currency' must be ISO 4217 (3 letters) and 'country' ...", "invalid_value"),
        ("'lat' and 'lon' must be given together or not at all", "missing_field"),
        ("tombstone: null value", "tombstone"),
        ("field 'txn_id' must be text encodable as UTF-8, got '\\ud800' (a lone surrogate)",
         "invalid_text"),
        ("field 'card_id' must be text encodable as UTF-8, got a string of 2 characters "
         "(a lone surrogate)", "invalid_text"),
        ("KeyError: 'weights'", "internal"),
        ("something nobody anticipated", "other"),
    ],
)
def test_dead_letter_errors_fall_into_a_bounded_set(error: str, expected: str) -> None:
    assert classify_dead_letter(error) == expected
    assert expected in DEAD_LETTER_CLASSES


def test_fallback_reasons_are_timeout_or_error() -> None:
    assert classify_fallback("timeout after 50 ms") == "timeout"
    assert classify_fallback("timeout after 50 ms; used the card's last score") == "timeout"
    assert classify_fallback("error: RuntimeError: model file vanished") == "error"


KNOWN_HISTOGRAM = """\
# HELP demo_seconds Demo.
# TYPE demo_seconds histogram
demo_seconds_bucket{stage="a",le="0.01"} 50
demo_seconds_bucket{stage="a",le="0.02"} 90
demo_seconds_bucket{stage="a",le="0.1"} 100
demo_seconds_bucket{stage="a",le="+Inf"} 100
demo_seconds_sum{stage="a"} 1.2
demo_seconds_count{stage="a"} 100
demo_seconds_bucket{stage="b",le="0.01"} 0
demo_seconds_bucket{stage="b",le="0.02"} 0
demo_seconds_bucket{stage="b",le="0.1"} 0
demo_seconds_bucket{stage="b",le="+Inf"} 4
demo_seconds_sum{stage="b"} 2.0
demo_seconds_count{stage="b"} 4
"""


def test_quantiles_from_exposition_match_histogram_quantile() -> None:
    quantiles = quantiles_from_exposition(KNOWN_HISTOGRAM, "demo_seconds", "stage")

    a = quantiles["a"]
    assert a["p50"] == pytest.approx(10.0)  # rank 50 ends the first bucket
    assert a["p95"] == pytest.approx(20.0 + 80.0 * 5 / 10)  # (20, 100] ms holds ranks 91-100
    assert a["p99"] == pytest.approx(20.0 + 80.0 * 9 / 10)
    assert (a["count"], a["mean"]) == (100, pytest.approx(12.0))
    # Everything beyond the last finite bound: report that bound, as Prometheus does.
    assert quantiles["b"]["p99"] == pytest.approx(100.0)


def test_quantiles_merge_several_workers_scrapes() -> None:
    merged = quantiles_from_exposition(KNOWN_HISTOGRAM * 2, "demo_seconds", "stage", scale=1.0)
    assert merged["a"]["count"] == 200
    assert merged["a"]["p50"] == pytest.approx(0.01)
    assert quantiles_from_exposition(KNOWN_HISTOGRAM, "demo_seconds")[""]["count"] == 104


def test_an_empty_histogram_reports_nan(metrics: WorkerMetrics) -> None:
    text = metrics.exposition().decode()
    e2e = quantiles_from_exposition(text, "fraudstream_end_to_end_latency_seconds")[""]
    assert e2e["count"] == 0 and math.isnan(e2e["p99"])


def test_serve_on_port_zero_exposes_metrics_on_this_machine_only(metrics: WorkerMetrics) -> None:
    observe_a_delivered_batch(metrics)
    port = metrics.serve(0)

    assert port > 0
    assert metrics.url == f"http://127.0.0.1:{port}/metrics"  # the default bind, as bound
    with urllib.request.urlopen(metrics.url, timeout=5) as response:
        body = response.read().decode()
    assert "fraudstream_end_to_end_latency_seconds_bucket" in body


def test_the_url_names_the_address_really_bound(metrics: WorkerMetrics) -> None:
    port = metrics.serve(0, addr="0.0.0.0")  # every interface, as in a container

    assert metrics.url == f"http://0.0.0.0:{port}/metrics"
    with urllib.request.urlopen(metrics.url, timeout=5) as response:
        assert response.status == 200


def a_full_exposition(metrics: WorkerMetrics) -> str:
    observe_a_delivered_batch(metrics)
    metrics.set_thresholds("v1-static", 0.4, 0.9)
    metrics.set_model_version("v1")
    metrics.set_lag(0, 5)
    metrics.observe_lost_log(1)
    metrics.observe_labels(1, 9)
    metrics.observe_invalid_rules("rules.yaml:3: unknown feature")
    return metrics.exposition().decode()


def test_metric_names_follow_prometheus_conventions(metrics: WorkerMetrics) -> None:
    families = [
        family
        for family in text_string_to_metric_families(a_full_exposition(metrics))
        # The text parser turns prometheus_client's `_created` timestamps into families.
        if family.name.startswith("fraudstream") and not family.name.endswith("_created")
    ]

    assert len(families) == 22  # 2 histograms, 15 counters, 5 gauges
    for family in families:
        assert family.name.startswith("fraudstream_")
        assert family.documentation, family.name
        if family.type == "counter":
            names = {s.name for s in family.samples if not s.name.endswith("_created")}
            assert names == {f"{family.name}_total"}
        if family.type == "histogram":
            assert family.name.endswith("_seconds")


@needs_promtool
def test_promtool_accepts_the_exposition(metrics: WorkerMetrics) -> None:
    promtool("check", "metrics", stdin=a_full_exposition(metrics))


@needs_promtool
@pytest.mark.parametrize(
    "command",
    [
        ["check", "config", "prometheus/prometheus.yml"],
        ["check", "rules", "prometheus/alerts.yml"],
        ["test", "rules", "prometheus/alerts_test.yml"],
    ],
)
def test_promtool_accepts_the_deploy_files(command: list[str]) -> None:
    promtool(*command, cwd=DEPLOY)


PROMQL_FUNCTIONS = {
    "histogram_quantile", "sum", "rate", "by", "max", "count", "increase", "deriv",
    "clamp_min", "ignoring", "group_left", "up", "le", "without",
}  # fmt: skip


def referenced_metrics(expr: str) -> set[str]:
    """Identifiers in a PromQL expression minus labels, functions and range variables."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|ignoring|on)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges, including [$__rate_interval]
    return {
        word
        for word in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr)
        if word not in PROMQL_FUNCTIONS
    }


def test_dashboard_uses_only_metrics_the_worker_defines(metrics: WorkerMetrics) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "fraudstream-dashboard.json").read_text())
    defined = set(metric_names(metrics))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]

    assert len(exprs) >= 10
    used = set().union(*(referenced_metrics(expr) for expr in exprs))
    assert used <= defined, used - defined
    # And every metric we define has a panel.
    assert used == {name for name in defined if not name.endswith(("_sum", "_count"))}


def test_alert_rules_use_only_metrics_the_worker_defines(metrics: WorkerMetrics) -> None:
    text = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    exprs = re.findall(r"expr: \|\n((?:\s{10}.*\n)+)|expr: (.+)\n", text)
    used = set().union(*(referenced_metrics(block or line) for block, line in exprs))

    assert "fraudstream_end_to_end_latency_seconds_bucket" in used
    assert used - {"up"} <= set(metric_names(metrics)), used - set(metric_names(metrics))


def test_faust_sensor_writes_into_the_worker_registry(metrics: WorkerMetrics) -> None:
    import faust

    with tempfile.TemporaryDirectory() as datadir:
        app = faust.App("metrics-test", broker="kafka://localhost:1", datadir=datadir)
        attach_faust_sensor(app, metrics)

        assert isinstance(app.monitor, PrometheusMonitor)
        assert b"faust_messages_received_total" in metrics.exposition()


def test_faust_sensor_skips_the_per_record_hooks(metrics: WorkerMetrics) -> None:
    import faust

    with tempfile.TemporaryDirectory() as datadir:
        app = faust.App("metrics-test", broker="kafka://localhost:1", datadir=datadir)
        attach_faust_sensor(app, metrics)
        tp = TP("transactions", 0)
        message = SimpleNamespace(time_in=None)
        app.monitor.on_message_in(tp, 5, message)
        assert app.monitor.on_stream_event_in(tp, 5, object(), object()) is None
        app.monitor.track_tp_end_offset(tp, 9)
        app.monitor.on_commit_completed(app.consumer, app.monitor.on_commit_initiated(None))

        exposition = metrics.exposition()
        assert b"faust_messages_received_total 0.0" in exposition
        assert b"faust_consumer_commit_latency_count 1.0" in exposition
