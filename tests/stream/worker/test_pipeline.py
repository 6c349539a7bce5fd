"""The decision pipeline: validation, fallbacks, the contract, what it remembers.

The tests run on the in-memory stores; those marked integration drive it once more with the
Redis stores on a real redis-server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.memory_store import InMemoryFeatureStore, InMemoryScoreStore
from fraudstream.features.pseudonyms import IdPseudonyms, new_id_hash_key
from fraudstream.features.store import RedisFeatureStore, redis_stores
from fraudstream.features.stores import (
    FeatureStore,
    FeatureStoreError,
    FeatureStorePartlyUnavailable,
    ScoreStore,
)
from fraudstream.features.transaction import Label, Transaction
from fraudstream.models.registry import LoadedModels, load_version
from fraudstream.models.scorers import ExplainedScores, XGBoostScorer
from fraudstream.stream.contract import Decision
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.services import EmbeddedRedis
from fraudstream.stream.tools.shadow_report import compare_shadow
from fraudstream.stream.worker.metrics import classify_dead_letter
from fraudstream.stream.worker.pipeline import (
    EXPLAIN_WITH_SCORES_MAX_ROWS,
    TOP_REASONS,
    BatchOutcome,
    DecisionPipeline,
    IncomingRecord,
    ShadowCandidate,
    ThresholdPair,
)

MALFORMED = [
    b"{not json",
    b'{"txn_id": "x1"}',
    json.dumps(
        {
            "txn_id": "x2",
            "card_id": "c",
            "merchant_id": "m",
            "amount": -5,
            "currency": "EUR",
            "country": "FR",
            "channel": "pos",
            "event_time": 1.77e9,
        }
    ).encode(),  # fmt: skip
    b"\xff\xfe\x00binary",
    b'{"pad": "' + b"x" * 20_000 + b'"}',
]


class SleepyForest:
    """Stands in for the IsolationForest and sleeps far past any budget."""

    name = "isolation_forest"

    def score_batch(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        time.sleep(1.0)
        return np.zeros(len(features))

    def score_one(self, features: NDArray[np.float64]) -> float:
        return 0.0


class CountingXGBoost:
    """The real XGBoost scorer, counting the calls the pipeline makes on it."""

    name = "xgboost"

    def __init__(self, scorer: XGBoostScorer, sleep_s: float = 0.0) -> None:
        self.scorer, self.sleep_s = scorer, sleep_s
        self.calls: list[str] = []

    def score_batch(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        self.calls.append("score_batch")
        return self.scorer.score_batch(features)

    def score_one(self, features: NDArray[np.float64]) -> float:
        return self.scorer.score_one(features)

    def score_explained(self, features: NDArray[np.float64]) -> ExplainedScores:
        self.calls.append("score_explained")
        time.sleep(self.sleep_s)
        return self.scorer.score_explained(features)

    def contributions_batch(self, *args: object) -> object:
        self.calls.append("contributions_batch")
        raise AssertionError("the reasons must come with the scores")


def records(count: int, seed: int = 5) -> list[IncomingRecord]:
    stream = generate_stream(GeneratorConfig(transactions=max(count, 100), seed=seed))
    now = time.time()
    return [
        IncomingRecord(json.dumps(txn.to_dict()).encode(), now)
        for txn in stream.transactions[:count]
    ]


def with_literal(record: IncomingRecord, field: str, literal: bytes) -> bytes:
    """`record`'s JSON with `field`'s value replaced by a raw JSON literal."""
    assert record.value is not None
    document = {**json.loads(record.value), field: 0}
    return json.dumps(document).encode().replace(f'"{field}": 0'.encode(),
                                                 f'"{field}": '.encode() + literal)  # fmt: skip


def hostile_values(template: IncomingRecord) -> list[tuple[str, bytes | None]]:
    """What probing found to crash a batch, each after the error its dead letter must give."""
    return [
        ("tombstone: null value", None),
        ("number is infinity", with_literal(template, "amount", b"1" + b"0" * 400)),
        ("number is infinity", with_literal(template, "amount", b"7" * 5_000)),
        ("depth limit exceeded", with_literal(template, "amount", b"[" * 5_000 + b"]" * 5_000)),
        ("no low surrogate", with_literal(template, "txn_id", b'"\\ud800"')),
        ("exceeds the 16384-byte limit", bytes(range(256)) * 3_516),  # 900 KB, binary
    ]


class PoisonedFeatureStore(InMemoryFeatureStore):
    """Fails every batch that holds one txn_id, as a bug set off by one record would."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison

    async def record_and_featurize(
        self, transactions: Sequence[Transaction]
    ) -> list[NDArray[np.float64]]:
        if any(txn.txn_id == self.poison for txn in transactions):
            raise RuntimeError(f"cannot featurize {self.poison}")
        return await super().record_and_featurize(transactions)


