"""The load test measures correctly: everything sent is counted, the figures are coherent.

Speed is not asserted (it depends on the machine); correctness of the counting is: every
transaction produced in a step is decided exactly once in the figures, for the pipeline and
for both baselines, and the report files exist with the documented keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudstream.features.pseudonyms import new_id_hash_key
from fraudstream.stream.latency import latency_percentiles
from fraudstream.stream.settings import Settings
from fraudstream.stream.tools.loadtest import LoadTestOptions, parse_ramp, run_loadtest
from fraudstream.stream.tools.loadtest_report import (
    is_sustained,
    stop_reason,
    summarize_system,
    write_loadtest_report,
)
from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from fraudstream.stream.tools.workers import partitions_per_topic
from tests.support.signing import TEST_SIGNING_KEY

STEP_KEYS = {"tps_target", "tps_achieved", "e2e_latency_ms", "lag_end", "stages_ms"}
REPORT_KEYS = {
    "steps", "max_sustainable_tps", "budget_ms", "baselines", "ratios",
    "raw_aiokafka_consume_tps", "workers", "machine", "date",
}  # fmt: skip


def _settings(broker: EmbeddedBroker, redis: EmbeddedRedis, registry: Path) -> Settings:
    # Database 15: other integration tests use low numbers on the shared Redis.
    return Settings(
        kafka_url=broker.url, redis_url=redis.url.replace("/0", "/15"), registry_path=registry,
        signing_key=TEST_SIGNING_KEY,
        id_hash_key=new_id_hash_key(),  # named services: the run's workers need one
    )  # fmt: skip


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


def _step(tps: float, p99: float | None, lag_end: int = 0, decided_share: float = 1.0) -> dict:
    produced = round(tps * 10)
    latency = latency_percentiles([] if p99 is None else [p99])
    return {"tps_target": tps, "produced": produced, "decided": round(decided_share * produced),
            "lag_end": lag_end, "e2e_latency_ms": latency}  # fmt: skip


def _first_stop(steps: list[dict], budget_ms: float, need_latency: bool = True) -> int | None:
    return next(
        (i for i, step in enumerate(steps) if stop_reason(step, budget_ms, need_latency)), None
    )


def test_a_ramp_stops_after_the_first_step_over_ten_times_the_budget() -> None:
    # 150 ms and 900 ms are past the budget but within 10x: the ramp goes on.
    ramp = [_step(500, 20), _step(1000, 150), _step(1500, 900), _step(2000, 1200), _step(2500, 50)]
    assert _first_stop(ramp, budget_ms=100) == 3
    assert stop_reason(ramp[3], 100) == "p99 1,200 ms > 10 × 100 ms budget"
    summary = summarize_system(ramp[:4], ramp_length=5, budget_ms=100)
    assert summary["stopped_after_tps"] == 2000
    assert summary["stop_reason"] == stop_reason(ramp[3], 100)
    assert summary["max_sustainable_tps"] == 500
    # A step that stops the ramp is never one that counts as sustained.
    assert not is_sustained(ramp[3], 100)


def test_noop_stops_when_it_plainly_did_not_keep_up() -> None:
    """No latency: a backlog over 10 x the allowed 0.5 s of traffic, or under 99 % decided."""
    assert stop_reason(_step(1000, None, lag_end=5000), 100, need_latency=False) is None
    backlog = stop_reason(_step(1000, None, lag_end=5001), 100, need_latency=False)
    assert backlog is not None and backlog.startswith("backlog 5,001 records")
    undecided = stop_reason(_step(1000, None, decided_share=0.98), 100, need_latency=False)
    assert undecided is not None and undecided.startswith("decided 9,800/10,000")
    # The same keep-up rules stop a system whose p99 looks fine over what it decided.
    assert stop_reason(_step(1000, 5, decided_share=0.5), 100) is not None


def test_a_system_that_never_breaks_runs_the_whole_ramp() -> None:
    ramp = [_step(tps, 40, lag_end=100) for tps in (500, 1000, 1500)]
    assert _first_stop(ramp, budget_ms=100) is None
    noop = [_step(tps, None, lag_end=100) for tps in (500, 1000, 1500)]
    assert _first_stop(noop, budget_ms=100, need_latency=False) is None
    summary = summarize_system(ramp, ramp_length=3, budget_ms=100)
    assert summary["stopped_after_tps"] is None and summary["stop_reason"] is None
    assert summary["max_sustainable_tps"] == 1500


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
    assert 0.0 <= step["stand_in_share"] <= 1.0
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


@pytest.mark.integration
def test_a_ramp_stops_per_system_and_still_reports_every_ratio(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path, tmp_path: Path
) -> None:
    """A 0.001 ms budget: passthrough's first step is over 10 x budget, noop runs both."""
    out = tmp_path / "s.json"
    options = LoadTestOptions(ramp="100:100:200", duration_s=2, budget_ms=0.001,
                              baseline="passthrough", compare_with=("noop",),
                              session_timeout_s=2.0, raw_consume_records=0, out=out)  # fmt: skip
    result = run_loadtest(_settings(broker, redis_server, trained_registry), options)
    write_loadtest_report(result, out)

    report = json.loads(out.read_text())
    [step] = report["steps"]  # the 200/s step never ran and is not listed
    assert step["decided"] == step["produced"] == 200
    assert report["stopped_after_tps"] == 100
    assert report["stop_reason"].endswith("> 10 × 0.001 ms budget")
    noop = report["baselines"]["noop"]
    assert [s["decided"] for s in noop["steps"]] == [200, 400]
    assert noop["stopped_after_tps"] is None and noop["stop_reason"] is None
    assert report["ratios"] == {"noop": None}  # passthrough sustained nothing
    assert "Ramp stopped after 100/s: p99" in (tmp_path / "s.md").read_text()


def test_runs_make_one_partition_per_worker_on_the_embedded_broker_only() -> None:
    embedded, external = Settings(), Settings(kafka_url="kafka://kafka:9092", partitions=8)

    assert partitions_per_topic(embedded, workers=1) == 1
    assert partitions_per_topic(embedded, workers=3) == 3
    assert partitions_per_topic(external, workers=2) == 8
    assert partitions_per_topic(embedded, workers=2, asked=6) == 6
    assert partitions_per_topic(external, workers=2, asked=6) == 6
