"""The synthetic stream: determinism, the label contract, scenario timing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fraudstream.features.transaction import parse_transaction
from fraudstream.stream.sim.generator import (
    SCENARIOS,
    GeneratorConfig,
    SyntheticStream,
    generate_stream,
)
from fraudstream.stream.sim.streamfile import write_stream

DAY = 86_400.0
SMALL = GeneratorConfig(transactions=5_000, seed=3)
#: Enough frauds that every scenario, including the post-drift `novel`, shows up.
RICH = GeneratorConfig(transactions=20_000, seed=11, fraud_rate=0.03)


@pytest.fixture(scope="module")
def small() -> SyntheticStream:
    return generate_stream(SMALL)


@pytest.fixture(scope="module")
def rich() -> SyntheticStream:
    return generate_stream(RICH)


def test_same_config_writes_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    def written(config: GeneratorConfig, name: str) -> tuple[bytes, bytes]:
        path = tmp_path / name / "fraudstream.stream.jsonl"
        labels_file = write_stream(generate_stream(config), path)
        return path.read_bytes(), labels_file.read_bytes()

    first = written(SMALL, "first")
    assert written(SMALL, "second") == first
    other = written(GeneratorConfig(transactions=5_000, seed=4), "other")
    assert other[0] != first[0] and other[1] != first[1]


def test_exactly_the_requested_count_sorted_by_time_with_one_label_each(
    small: SyntheticStream,
) -> None:
    txns = small.transactions
    assert len(txns) == SMALL.transactions == len(small.labels)
    keys = [(t.event_time, t.txn_id) for t in txns]
    assert keys == sorted(keys)
    assert [t.txn_id for t in txns] == [label.txn_id for label in small.labels]
    assert len({t.txn_id for t in txns}) == len(txns)
    assert txns[0].txn_id == "t00000001"
    assert all(t.card_id[0] == "c" and len(t.card_id) == 6 for t in txns)
    assert all(t.merchant_id[0] == "m" and len(t.merchant_id) == 5 for t in txns)
    end = SMALL.start_time + SMALL.days * DAY
    assert all(SMALL.start_time <= t.event_time < end for t in txns)


def test_every_transaction_satisfies_the_contract_with_rounded_values(
    rich: SyntheticStream,
) -> None:
    for t in rich.transactions:
        assert parse_transaction(t.to_dict()) == t
        assert round(t.amount, 2) == t.amount > 0
        assert round(t.event_time, 3) == t.event_time
        assert t.lat is not None and t.lon is not None
        assert round(t.lat, 4) == t.lat and round(t.lon, 4) == t.lon
    channels = Counter(t.channel for t in rich.transactions)
    assert channels["pos"] > channels["ecom"] > channels["atm"] > 0


def test_every_scenario_appears_with_its_label(rich: SyntheticStream) -> None:
    scenarios = Counter(label.scenario for label in rich.labels)
    assert set(scenarios) == {*SCENARIOS, "legit"}
    assert len(SCENARIOS) >= 6
    assert all(label.is_fraud == (label.scenario != "legit") for label in rich.labels)


def test_novel_fraud_only_after_the_drift_point(rich: SyntheticStream) -> None:
    novel_times = [
        t.event_time
        for t, label in zip(rich.transactions, rich.labels, strict=True)
        if label.scenario == "novel"
    ]
    assert rich.drift_time == RICH.start_time + RICH.drift_at * RICH.days * DAY
    assert novel_times and min(novel_times) >= rich.drift_time


def test_frauds_happen_on_cards_that_also_have_legitimate_history(rich: SyntheticStream) -> None:
    legit_cards = {
        t.card_id
        for t, label in zip(rich.transactions, rich.labels, strict=True)
        if not label.is_fraud
    }
    fraud_cards = [
        t.card_id for t, label in zip(rich.transactions, rich.labels, strict=True) if label.is_fraud
    ]
    assert sum(card in legit_cards for card in fraud_cards) >= 0.95 * len(fraud_cards)


def test_labels_arrive_after_the_transaction_with_chargeback_delays(
    rich: SyntheticStream,
) -> None:
    for t, label in zip(rich.transactions, rich.labels, strict=True):
        delay_days = (label.label_time - t.event_time) / DAY
        assert label.label_time > t.event_time
        if label.is_fraud:
            assert 1.0 - 1e-6 <= delay_days <= 60.0 + 1e-6
        else:
            assert 1.0 - 1e-6 <= delay_days <= 10.0 + 1e-6


@pytest.mark.parametrize("fraud_rate", [0.0, 0.01, 0.05])
def test_realised_fraud_rate_is_near_the_target(fraud_rate: float) -> None:
    stream = generate_stream(GeneratorConfig(transactions=20_000, seed=5, fraud_rate=fraud_rate))
    realised = sum(label.is_fraud for label in stream.labels) / len(stream.labels)
    assert abs(realised - fraud_rate) <= 0.003


def test_legitimate_lookalikes_exist(rich: SyntheticStream) -> None:
    """No single trait separates frauds: legit users also buy tiny, abroad and at night."""
    legit = [
        t for t, label in zip(rich.transactions, rich.labels, strict=True) if not label.is_fraud
    ]
    home: dict[str, str] = {}
    for t in legit:
        home.setdefault(t.card_id, t.country)
    assert sum(t.amount < 5 for t in legit) > 0.02 * len(legit)
    assert sum(t.amount > 300 for t in legit) > 0.01 * len(legit)
    assert sum(t.country != home[t.card_id] for t in legit) > 0.02 * len(legit)


@pytest.mark.parametrize(
    "bad",
    [{"transactions": 0}, {"fraud_rate": 0.9}, {"drift_at": 1.0}, {"days": 0.1}, {"merchants": 2}],
)
def test_an_impossible_config_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(**bad)