class UnreachableFeatureStore(InMemoryFeatureStore):
    """A feature store whose backend is down."""

    async def record_and_featurize(
        self, transactions: Sequence[Transaction]
    ) -> list[NDArray[np.float64]]:
        raise FeatureStoreError("feature store unavailable: connection refused")


class HalfServedFeatureStore(InMemoryFeatureStore):
    """Serves every other transaction, as a Redis Cluster with one master down would."""

    async def record_and_featurize(
        self, transactions: Sequence[Transaction]
    ) -> list[NDArray[np.float64]]:
        vectors = await super().record_and_featurize(transactions)
        raise FeatureStorePartlyUnavailable(
            "feature store partly unavailable: one master timed out",
            [vector if row % 2 == 0 else None for row, vector in enumerate(vectors)],
        )


Stores = tuple[FeatureStore, ScoreStore]


@pytest.fixture(params=["in-memory", pytest.param("redis", marks=pytest.mark.integration)])
def stores(request: pytest.FixtureRequest) -> Stores:
    """The pipeline's two stores: in memory, and (integration) on the session's redis-server."""
    if request.param == "in-memory":
        return InMemoryFeatureStore(), InMemoryScoreStore()
    redis_server: EmbeddedRedis = request.getfixturevalue("redis_server")
    return redis_stores(redis_server.url)


def in_memory() -> Stores:
    return InMemoryFeatureStore(), InMemoryScoreStore()


async def close(pipeline: DecisionPipeline) -> None:
    """Stop the scorers and close the Redis client the stores share (if on Redis)."""
    if isinstance(pipeline.feature_store, RedisFeatureStore):
        await pipeline.feature_store.close()
    pipeline.close()


def make_pipeline(stores: Stores, registry: Path, **overrides: object) -> DecisionPipeline:
    models = load_version(registry)
    options: dict[str, object] = {"timeout_s": 0.05, "fallback_policy": "neutral",
                                  "ids": IdPseudonyms(new_id_hash_key())} | overrides  # fmt: skip
    feature_store, score_store = stores
    return DecisionPipeline(
        feature_store,
        score_store,
        models,
        models.metadata["weights"],
        ThresholdPair("test", 0.2, 0.8),
        **options,  # type: ignore[arg-type]
    )


def test_every_valid_record_is_decided_and_every_bad_one_dead_lettered(
    stores: Stores, trained_registry: Path
) -> None:
    async def run() -> None:
        pipeline = make_pipeline(stores, trained_registry)
        batch = records(200) + [IncomingRecord(raw, time.time()) for raw in MALFORMED]
        outcome = await pipeline.process(batch)
        await close(pipeline)
        assert len(outcome.decisions) == 200
        assert len(outcome.dead_letters) == len(MALFORMED)
        assert all(letter.stage == "validate" for letter in outcome.dead_letters)
        errors = " | ".join(letter.error for letter in outcome.dead_letters)
        assert "not valid JSON" in errors and "amount" in errors and "exceeds" in errors
        decision = outcome.decisions[0].to_dict()
        assert set(decision) >= {"txn_id", "card_id", "decision", "score", "model_scores",
                                 "fallbacks", "threshold_version", "reasons", "latency_ms",
                                 "degraded"}  # fmt: skip
        assert set(decision["model_scores"]) == {"xgboost", "isolation_forest"}
        assert decision["latency_ms"]["end_to_end"] >= 0
        flagged = [d for d in outcome.decisions if d.decision != "approve"]
        assert all(d.reasons for d in flagged)

    asyncio.run(run())


