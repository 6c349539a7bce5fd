"""The capacity plan's arithmetic on hand-made figures, its inputs' errors, and its two outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from fraudstream.stream.cli import main
from fraudstream.stream.tools.capacity import (
    GB,
    GIB,
    PLAN_ROWS,
    Assumptions,
    CapacityInputError,
    Measured,
    Prices,
    format_markdown,
    plan,
    plan_figures,
)
from fraudstream.stream.tools.capacity_inputs import read_measured

DAY = 86_400


def _measured(**changes: Any) -> Measured:
    figures: dict[str, Any] = {
        "worker_tps": 1_000.0, "within_budget": True, "p99_ms": 80.0, "budget_ms": 100.0,
        "worker_cpu_s_per_txn": 0.001, "redis_cpu_s_per_txn": 0.0001,
        "redis_commands_per_txn": 10.0, "card_bytes_fixed": 100.0, "card_bytes_per_event": 50.0,
        "merchant_bytes_per_event": 20.0, "txn_bytes_per_txn": 200.0, "txn_key_ttl_s": 10 * DAY,
        "card_retention_s": 30 * DAY, "merchant_retention_s": 37 * DAY,
        "topic_bytes_per_txn": {"transactions": 300.0, "decisions": 500.0},
    }  # fmt: skip
    return Measured(**{**figures, **changes})


def test_peak_at_1000_per_worker_with_2x_headroom_needs_100_workers_and_partitions() -> None:
    result = plan(50_000, 11_574, _measured())

    assert result.design_tps == 100_000
    assert (result.workers_avg, result.workers_peak, result.workers_design) == (12, 50, 100)
    assert result.partitions == 100, "partitions for the spike: adding them later moves cards"
    assert result.reference_shards_at_peak == 50, "issue 13's 1,000 records per shard"
    assert result.worker_cores_busy_design == pytest.approx(100.0)
    assert result.worker_vcpus == 100.0


def test_redis_memory_is_cards_times_bytes_per_card_plus_retained_merchant_and_txn_keys() -> None:
    assumptions = Assumptions(cards=1_000_000)
    result = plan(50_000, 11_574, _measured(), assumptions)

    events_per_card = 11_574 * 30 * DAY / 1_000_000
    assert result.events_per_card == pytest.approx(events_per_card)
    assert result.bytes_per_card == pytest.approx(100 + 50 * events_per_card)
    assert result.redis_gib["cards"] * GIB == pytest.approx(1_000_000 * result.bytes_per_card)
    assert result.redis_gib["merchants"] * GIB == pytest.approx(11_574 * 37 * DAY * 20)
    assert result.redis_gib["txn_keys"] * GIB == pytest.approx(11_574 * 10 * DAY * 200)
    parts = ("cards", "merchants", "txn_keys")
    assert result.redis_gib["total"] == pytest.approx(sum(result.redis_gib[p] for p in parts))
    assert result.redis_shards_for_memory == math.ceil(result.redis_gib["total"] / 25)


def test_redis_shards_are_the_larger_of_cpu_and_memory() -> None:
    # 100,000/s × 0.1 ms of Redis CPU = 10 cores; at half load each, 20 shards.
    small = _measured(card_bytes_fixed=0.0, card_bytes_per_event=0.001,
                      merchant_bytes_per_event=0.001, txn_bytes_per_txn=0.001)  # fmt: skip
    result = plan(50_000, 11_574, small)
    assert (result.redis_shards_for_cpu, result.redis_shards_for_memory) == (20, 1)
    assert result.redis_shards == 20
    assert result.redis_commands_per_s_design == pytest.approx(1_000_000)

    heavy = plan(50_000, 11_574, _measured(redis_cpu_s_per_txn=1e-7))
    assert heavy.redis_shards == heavy.redis_shards_for_memory > heavy.redis_shards_for_cpu


def test_broker_retention_is_bytes_per_record_times_average_rate_times_retention() -> None:
    result = plan(50_000, 11_574, _measured(), Assumptions(broker_retention_days=7, replication=3))

    assert result.broker_bytes_per_txn == 800
    assert result.broker_storage_gb * GB == pytest.approx(800 * 11_574 * 7 * DAY * 3)
    assert result.broker_write_mb_s_design == pytest.approx(100_000 * 800 / 1e6)
    assert result.broker_write_mb_s_replicated == pytest.approx(240.0)
    assert result.broker_nodes == 5, "240 MB/s at 50 MB/s per node"


def test_cost_is_quantity_times_price_and_sums_to_the_total() -> None:
    prices = Prices(vcpu_month=10, ram_gib_month=2, storage_gb_month=0.1)
    result = plan(50_000, 11_574, _measured(), prices=prices)

    lines = {line.item: line for line in result.cost}
    assert lines["worker vCPUs"].monthly == pytest.approx(100 * 10)
    assert lines["broker retention storage (replicated)"].monthly == pytest.approx(
        result.broker_storage_gb * 0.1
    )
    assert result.monthly_total == pytest.approx(sum(line.monthly for line in result.cost))


def test_rates_out_of_order_are_refused() -> None:
    with pytest.raises(CapacityInputError, match="avg-tps"):
        plan(10_000, 20_000, _measured())


def _loadtest(steps: list[tuple[float, float, int]], workers: int = 1) -> dict[str, Any]:
    """A load-test report with (rate, p99 ms, backlog at the end) steps."""
    return {
        "system": "pipeline", "budget_ms": 100.0, "workers": workers,
        "steps": [
            {"tps_target": rate, "produced": 1000, "decided": 1000, "lag_end": lag,
             "e2e_latency_ms": {"p99": p99},
             "cpu_s_per_1000_txn": {"worker": 0.9, "redis": 0.2}}
            for rate, p99, lag in steps
        ],
    }  # fmt: skip


def _demo_summary() -> dict[str, Any]:
    redis = {
        "commands_per_txn": 20.0, "card_bytes_fixed": 300.0, "card_bytes_per_event": 90.0,
        "merchant_bytes_per_event": 60.0, "txn_bytes_per_txn": 250.0,
        "txn_key_ttl_s": 38 * DAY, "card_retention_s": 31 * DAY, "merchant_retention_s": 38 * DAY,
    }  # fmt: skip
    topic = {"records": 100, "records_per_txn": 1.0, "bytes_per_record": 400.0}
    return {"footprint": {"transactions": 100, "redis": redis,
                          "topics": {"transactions": topic, "decisions": topic,
                                     "dlq": {"records": 0, "records_per_txn": 0.0,
                                             "bytes_per_record": None}}}}  # fmt: skip


def _write(path: Path, figures: dict[str, Any]) -> Path:
    path.write_text(json.dumps(figures))
    return path


def test_missing_files_name_the_command_that_writes_them(tmp_path: Path) -> None:
    demo = _write(tmp_path / "summary.json", _demo_summary())
    with pytest.raises(CapacityInputError, match=r"nothing\.json not found.*fraudstream loadtest"):
        read_measured(tmp_path / "nothing.json", demo)

    loadtest = _write(tmp_path / "lt.json", _loadtest([(500, 80, 0)]))
    old_demo = _write(tmp_path / "old.json", {"produced": 10})
    with pytest.raises(CapacityInputError, match=r"old\.json has no `footprint`.*fraudstream demo"):
        read_measured(loadtest, old_demo)

    no_cpu = _loadtest([(500, 80, 0)])
    del no_cpu["steps"][0]["cpu_s_per_1000_txn"]
    with pytest.raises(CapacityInputError, match="no usable worker CPU.*fraudstream loadtest"):
        read_measured(_write(tmp_path / "no_cpu.json", no_cpu), demo)


def test_rate_is_the_best_step_within_budget_per_worker(tmp_path: Path) -> None:
    loadtest = _write(tmp_path / "lt.json", _loadtest([(500, 60, 0), (750, 90, 0),
                                                      (1000, 300, 0)], workers=2))  # fmt: skip
    measured = read_measured(loadtest, _write(tmp_path / "summary.json", _demo_summary()))

    assert (measured.worker_tps, measured.within_budget, measured.p99_ms) == (375.0, True, 90)
    assert measured.worker_cpu_s_per_txn == pytest.approx(0.0009)
    assert measured.topic_bytes_per_txn == {"transactions": 400.0, "decisions": 400.0}
    assert measured.sources["loadtest"].path == str(loadtest)


def test_with_no_step_in_budget_the_plan_uses_the_best_kept_up_step_and_says_so(
    tmp_path: Path,
) -> None:
    loadtest = _write(tmp_path / "lt.json", _loadtest([(500, 230, 0), (1000, 560, 0),
                                                      (1500, 3600, 3000)]))  # fmt: skip
    measured = read_measured(loadtest, _write(tmp_path / "summary.json", _demo_summary()))
    assert (measured.worker_tps, measured.within_budget) == (1000.0, False)

    figures = plan_figures(plan(50_000, 11_574, measured), measured, Assumptions(), Prices())
    assert "missed the 100 ms p99 budget" in format_markdown(figures)


def test_cli_markdown_and_json_agree_and_name_their_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loadtest = _write(tmp_path / "lt.json", _loadtest([(500, 60, 0), (750, 90, 0)]))
    demo = _write(tmp_path / "summary.json", _demo_summary())
    out = tmp_path / "plan.json"

    code = main(["capacity", "--peak-tps", "50000", "--avg-tps", "11574", "--from", str(loadtest),
                 "--demo-summary", str(demo), "--cards", "1000000", "--vcpu-month", "30",
                 "--json", str(out)])  # fmt: skip

    assert code == 0
    markdown, figures = capsys.readouterr().out, json.loads(out.read_text())
    assert figures["assumptions"]["cards"] == 1_000_000 and figures["prices"]["vcpu_month"] == 30
    cells = [line.strip("| ").split(" | ") for line in markdown.splitlines()]
    rows = {row[0]: row[1] for row in cells if len(row) == 2}
    for label, key, fmt in PLAN_ROWS:
        assert rows[label] == fmt.format(figures["plan"][key]), label
    assert f"**{figures['plan']['monthly_total']:,.0f}**" in markdown
    assert f"`{loadtest}`, written by `fraudstream loadtest" in markdown
    assert f"`{demo}`, written by `fraudstream demo" in markdown


def test_cli_exits_2_naming_the_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["capacity", "--peak-tps", "50000", "--avg-tps", "11574",
                 "--from", str(tmp_path / "absent.json")])  # fmt: skip

    assert code == 2
    assert "absent.json not found: run `fraudstream loadtest" in capsys.readouterr().err
