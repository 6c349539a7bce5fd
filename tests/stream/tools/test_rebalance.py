"""Workers joining and leaving a group of 8 partitions under a steady replay (issue 13 §2):
nothing lost, duplicates only once the group changes and each with the offline windows,
pauses reported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from fraudstream.features.transaction import parse_transaction
from fraudstream.stream.tools.faults import ChaosServices
from fraudstream.stream.tools.ledger import Ledger, read_topic
from fraudstream.stream.tools.rebalance import (
    SCHEDULE,
    RebalanceOptions,
    backlog_at,
    run_rebalance,
    window_figures,
)
from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from tests.support.signing import TEST_SIGNING_KEY
from tests.support.worker_runs import REDIS_DATABASES, assert_features_match_offline

#: 40 s of production at 100/s, one event every 8 s; short sessions so the kill is noticed.
SHORT = RebalanceOptions(rate=100.0, spacing_s=8.0, window_s=5.0, partitions=8,
                         session_timeout_s=2.0, drain_s=60.0)  # fmt: skip


def ledger_of(produced_at: list[float], accounted_at: list[float | None]) -> Ledger:
    lost = accounted_at.count(None)
    return Ledger(len(produced_at), len(produced_at) - lost, 0, lost, 0, 0, 0, 0, 0,
                  produced_at, accounted_at)  # fmt: skip


def test_backlog_counts_what_was_produced_and_not_yet_accounted_for() -> None:
    ledger = ledger_of([0.0, 1.0, 2.0, 3.0], [0.5, 2.5, 2.6, None])
    assert backlog_at(ledger, [0.0, 0.5, 1.0, 2.0, 2.6, 10.0]) == [1, 0, 1, 2, 0, 1]


def test_a_window_gives_its_max_backlog_and_the_p99_of_the_decisions_made_in_it() -> None:
    ledger = ledger_of([0.0, 1.0, 2.0], [3.0, 3.0, 3.0])
    timed = [(3.0, 10.0), (3.0, 20.0), (3.5, 30.0), (9.0, 1000.0)]
    figures = window_figures(ledger, timed, 0.0, 4.0)
    assert figures["max_lag"] == 3
    assert figures["decisions"] == 3
    assert figures["e2e_max_ms"] == 30.0
    assert 20.0 < figures["e2e_p99_ms"] <= 30.0
    assert window_figures(ledger, timed, 5.0, 6.0)["e2e_p99_ms"] is None


def assert_pause_figures_sane(figures: dict[str, Any]) -> None:
    shown = json.dumps(figures)
    assert isinstance(figures["max_lag"], int) and figures["max_lag"] >= 0, shown
    for name in ("e2e_p50_ms", "e2e_p99_ms", "e2e_max_ms"):
        assert math.isfinite(figures[name]) and figures[name] >= 0, shown


@pytest.mark.integration
def test_workers_join_leave_and_die_under_load_without_losing_or_double_counting(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path, tmp_path: Path
) -> None:
    with ChaosServices.running(broker, redis_server, next(REDIS_DATABASES)) as services:
        report = run_rebalance(services, trained_registry, TEST_SIGNING_KEY, SHORT, tmp_path)
        decisions = [
            orjson.loads(record.value or b"{}")
            for record in read_topic(broker.bootstrap, report["topics"]["decisions"])
        ]
    (tmp_path / "report.json").write_text(json.dumps(report, indent=1))  # for a failure
    shown = json.dumps({k: v for k, v in report.items() if k != "duplicate_records"}, indent=1)
    txns = [parse_transaction(value) for _, _, value in SHORT.records()]

    # Every transaction of the replay has a decision.
    assert report["records_in"] == report["produced"] == len(txns), shown
    assert report["lost"] == 0 and report["decided"] == len(txns), shown
    assert {d["txn_id"] for d in decisions} == {t.txn_id for t in txns}

    # Duplicates come only from the group changing (no txn_id decided twice in the steady
    # part before the first event), and each is counted once.
    assert [event["event"] for event in report["events"]] == [f"{a} {w}" for a, w in SCHEDULE]
    assert report["events"][-1]["partitions"], "the killed worker owned partitions"
    assert all(duplicate["after_event"] for duplicate in report["duplicate_records"]), shown
    assert len(report["duplicate_records"]) == report["duplicates"], shown
    assert sum(event["duplicates"] for event in report["events"]) == report["duplicates"]
    assert report["decision_records"] >= len(txns) + report["duplicates"], shown

    # No card's window counted a transaction twice: every copy of every decision carries
    # the windows the offline builder gives that transaction.
    assert_features_match_offline(txns, decisions, every_copy=True)

    # The pause figures are there and sane (no timing threshold: CI is slow).
    assert_pause_figures_sane(report["steady"])
    for event in report["events"]:
        assert_pause_figures_sane(event)
        assert event["took_s"] >= 0, shown
    survivors = report["partitions_at_end"]
    assert list(survivors) == ["w3"], shown
    assert sorted(survivors["w3"]) == list(range(SHORT.partitions)), shown