def test_slow_model_falls_back_within_budget_and_the_decision_says_so(
    trained_registry: Path,
) -> None:
    async def run() -> None:
        models = load_version(trained_registry)
        pipeline = make_pipeline(
            in_memory(), trained_registry, scorers=[models.xgboost, SleepyForest()]
        )
        started = time.perf_counter()
        outcome = await pipeline.process(records(50, seed=6))
        elapsed = time.perf_counter() - started
        await close(pipeline)
        # The sleepy model takes 1 s; the batch is decided without waiting for it.
        assert elapsed < 0.5
        assert len(outcome.decisions) == 50
        for decision in outcome.decisions:
            assert decision.model_scores["isolation_forest"] is None
            assert decision.fallbacks == {"isolation_forest": "timeout after 50 ms"}
            assert decision.score == pytest.approx(decision.model_scores["xgboost"])
            assert decision.degraded is True

    asyncio.run(run())


def assert_reasons_are_the_top_contributions(models: LoadedModels, flagged: list[Decision]) -> None:
    """Each flagged decision names XGBoost's top positive contributions, in order."""
    rows = np.array([d.features for d in flagged])
    expected = models.xgboost.contributions_batch(rows, TOP_REASONS, approximate=True)
    for decision, top in zip(flagged, expected, strict=True):
        from_model = [r.split("=")[0] for r in decision.reasons if not r.startswith("rule:")]
        assert from_model == [name for name, value in top if value > 0]


def test_reasons_come_from_the_call_that_scored_with_xgboost(trained_registry: Path) -> None:
    async def run() -> None:
        models = load_version(trained_registry)
        xgboost = CountingXGBoost(models.xgboost)
        pipeline = make_pipeline(
            in_memory(), trained_registry, scorers=[xgboost, models.isolation_forest]
        )
        pipeline.thresholds = ThresholdPair("low", 0.001, 0.999)  # flags most of them
        outcome = await pipeline.process(records(60, seed=8))
        await close(pipeline)
        assert xgboost.calls == ["score_explained"], "one call, one thread hop, one timeout"
        flagged = [d for d in outcome.decisions if d.decision != "approve"]
        assert len(flagged) > 10
        assert_reasons_are_the_top_contributions(models, flagged)

    asyncio.run(run())


def test_a_large_batch_is_scored_first_and_only_its_flagged_rows_explained(
    trained_registry: Path,
) -> None:
    async def run() -> None:
        batch = records(EXPLAIN_WITH_SCORES_MAX_ROWS + 136, seed=8)
        probe = make_pipeline(in_memory(), trained_registry)
        scores = [decision.score for decision in (await probe.process(batch)).decisions]
        await close(probe)
        models = load_version(trained_registry)
        xgboost = CountingXGBoost(models.xgboost)
        pipeline = make_pipeline(
            in_memory(), trained_registry, scorers=[xgboost, models.isolation_forest]
        )
        # Flags the top tenth of the batch, whatever the scale of the trained model's scores.
        pipeline.thresholds = ThresholdPair("high", float(np.quantile(scores, 0.9)), 0.999)
        outcome = await pipeline.process(batch)
        await close(pipeline)
        assert xgboost.calls == ["score_batch", "score_explained"]
        flagged = [d for d in outcome.decisions if d.decision != "approve"]
        assert 0 < len(flagged) < len(outcome.decisions)
        assert_reasons_are_the_top_contributions(models, flagged)

    asyncio.run(run())


def test_reasons_that_would_blow_the_model_budget_are_skipped_and_the_decisions_stand(
    trained_registry: Path,
) -> None:
    async def run() -> None:
        models = load_version(trained_registry)
        xgboost = CountingXGBoost(models.xgboost, sleep_s=0.5)  # slow to explain only
        pipeline = make_pipeline(
            in_memory(), trained_registry, scorers=[xgboost, models.isolation_forest],
            timeout_s=0.1,
        )  # fmt: skip
        pipeline.thresholds = ThresholdPair("low", 0.001, 0.999)
        outcome = await pipeline.process(records(EXPLAIN_WITH_SCORES_MAX_ROWS + 1, seed=9))
        await close(pipeline)
        assert all(d.fallbacks == {} and not d.degraded for d in outcome.decisions)
        flagged = [d for d in outcome.decisions if d.decision != "approve"]
        assert flagged
        for decision in flagged:
            skipped = decision.reasons[0]
            assert skipped.startswith("model reasons skipped: timeout after"), skipped
            assert not any("(+" in reason for reason in decision.reasons)

    asyncio.run(run())


