"""The in-memory stores give the offline builder's vectors and keep scores, without Redis."""

from __future__ import annotations

import asyncio
import doctest

import numpy as np
import pytest

from fraudstream.features import memory_store
from fraudstream.features.builder import build_features
from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.memory_store import InMemoryFeatureStore, InMemoryScoreStore
from fraudstream.features.transaction import Label, Transaction
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream

HALF_DAY = 43_200.0
DAY = 86_400.0


async def replay_online(
    store: InMemoryFeatureStore,
    transactions: list[Transaction],
    labels: list[Label],
    batch: int,
) -> tuple[np.ndarray, int]:
    """Feed the store as the worker would: micro-batches of transactions, labels between them.

    A batch ends early when a label falls due (its `label_time` before the next
    transaction), so the store sees each label exactly when the offline builder does.
    Returns the rows in stream order and how many labels the store matched.
    """
    pending = sorted(labels, key=lambda label: label.label_time)
    rows: list[np.ndarray] = []
    matched = 0
    chunk: list[Transaction] = []
    for txn in transactions:
        due = [label for label in pending if label.label_time < txn.event_time]
        if chunk and (due or len(chunk) == batch):
            rows += await store.record_and_featurize(chunk)
            chunk = []
        if due:
            pending = pending[len(due) :]
            matched += await store.record_labels(due)
        chunk.append(txn)
    rows += await store.record_and_featurize(chunk)
    return np.vstack(rows), matched


@pytest.mark.parametrize(("batch", "label_delay_s"), [(1, 7 * DAY), (50, 7 * DAY), (50, 2 * DAY)])
def test_in_memory_vectors_equal_offline_builder(batch: int, label_delay_s: float) -> None:
    stream = generate_stream(GeneratorConfig(transactions=2000, seed=3))
    online, matched = asyncio.run(
        replay_online(
            InMemoryFeatureStore(label_delay_s), stream.transactions, stream.labels, batch
        )
    )
    offline = build_features(stream.transactions, stream.labels, label_delay_s)
    assert [txn.txn_id for txn in offline.transactions] == [
        txn.txn_id for txn in stream.transactions
    ]
    assert matched > 0  # fraud labels did reach the merchant features
    share = offline.features[:, FEATURE_NAMES.index("merchant_fraud_share_30d_delayed")]
    assert share.max() > 0, "the delayed windows held known frauds: the comparison has teeth"
    np.testing.assert_array_equal(online, offline.features)


def test_redelivered_transactions_get_the_vectors_of_their_first_delivery() -> None:
    transactions = generate_stream(GeneratorConfig(transactions=2000, seed=3)).transactions

    # The last half day again, as after a consumer restart from an older offset (a
    # redelivery within the allowed lateness, which the windows' retention covers).
    recent = [
        txn for txn in transactions if txn.event_time > transactions[-1].event_time - HALF_DAY
    ]
    assert len(recent) >= 10

    async def run() -> tuple[np.ndarray, np.ndarray]:
        store = InMemoryFeatureStore()
        first, _ = await replay_online(store, transactions, [], batch=50)
        again, _ = await replay_online(store, recent, [], batch=7)
        return first[-len(recent) :], again

    first, again = asyncio.run(run())
    np.testing.assert_array_equal(first, again)


def test_labels_of_unseen_or_legitimate_transactions_are_not_matched() -> None:
    store = InMemoryFeatureStore()
    txn = Transaction("t1", "c1", "m1", 10.0, "EUR", "FR", "pos", 1_767_225_600.0)
    asyncio.run(store.record_and_featurize([txn]))
    labels = [
        Label("t1", True, "stolen_card", 1_767_300_000.0),
        Label("t1", False, "legit", 1_767_300_000.0),
        Label("never-seen", True, "stolen_card", 1_767_300_000.0),
    ]
    assert asyncio.run(store.record_labels(labels)) == 1


def test_score_store_returns_the_latest_score_and_none_for_unknown_ids() -> None:
    scores = InMemoryScoreStore()

    async def run() -> list[tuple[float, float] | None]:
        await scores.record_scores([("t1", 100.0, 0.25), ("t2", 101.0, 0.5)])
        await scores.record_scores([("t1", 100.0, 0.75)])
        return await scores.scores_for(["t1", "unknown", "t2"])

    assert asyncio.run(run()) == [(100.0, 0.75), None, (101.0, 0.5)]


def test_module_example_runs() -> None:
    assert doctest.testmod(memory_store).failed == 0
