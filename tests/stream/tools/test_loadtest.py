"""The load test measures correctly: everything sent is counted, the figures are coherent.

Speed is not asserted (it depends on the machine); correctness of the counting is: every
transaction produced in a step is decided exactly once in the figures, for the pipeline and
for both baselines, and the report files exist with the documented keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudstream.stream.latency import latency_percentiles
from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.loadtest import LoadTestOptions, parse_ramp, run_loadtest
from fraudstream.stream.tools.loadtest_report import is_sustained, write_loadtest_report
from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis

STEP_KEYS = {"tps_target", "tps_achieved", "e2e_latency_ms", "lag_end", "stages_ms"}
REPORT_KEYS = {
    "steps", "max_sustainable_tps", "budget_ms", "baselines", "ratios",
    "raw_aiokafka_consume_tps", "workers", "machine", "date",
}  # fmt: skip


def _settings(broker: EmbeddedBroker, redis: EmbeddedRedis, registry: Path) -> Settings:
    # Database 15: other integration tests use low numbers on the shared Redis.
    return Settings(
        kafka_url=broker.url, redis_url=redis.url.replace("/0", "/15"), registry_path=registry
    )


def _assert_every_transaction_counted(step: dict, with_latency: bool) -> None:
    assert step.keys() >= STEP_KEYS
    assert step["tps_achieved"] > 0
    assert step["decided"] == step["produced"] == round(step["tps_target"] * 4)
    assert step["lag_end"] >= 0
    latency = step["e2e_latency_ms"]
    if with_latency:
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    else:
        assert set(latency.values()) == {None}


def test_ramp_parses_to_inclusive_steps() -> None:
    assert parse_ramp("500:500:2500") == [500, 1000, 1500, 2000, 2500]
    assert parse_ramp("100:300:500") == [100, 400]
    with pytest.raises(ValueError, match="START:STEP:MAX"):
        parse_ramp("500-2500")


def test_a_step_with_a_backlog_is_not_sustained() -> None:
    step = {"tps_target": 1000.0, "produced": 10_000, "decided": 10_000, "lag_end": 0,
            "e2e_latency_ms": latency_percentiles([5.0, 8.0, 90.0])}  # fmt: skip
    assert is_sustained(step, budget_ms=100)
    assert not is_sustained({**step, "lag_end": 600}, budget_ms=100)
    assert not is_sustained(step, budget_ms=50)
    assert is_sustained({**step, "e2e_latency_ms": latency_percentiles([])}, 50, need_latency=False)


@pytest.mark.integration
def test_pipeline_load_test_decides_every_transaction_and_writes_the_report(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lt.json"
    options = LoadTestOptions(tps=200, duration_s=4, out=out, session_timeout_s=2.0,
                              raw_consume_records=2000)  # fmt: skip
    result = run_loadtest(_settings(broker, redis_server, trained_registry), options)
    paths = write_loadtest_report(result, out)

    assert result.keys() >= REPORT_KEYS
    [step] = result["steps"]
    _assert_every_transaction_counted(step, with_latency=True)
    # The per-stage breakdown comes from the worker's own histograms.
    assert {"features", "xgboost", "isolation_forest", "emit"} <= set(step["stages_ms"])
    assert all(value >= 0 for value in step["stages_ms"].values())
    assert result["raw_aiokafka_consume_tps"] > 0
    assert result["machine"]["cpu_count"] >= 1
    # Every process we started or ran is charged; the fixtures' servers are not ours.
    cpu = step["cpu_s_per_1000_txn"]
    assert list(cpu) == ["worker", "broker", "redis", "producer", "measurer"]
    assert all(0 < cpu[role] < 1000 for role in ("worker", "producer", "measurer"))
    assert cpu["broker"] is None and cpu["redis"] is None
    assert step["load_average"]["cores"] >= 1
    windows = step["e2e_p99_ms_by_10s_window"]
    assert windows == [step["e2e_latency_ms"]["p99"]]  # a 4 s step fits one 10 s window
    assert json.loads(out.read_text())["steps"][0]["tps_target"] == 200
    assert [p.name for p in paths] == ["lt.json", "lt.md", "lt_latency.png", "lt_stages.png"]
    assert all(p.stat().st_size > 0 for p in paths)


@pytest.mark.integration
def test_baselines_process_every_transaction(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path, tmp_path: Path
) -> None:
    options = LoadTestOptions(tps=300, duration_s=4, baseline="passthrough",
                              compare_with=("noop",), session_timeout_s=2.0,
                              raw_consume_records=0, out=tmp_path / "b.json")  # fmt: skip
    result = run_loadtest(_settings(broker, redis_server, trained_registry), options)

    assert result["system"] == "passthrough"
    _assert_every_transaction_counted(result["steps"][0], with_latency=True)
    _assert_every_transaction_counted(result["baselines"]["noop"]["steps"][0], False)
    assert result["baselines"]["noop"]["max_sustainable_tps"] == 300
    assert set(result["ratios"]) == {"noop"}
    write_loadtest_report(result, tmp_path / "b.json")
    assert "## noop" in (tmp_path / "b.md").read_text()