def test_hung_xgboost_costs_one_timeout_not_two(trained_registry: Path) -> None:
    async def run() -> None:
        models = load_version(trained_registry)
        xgboost = CountingXGBoost(models.xgboost, sleep_s=0.3)
        pipeline = make_pipeline(
            in_memory(), trained_registry, scorers=[xgboost, models.isolation_forest],
            timeout_s=0.1,
        )  # fmt: skip
        started = time.perf_counter()
        outcome = await pipeline.process(records(20, seed=9))
        elapsed = time.perf_counter() - started
        await close(pipeline)
        # Scores and reasons used to wait 100 ms each, one after the other.
        assert elapsed < 0.2
        assert all(d.fallbacks == {"xgboost": "timeout after 100 ms"} for d in outcome.decisions)
        assert all(not any("(+" in r for r in d.reasons) for d in outcome.decisions)

    asyncio.run(run())


def test_shadow_candidate_is_scored_and_logged_but_never_decides(trained_registry: Path) -> None:
    async def run() -> None:
        pipeline = make_pipeline(in_memory(), trained_registry)
        candidate = load_version(trained_registry)
        pipeline.shadow = ShadowCandidate(candidate, candidate.metadata["weights"],
                                          ThresholdPair("shadow", 0.0, 0.0))  # fmt: skip
        outcome = await pipeline.process(records(100, seed=8))
        await close(pipeline)
        for decision in outcome.decisions:
            # Same model, so the same score; its pair declines everything, yet nothing is.
            assert decision.shadow is not None
            assert decision.shadow.score == pytest.approx(decision.score)
            assert decision.shadow.decision == "decline"
        assert {d.decision for d in outcome.decisions} != {"decline"}
        labels = {d.txn_id: Label(d.txn_id, False, "legit", 0.0) for d in outcome.decisions}
        report = compare_shadow(outcome.decisions, labels)
        assert report is not None
        assert report["shadow"]["fpr"] == 1.0 and report["score_correlation"] == pytest.approx(1.0)
        assert report["decision_agreement"] < 1.0

    asyncio.run(run())


def test_every_decision_score_is_remembered_for_late_labels(
    stores: Stores, trained_registry: Path
) -> None:
    async def run() -> None:
        pipeline = make_pipeline(stores, trained_registry)
        outcome = await pipeline.process(records(100, seed=9))
        remembered = await pipeline.score_store.scores_for(
            [d.txn_id for d in outcome.decisions] + ["never-decided"]
        )
        await close(pipeline)
        assert remembered == [(d.event_time, d.score) for d in outcome.decisions] + [None]

    asyncio.run(run())


def test_feature_store_outage_decides_every_record_degraded(trained_registry: Path) -> None:
    async def run() -> None:
        pipeline = make_pipeline(
            (UnreachableFeatureStore(), InMemoryScoreStore()), trained_registry
        )
        outcome = await pipeline.process(records(50, seed=10))
        await close(pipeline)
        assert len(outcome.decisions) == 50 and not outcome.dead_letters
        assert outcome.feature_store_errors == 1
        assert all(decision.degraded for decision in outcome.decisions)
        # Scored from the transaction alone: no card history, no merchant counts.
        count_30d = FEATURE_NAMES.index("count_30d")
        assert all(decision.features[count_30d] == 0 for decision in outcome.decisions)

    asyncio.run(run())


