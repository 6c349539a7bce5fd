"""The demo, end to end on small numbers: nothing lost, and the figures it promises present."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.demo import MALFORMED_RECORDS, DemoOptions, run_demo
from fraudstream.stream.tools.run_files import DECISIONS_FILE
from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from tests.support.worker_runs import setup_run


@pytest.fixture
def demo_settings(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> Settings:  # fmt: skip
    """The session's servers and registry as settings, also in the environment: the
    demo's workers read the same variables."""
    env, _ = setup_run(broker, redis_server, trained_registry, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


@pytest.mark.integration
def test_demo_decides_everything_and_reports_cpu_per_process(
    demo_settings: Settings, tmp_path: Path
) -> None:
    options = DemoOptions(transactions=400, rate=200.0, out=tmp_path / "demo")

    summary = run_demo(demo_settings, options)

    assert (summary["produced"], summary["decided"]) == (400, 400)
    assert summary["dead_lettered"] == len(MALFORMED_RECORDS)
    assert summary["partitions"] == 4, "the session broker's topics: the settings decide"
    cpu = summary["cpu_s_per_1000_txn"]
    assert list(cpu) == ["worker", "broker", "redis", "producer", "measurer"]
    assert all(0 < cpu[role] < 1000 for role in ("worker", "producer", "measurer"))
    assert cpu["broker"] is None and cpu["redis"] is None, "the session's servers, not ours"
    assert summary["load_average"]["cores"] >= 1
    windows = summary["e2e_p99_ms_by_10s_window"]
    assert windows and all(p99 is None or p99 >= 0 for p99 in windows)
    assert 0.0 <= summary["stand_in_share"] <= 1.0
    # The run is held against the settings' limits (defaults: 2 % review, 0.1 % FPR).
    assert (summary["quality"]["review_capacity"], summary["quality"]["max_fpr"]) == (0.02, 0.001)
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "## Where the CPU went" in report
    stream = generate_stream(GeneratorConfig(options.transactions, seed=options.seed))
    _assert_footprint_is_sane(summary["footprint"], {txn.card_id for txn in stream.transactions})


def _assert_footprint_is_sane(footprint: dict[str, Any], cards: set[str]) -> None:
    """What `fraudstream capacity` reads from the run: present, positive and finite."""
    redis, topics = footprint["redis"], footprint["topics"]
    assert footprint["transactions"] == 400
    assert redis["cards"] == len(cards), "every card of the run measured, no other run's"
    assert redis["card_events"] >= 400 * 0.5, "the windows keep most of 60 days' events"
    for name in ("commands_per_txn", "net_input_bytes_per_txn", "card_bytes_per_event",
                 "merchant_bytes_per_event", "txn_bytes_per_txn", "txn_key_ttl_s"):  # fmt: skip
        assert 0 < redis[name] < 1e9 and math.isfinite(redis[name]), name
    assert redis["card_bytes_fixed"] >= 0
    assert topics["transactions"]["records_per_txn"] >= 1.0, "400 plus the malformed ones"
    assert topics["decisions"]["records"] == 400
    assert topics["labels"]["records_per_txn"] == 1.0, "the replay sends every label"
    for role in ("transactions", "decisions", "labels"):
        assert 50 < topics[role]["bytes_per_record"] < 5000, role


@pytest.mark.integration
def test_a_two_worker_demo_reports_each_workers_partitions_and_decisions(
    demo_settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "demo"

    summary = run_demo(
        demo_settings, DemoOptions(transactions=2000, rate=500.0, workers=2, out=out)
    )

    per_worker = json.loads((out / "summary.json").read_text())["per_worker"]
    assert per_worker == summary["per_worker"]
    assert [row["name"] for row in per_worker] == ["worker-1", "worker-2"]
    owned = [set(row["partitions"]) for row in per_worker]
    assert all(owned) and not owned[0] & owned[1], per_worker
    assert owned[0] | owned[1] == set(range(summary["partitions"])), per_worker
    decision_records = len((out / DECISIONS_FILE).read_text().splitlines())
    assert sum(row["decisions"] for row in per_worker) == decision_records >= 2000
    assert all(row["decisions_per_s"] > 0 for row in per_worker), per_worker