def test_a_store_that_served_part_of_a_batch_degrades_only_the_rest(
    trained_registry: Path,
) -> None:
    async def run() -> None:
        half = make_pipeline((HalfServedFeatureStore(), InMemoryScoreStore()), trained_registry)
        whole = make_pipeline((InMemoryFeatureStore(), InMemoryScoreStore()), trained_registry)
        batch = records(40, seed=10)
        partly, fully = await half.process(batch), await whole.process(batch)
        await close(half)
        await close(whole)
        assert partly.feature_store_errors == 1 and len(partly.decisions) == 40
        count_30d = FEATURE_NAMES.index("count_30d")
        for row, (got, whole_store) in enumerate(zip(partly.decisions, fully.decisions,
                                                     strict=True)):  # fmt: skip
            if row % 2 == 0:  # served: the very features of a whole store, degraded only
                assert got.features == whole_store.features  # by a model's fallback
                assert got.degraded == bool(got.fallbacks)
            else:
                assert got.degraded and got.features[count_30d] == 0
        assert any(d.features[count_30d] > 0 for d in partly.decisions[::2])  # has teeth

    asyncio.run(run())


def test_each_hostile_record_costs_one_small_dead_letter_and_its_batch_mates_are_decided(
    trained_registry: Path,
) -> None:
    valid = records(20, seed=12)
    hostile = hostile_values(valid[0])
    batch = [*valid[:10], *(IncomingRecord(raw, time.time()) for _, raw in hostile),
             *valid[10:]]  # fmt: skip

    async def run() -> None:
        pipeline = make_pipeline(in_memory(), trained_registry)
        outcome = await pipeline.process(batch)
        await close(pipeline)
        assert [d.txn_id for d in outcome.decisions] == [
            json.loads(record.value or b"")["txn_id"] for record in valid
        ]
        assert len(outcome.dead_letters) == len(hostile)
        for (error, raw), letter in zip(hostile, outcome.dead_letters, strict=True):
            assert error in letter.error and letter.stage == "validate"
            assert letter.raw_size == len(raw or b"")
            assert len(letter.to_json_bytes()) < 100_000
        tombstone, *_, huge = outcome.dead_letters
        assert (tombstone.raw, tombstone.raw_size) == ("", 0)
        assert (huge.raw, huge.raw_masking) == ("", "withheld")  # not JSON: ids unfindable

    asyncio.run(run())


def test_a_record_that_breaks_deciding_is_dead_lettered_alone(trained_registry: Path) -> None:
    batch = records(30, seed=13)
    poisoned = batch[7]
    assert poisoned.value is not None
    poison = json.loads(poisoned.value)["txn_id"]

    async def run() -> None:
        pipeline = make_pipeline((PoisonedFeatureStore(poison), InMemoryScoreStore()),
                                 trained_registry)  # fmt: skip
        outcome = await pipeline.process(batch)
        await close(pipeline)
        assert [d.txn_id for d in outcome.decisions] == [
            json.loads(record.value or b"")["txn_id"] for record in batch if record is not poisoned
        ]
        assert not any(d.degraded for d in outcome.decisions)
        [letter] = outcome.dead_letters
        assert letter.stage == "decide"
        assert letter.error == f"RuntimeError: cannot featurize {poison}"
        assert letter.raw_masking == "masked"
        record = json.loads(poisoned.value or b"")
        assert json.loads(letter.raw) == {**record, "card_id": pipeline.ids.card(record["card_id"]),
                                          "merchant_id": pipeline.ids.merchant(
                                              record["merchant_id"])}  # fmt: skip

    asyncio.run(run())


def test_records_late_when_taken_are_decided_by_xgboost_alone_and_marked(
    trained_registry: Path,
) -> None:
    async def run() -> None:
        models = load_version(trained_registry)
        # The forest would time out: a stand-in row must not even ask it.
        pipeline = make_pipeline(
            in_memory(), trained_registry, scorers=[models.xgboost, SleepyForest()],
            stand_in_after_s=0.1,
        )  # fmt: skip
        candidate = load_version(trained_registry)
        pipeline.shadow = ShadowCandidate(candidate, candidate.metadata["weights"],
                                          ThresholdPair("shadow", 0.0, 0.0))  # fmt: skip
        late, fresh = records(40, seed=11)[:20], records(40, seed=11)[20:]
        backlog = [IncomingRecord(record.value, time.time() - 2.0) for record in late]
        started = time.perf_counter()
        outcome = await pipeline.process(backlog)
        elapsed = time.perf_counter() - started
        mixed = await pipeline.process(fresh)
        await close(pipeline)

        assert elapsed < 0.5, "a batch of stand-ins never waits for the skipped model"
        assert len(outcome.decisions) == 20 and not outcome.dead_letters
        for decision in outcome.decisions:
            assert decision.stand_in and not decision.degraded and decision.shadow is None
            assert decision.model_scores["isolation_forest"] is None
            assert decision.fallbacks == {}
            assert decision.score == pytest.approx(decision.model_scores["xgboost"])
            assert decision.reasons[0].startswith("stand-in: taken 2,0")
            assert Decision.from_json_bytes(decision.to_json_bytes()) == decision
        # Fresh records get the full path again by themselves (here the slow forest's fallback).
        assert not any(d.stand_in for d in mixed.decisions)
        assert all(d.fallbacks == {"isolation_forest": "timeout after 50 ms"}
                   for d in mixed.decisions)  # fmt: skip
        assert all(d.shadow is not None for d in mixed.decisions)

    asyncio.run(run())


def test_a_feature_store_reset_is_counted_once_with_the_decisions_it_may_have_cut(
    trained_registry: Path,
) -> None:
    async def run() -> tuple[list[int], list[int]]:
        stores = in_memory()
        pipeline = make_pipeline(stores, trained_registry)
        batch = records(30, seed=12)
        times = sorted(json.loads(r.value or b"")["event_time"] for r in batch)
        resets, partial = [], []
        for reset_seen, until in ((0, None), (1, times[9] + 0.001), (1, times[9] + 0.001)):
            stores[0].resets, stores[0].partial_history_until = reset_seen, until
            outcome = await pipeline.process(batch)
            resets.append(outcome.feature_store_resets)
            partial.append(outcome.partial_history)
        await close(pipeline)
        return resets, partial

    resets, partial = asyncio.run(run())
    assert resets == [0, 1, 0], "a reset is counted in the batch that found it, once"
    assert partial == [0, 10, 10]


def test_a_reused_txn_id_with_other_content_is_dead_lettered_a_redelivery_decided_again(
    trained_registry: Path,
) -> None:
    async def run() -> tuple[BatchOutcome, BatchOutcome]:
        pipeline = make_pipeline(in_memory(), trained_registry)
        batch = records(5, seed=13)
        first = await pipeline.process(batch)
        assert batch[0].value is not None
        changed = json.loads(batch[0].value)
        changed["amount"] += 1.0
        again = await pipeline.process(
            [batch[0], IncomingRecord(json.dumps(changed).encode(), batch[0].produced_at)]
        )
        await close(pipeline)
        return first, again

    first, again = asyncio.run(run())
    assert len(first.decisions) == 5
    assert [d.txn_id for d in again.decisions] == [first.decisions[0].txn_id]
    assert again.decisions[0].score == first.decisions[0].score, "idempotent redelivery"
    [letter] = again.dead_letters
    assert letter.stage == "deduplicate"
    assert letter.error.startswith("conflicting_duplicate: ")
    assert classify_dead_letter(letter.error) == "conflicting_duplicate"


def test_an_event_time_far_from_the_broker_clock_is_dead_lettered(trained_registry: Path) -> None:
    batch = records(3, seed=14)
    event_times = [json.loads(r.value or b"")["event_time"] for r in batch]
    offsets_h = [1.0, 30.0, -30.0]  # broker timestamp minus event time
    stamped = [
        IncomingRecord(r.value, t + h * 3600)
        for r, t, h in zip(batch, event_times, offsets_h, strict=True)
    ]

    async def run() -> BatchOutcome:
        pipeline = make_pipeline(in_memory(), trained_registry, max_event_skew_s=86_400.0)
        outcome = await pipeline.process(stamped)
        await close(pipeline)
        return outcome

    outcome = asyncio.run(run())
    assert len(outcome.decisions) == 1
    errors = sorted(letter.error for letter in outcome.dead_letters)
    assert [e.split(", got ")[1].split(" it")[0] for e in errors] == [
        "30.0 h after", "30.0 h before"
    ]
    assert all(e.startswith("field 'event_time' must lie within ± 24 h") for e in errors)
    assert {classify_dead_letter(e) for e in errors} == {"out_of_range"}
