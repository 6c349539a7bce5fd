"""One micro-batch from raw records to decisions: validate, features, score, decide.

Framework-free on purpose: the Faust agents (stream/worker/app.py) only move bytes in and
out through `WorkerRuntime`, and tests drive this class directly, with in-memory stores or
against a real Redis.
Nothing here raises, for any input: a record that cannot be decided becomes a dead letter
with its error and stage, and its batch-mates are decided (see `process`).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.definitions import NO_MERCHANT_HISTORY, feature_vector
from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.features.stores import (
    FeatureStore,
    FeatureStoreError,
    FeatureStorePartlyUnavailable,
    ScoreStore,
)
from fraudstream.features.transaction import InvalidTransaction, Transaction, parse_transaction
from fraudstream.models.ensemble import EnsembleResult, combine, combine_batch
from fraudstream.models.guarded import FallbackScores, GuardedResult, GuardedScorer
from fraudstream.models.names import ModelName
from fraudstream.models.registry import LoadedModels
from fraudstream.models.scorers import Scorer, rank_contributions
from fraudstream.stream.contract import DeadLetter, Decision, ShadowDecision
from fraudstream.thresholds.pair import ThresholdPair
from fraudstream.thresholds.rules.engine import (
    DECISION_OF_ACTION,
    NO_RULES,
    RuleSet,
    RuleVerdict,
)

#: How many XGBoost contributions a flagged decision lists in its `reasons`.
TOP_REASONS = 3
#: Batches up to this many rows get XGBoost's contributions with its scores, from one call
#: (cheap with the compiled trees); larger ones (a catch-up after a restart) are scored
#: first and only their flagged rows explained, with what is left of the model budget.
EXPLAIN_WITH_SCORES_MAX_ROWS = 64


@dataclass(frozen=True)
class IncomingRecord:
    """A raw record as consumed; `produced_at` (epoch s) anchors end-to-end latency.

    `value` is None for a Kafka tombstone (a null value), which is dead-lettered.
    """

    value: bytes | None
    produced_at: float


@dataclass(frozen=True)
class ShadowCandidate:
    """A registry version scored beside the live one and logged, never used to decide."""

    models: LoadedModels
    weights: Mapping[str, float]
    thresholds: ThresholdPair


@dataclass
class BatchOutcome:
    """What one micro-batch produced; `decisions` and `dead_letters` follow stream/contract.py."""

    decisions: list[Decision] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    feature_store_errors: int = 0
    #: Times the feature store was found wiped since the last batch (Redis restarted empty).
    feature_store_resets: int = 0
    #: Decisions whose windows may miss events lost in such a reset.
    partial_history: int = 0
    fallbacks: list[tuple[str, str]] = field(default_factory=list)
    #: Milliseconds per stage for the whole batch (every decision's `latency_ms` repeats them).
    stage_ms: dict[str, float] = field(default_factory=dict)
    #: Per (business rule or list id, its action): decisions it fired for, and those its
    #: action made (it came first in precedence).
    rules_fired: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    rules_decided: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)


def dead_letter(raw: bytes | None, error: str, stage: str, ids: IdPseudonyms) -> DeadLetter:
    """The dead letter of `raw`: its bytes with ids masked (`DeadLetter.of`), why, where, now.

    A tombstone (None) has no bytes; its letter's `raw` is empty and `error` says why.
    """
    return DeadLetter.of(b"" if raw is None else raw, error, stage, ids)


def unexpected(error: Exception) -> str:
    """A dead letter's `error` for a failure that is not bad input: the class, then why."""
    return f"{type(error).__name__}: {error}"


def _spread(values: NDArray[Any], rows: NDArray[np.intp], length: int) -> NDArray[np.float64]:
    """`values` of `rows` placed in a batch of `length` rows, NaN for the rows not scored."""
    spread = np.full(length, np.nan)
    spread[rows] = values
    return spread


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class DecisionPipeline:
    """Turns micro-batches of raw transactions into decisions with one feature-store round trip.

    `feature_store` gives the feature rows, `score_store` keeps each decision's score for the
    late labels; both are Redis in the worker (features/store.py) and may be the in-memory
    ones (features/memory_store.py) anywhere else. Right after parsing, `ids` replaces card
    and merchant ids by their pseudonyms: nothing downstream sees a raw one.
    """

    def __init__(
        self,
        feature_store: FeatureStore,
        score_store: ScoreStore,
        models: LoadedModels,
        weights: Mapping[str, float],
        thresholds: ThresholdPair,
        timeout_s: float,
        fallback_policy: str = "neutral",
        scorers: Sequence[Scorer] | None = None,
        stand_in_after_s: float | None = None,
        *,
        ids: IdPseudonyms,
        max_event_skew_s: float | None = None,
    ) -> None:
        self.ids = ids
        #: A transaction whose event_time is further than this from its broker timestamp
        #: is dead-lettered (None: not checked): one dated years ahead would evict its card's
        #: window, one back-dated would be scored without history.
        self.max_event_skew_s = max_event_skew_s
        self.feature_store = feature_store
        self.score_store = score_store
        self.models = models
        self.weights = dict(weights)
        self.thresholds = thresholds
        chosen = scorers if scorers is not None else (models.xgboost, models.isolation_forest)
        self.scorers = [GuardedScorer(scorer, timeout_s) for scorer in chosen]
        #: The business rules in force (the worker swaps in edits: stream/worker/rules_watch.py).
        self.rule_set = NO_RULES
        self.last_scores = FallbackScores() if fallback_policy == "last_score" else None
        self.shadow: ShadowCandidate | None = None
        #: A record older than this when taken is decided by XGBoost alone (None: never).
        self.stand_in_after_s = stand_in_after_s
        self._resets_reported = 0

    def use_models(self, models: LoadedModels, weights: Mapping[str, float]) -> None:
        """Swap in another registry version between two batches (hot reload)."""
        if models.feature_names != self.models.feature_names:
            raise ValueError(
                f"model {models.version} expects other features than this worker computes; "
                "it needs a worker built for them"
            )
        timeout_s = self.scorers[0].timeout_s
        retired = self.scorers
        self.models, self.weights = models, dict(weights)
        self.scorers = [
            GuardedScorer(scorer, timeout_s) for scorer in (models.xgboost, models.isolation_forest)
        ]
        for scorer in retired:
            scorer.close()

    def close(self) -> None:
        for scorer in self.scorers:
            scorer.close()

    async def process(self, records: Sequence[IncomingRecord]) -> BatchOutcome:
        """Decisions and dead letters for one micro-batch; never raises.

        A record that fails validation is dead-lettered at stage `validate`, one that reuses
        a `txn_id` with other content at stage `deduplicate`; a record that makes deciding
        fail (a bug, not bad input) at stage `decide`, by itself. The
        feature store failing is not such a failure: the batch is decided degraded.
        """
        outcome = BatchOutcome()
        taken_at, started = time.time(), time.perf_counter()
        valid: list[tuple[Transaction, IncomingRecord]] = []
        for record in records:
            try:
                txn = self.ids.transaction(parse_transaction(record.value))
                self._check_event_time(txn, record)
                valid.append((txn, record))
            except InvalidTransaction as error:
                outcome.dead_letters.append(dead_letter(record.value, str(error), "validate",
                                                        self.ids))  # fmt: skip
            except Exception as error:  # a parser bug must not take the batch with it
                outcome.dead_letters.append(dead_letter(record.value, unexpected(error),
                                                        "validate", self.ids))  # fmt: skip
        if valid:
            valid = await self._without_conflicting_duplicates(valid, outcome)
        validate_s = time.perf_counter() - started
        if valid:
            await self._decide_isolating_failures(valid, validate_s, taken_at, outcome)
        return outcome

    def _check_event_time(self, txn: Transaction, record: IncomingRecord) -> None:
        """Raise `InvalidTransaction` when `event_time` is too far from the broker's clock."""
        limit = self.max_event_skew_s
        if limit is not None and abs(skew := txn.event_time - record.produced_at) > limit:
            raise InvalidTransaction(
                f"field 'event_time' must lie within ± {limit / 3600:g} h of the broker "
                f"timestamp, got {abs(skew) / 3600:,.1f} h {'after' if skew > 0 else 'before'} "
                "it (FRAUDSTREAM_MAX_EVENT_SKEW_S)"
            )

    async def _without_conflicting_duplicates(
        self, valid: list[tuple[Transaction, IncomingRecord]], outcome: BatchOutcome
    ) -> list[tuple[Transaction, IncomingRecord]]:
        """Dead-letter records that reuse a decided `txn_id` with other content.

        Consumers keep the first decision per `txn_id`, so deciding such a record again
        would hide it downstream. With the store down nothing can be compared: the batch
        goes on, decided degraded like any batch without Redis.
        """
        try:
            conflicting = await self.feature_store.claim([txn for txn, _ in valid])
        except FeatureStoreError:
            return valid
        kept = []
        for (txn, record), conflict in zip(valid, conflicting, strict=True):
            if conflict:
                error = (f"conflicting_duplicate: txn_id {txn.txn_id!r} was already seen with "
                         "other content; only the first is decided")  # fmt: skip
                outcome.dead_letters.append(dead_letter(record.value, error, "deduplicate",
                                                        self.ids))  # fmt: skip
            else:
                kept.append((txn, record))
        return kept

    async def _decide_isolating_failures(
        self, valid: list[tuple[Transaction, IncomingRecord]], validate_s: float,
        taken_at: float, outcome: BatchOutcome,
    ) -> None:  # fmt: skip
        """Decide `valid` as one batch; should that raise, decide each record alone.

        So a record that breaks deciding costs its own dead letter, never its batch-mates'
        decisions. Deciding a record again is safe: windows are idempotent per txn_id.
        """
        attempt = BatchOutcome()
        try:
            await self._decide(valid, validate_s, taken_at, attempt)
            await self._remember_scores(attempt)
        except Exception as error:
            if len(valid) == 1:
                outcome.dead_letters.append(
                    dead_letter(valid[0][1].value, unexpected(error), "decide", self.ids)
                )
                return
            for one in valid:
                await self._decide_isolating_failures([one], validate_s, taken_at, outcome)
            return
        outcome.decisions += attempt.decisions
        outcome.feature_store_errors += attempt.feature_store_errors
        outcome.feature_store_resets += attempt.feature_store_resets
        outcome.partial_history += attempt.partial_history
        outcome.fallbacks += attempt.fallbacks
        outcome.stage_ms = attempt.stage_ms
        outcome.rules_fired += attempt.rules_fired
        outcome.rules_decided += attempt.rules_decided

    async def _features(
        self, transactions: list[Transaction]
    ) -> tuple[NDArray[Any], NDArray[np.bool_]]:
        """Feature rows, and per row whether the store failed it (a history-free row then,
        degraded): every row, or those on a failed Redis Cluster master."""
        try:
            rows = await self.feature_store.record_and_featurize(transactions)
            return np.vstack(rows), np.zeros(len(transactions), dtype=bool)
        except FeatureStorePartlyUnavailable as partial:
            served: list[NDArray[Any] | None] = partial.vectors
        except FeatureStoreError:
            served = [None] * len(transactions)
        failed = np.array([row is None for row in served], dtype=bool)
        return np.vstack([
            feature_vector(txn, [], NO_MERCHANT_HISTORY) if row is None else row
            for txn, row in zip(transactions, served, strict=True)
        ]), failed  # fmt: skip

    async def _decide(
        self, valid: list[tuple[Transaction, IncomingRecord]], validate_s: float,
        taken_at: float, outcome: BatchOutcome,
    ) -> None:  # fmt: skip
        transactions = [txn for txn, _ in valid]
        mark = time.perf_counter()
        features, store_failed = await self._features(transactions)
        features_s = time.perf_counter() - mark
        outcome.feature_store_errors += int(store_failed.any())
        self._count_partial_history(transactions, store_failed, outcome)
        ages = np.array([taken_at - record.produced_at for _, record in valid])
        stand_in = (
            ages > self.stand_in_after_s
            if self.stand_in_after_s is not None
            else np.zeros(len(valid), dtype=bool)
        )
        fresh = np.flatnonzero(~stand_in)

        per_model = await self._score_models(features, fresh)
        mark = time.perf_counter()
        scored = self._ensemble(per_model, transactions, stand_in, outcome)
        ensemble_s = time.perf_counter() - mark
        mark = time.perf_counter()
        rule_set = self.rule_set  # one set for the whole batch, whatever a reload does
        verdicts = rule_set.evaluate(transactions, features)
        outcomes = [  # a rule that fired overrides the model's thresholds
            DECISION_OF_ACTION[verdict.action]
            if verdict.action is not None
            else self.thresholds.decide(combined.score)
            for verdict, (_, _, combined) in zip(verdicts, scored, strict=True)
        ]
        self._count_rules(rule_set, verdicts, outcome)
        threshold_s = time.perf_counter() - mark
        reasons = await self._reasons(features, outcomes, fresh, per_model.get(ModelName.XGBOOST))
        shadow = await self._shadow_scores(features, fresh)
        feature_rows = features.tolist()  # one conversion for the batch, not one per row

        outcome.stage_ms = {
            "validate": _ms(validate_s),
            "features": _ms(features_s),
            **{str(name): _ms(result.seconds) for name, result in per_model.items()},
            "ensemble": _ms(ensemble_s),
            "threshold": _ms(threshold_s),
        }
        decided_at = time.time()
        for row, (txn, record) in enumerate(valid):
            model_scores, fallbacks, combined = scored[row]
            latency = {**outcome.stage_ms, "end_to_end": _ms(decided_at - record.produced_at)}
            if stand_in[row]:
                reasons[row] = [self._stand_in_reason(ages[row])]
            reasons[row] += [f"rule: {rule_id}" for rule_id in verdicts[row].fired]
            outcome.decisions.append(
                Decision(
                    txn_id=txn.txn_id,
                    card_id=txn.card_id,
                    event_time=txn.event_time,
                    decision=outcomes[row],
                    score=combined.score,
                    model_scores=model_scores,
                    fallbacks=fallbacks,
                    threshold_version=self.thresholds.version,
                    model_version=self.models.version,
                    reasons=tuple(reasons[row]),
                    latency_ms=latency,
                    # A stand-in skips models on purpose: only failures make it degraded.
                    degraded=bool(
                        store_failed[row] or fallbacks or (combined.degraded and not stand_in[row])
                    ),
                    # Logged at serving time: what the model saw, for audits and retraining.
                    features=tuple(feature_rows[row]),
                    stand_in=bool(stand_in[row]),
                    shadow=self._shadow_decision(shadow, row),
                    rules=verdicts[row].fired,
                    rules_version=rule_set.version,
                )
            )

    def _count_partial_history(
        self, transactions: Sequence[Transaction], store_failed: NDArray[np.bool_],
        outcome: BatchOutcome,
    ) -> None:  # fmt: skip
        """Count new feature-store resets, and the decisions whose history one may have cut."""
        store = self.feature_store
        outcome.feature_store_resets = store.resets - self._resets_reported
        self._resets_reported = store.resets
        until = store.partial_history_until
        if until is not None:  # a row the store failed is counted as degraded instead
            outcome.partial_history = sum(
                txn.event_time < until
                for txn, failed in zip(transactions, store_failed, strict=True) if not failed
            )  # fmt: skip

    @staticmethod
    def _count_rules(
        rule_set: RuleSet, verdicts: Sequence[RuleVerdict], outcome: BatchOutcome
    ) -> None:
        """Per (rule or list id, its action): decisions it fired for, and those it made."""
        for verdict in verdicts:
            outcome.rules_fired.update(
                (rule_id, rule_set.action_of[rule_id]) for rule_id in verdict.fired
            )
            if verdict.decided_by is not None and verdict.action is not None:
                outcome.rules_decided[verdict.decided_by, verdict.action] += 1

    def _stand_in_reason(self, age_s: float) -> str:
        assert self.stand_in_after_s is not None
        return (
            f"stand-in: taken {age_s * 1000:,.0f} ms after it was produced "
            f"(budget {self.stand_in_after_s * 1000:,.0f} ms); XGBoost alone, "
            "no IsolationForest, reasons or shadow"
        )

    async def _score_models(
        self, features: NDArray[Any], fresh: NDArray[np.intp]
    ) -> dict[str, GuardedResult]:
        """Each model's scores for every row; rows a model was not asked about are NaN.

        XGBoost scores every row; the other models only the `fresh` ones (a stand-in row
        is decided by XGBoost alone, see `stand_in_after_s`). In a small batch XGBoost's
        contributions come with its scores, from the same call: the reasons cost no second
        call under a second timeout (see `EXPLAIN_WITH_SCORES_MAX_ROWS`).
        """
        everyone = len(fresh) == len(features)
        # reasons are given for fresh rows only
        explain = len(fresh) > 0 and len(features) <= EXPLAIN_WITH_SCORES_MAX_ROWS

        async def score(scorer: GuardedScorer) -> GuardedResult:
            if everyone or scorer.name == ModelName.XGBOOST:
                return await scorer.score_batch(features, explain)
            if len(fresh) == 0:
                return GuardedResult(scorer.name, np.full(len(features), np.nan), None, 0.0)
            result = await scorer.score_batch(features[fresh])
            if result.scores is None:
                return result
            return replace(result, scores=_spread(result.scores, fresh, len(features)))

        if GuardedScorer.runs_inline():  # one after the other: no task per model and batch
            results = [await score(scorer) for scorer in self.scorers]
        else:  # each on its own thread, at once
            results = await asyncio.gather(*(score(scorer) for scorer in self.scorers))
        return {result.model: result for result in results}

    def _ensemble(
        self, per_model: Mapping[str, GuardedResult], transactions: Sequence[Transaction],
        stand_in: NDArray[np.bool_], outcome: BatchOutcome,
    ) -> list[tuple[dict[str, float | None], dict[str, str], EnsembleResult]]:  # fmt: skip
        """Per row: model scores, why any model fell back, and the combined score."""
        card_ids = [txn.card_id for txn in transactions]
        for result in per_model.values():
            if result.scores is None:
                outcome.fallbacks.append((result.model, str(result.fallback_reason)))
            elif self.last_scores is not None:
                asked = ~np.isnan(result.scores)
                self.last_scores.remember(
                    result.model, [c for c, a in zip(card_ids, asked, strict=True) if a],
                    result.scores[asked],
                )  # fmt: skip
        scored = []
        for row, card_id in enumerate(card_ids):
            model_scores: dict[str, float | None] = {}
            fallbacks: dict[str, str] = {}
            for name, result in per_model.items():
                if stand_in[row] and name != ModelName.XGBOOST:
                    model_scores[name] = None  # not asked: a stand-in, not a fallback
                elif result.scores is not None:
                    model_scores[name] = float(result.scores[row])
                else:
                    model_scores[name], fallbacks[name] = self._fallback(name, card_id, result)
            scored.append((model_scores, fallbacks, combine(model_scores, self.weights)))
        return scored

    def _fallback(self, name: str, card_id: str, result: GuardedResult) -> tuple[float | None, str]:
        """A failed model's stand-in score for one card (its last, under that policy) and why."""
        last = self.last_scores.recall(name, card_id) if self.last_scores else None
        if last is None:
            return None, str(result.fallback_reason)
        return last, f"{result.fallback_reason}; used the card's last score"

    def _shadow_decision(
        self, shadow: NDArray[np.float64] | None, row: int
    ) -> ShadowDecision | None:
        """The candidate's verdict on one row; None without a candidate or when it timed out."""
        if shadow is None or self.shadow is None or np.isnan(shadow[row]):
            return None
        score = float(shadow[row])
        return ShadowDecision(
            self.shadow.models.version, score, self.shadow.thresholds.decide(score)
        )

    async def _shadow_scores(
        self, features: NDArray[Any], fresh: NDArray[np.intp]
    ) -> NDArray[np.float64] | None:
        """The candidate's ensemble scores (NaN for stand-in rows), bounded like a model."""
        if self.shadow is None or len(fresh) == 0:
            return None
        candidate = self.shadow
        scored, _ = await self.scorers[0].call(
            lambda rows: combine_batch(
                {ModelName.XGBOOST: candidate.models.xgboost.score_batch(rows),
                 ModelName.ISOLATION_FOREST: candidate.models.isolation_forest.score_batch(rows)},
                candidate.weights,
            ),
            features[fresh],
        )  # fmt: skip
        return None if scored is None else _spread(scored, fresh, len(features))

    async def _remember_scores(self, outcome: BatchOutcome) -> None:
        """Keep each decision's score where a late label (any worker) can find it."""
        scored = [(d.txn_id, d.event_time, d.score) for d in outcome.decisions]
        try:
            await self.score_store.record_scores(scored)
        except FeatureStoreError:
            outcome.feature_store_errors += 1

    async def _reasons(
        self, features: NDArray[Any], outcomes: list[str], fresh: NDArray[np.intp],
        xgboost: GuardedResult | None,
    ) -> list[list[str]]:  # fmt: skip
        """Top XGBoost contributions for flagged fresh rows; approvals get none.

        When the contributions would not fit in XGBoost's budget the flagged rows say the
        reasons were skipped and why; their decisions stand.
        """
        flagged = [int(row) for row in fresh if outcomes[row] != "approve"]
        reasons: list[list[str]] = [[] for _ in outcomes]
        if not flagged:
            return reasons
        names = self.models.feature_names
        contributions, skipped = await self._flagged_contributions(features, flagged, xgboost)
        ranked = None if contributions is None else rank_contributions(
            contributions, names, TOP_REASONS
        )  # fmt: skip
        for position, row in enumerate(flagged):
            if ranked is not None:
                reasons[row] = [
                    f"{name}={features[row, names.index(name)]:.4g} ({value:+.2f})"
                    for name, value in ranked[position]
                    if value > 0
                ]
            elif skipped is not None:
                reasons[row] = [f"model reasons skipped: {skipped}"]
        return reasons

    async def _flagged_contributions(
        self, features: NDArray[Any], flagged: list[int], xgboost: GuardedResult | None
    ) -> tuple[NDArray[np.float64] | None, str | None]:
        """XGBoost's contributions of the flagged rows, or None and why there are none."""
        if xgboost is None or xgboost.scores is None:
            return None, None  # XGBoost fell back: the decision already says why
        if xgboost.contributions is not None:
            return xgboost.contributions[flagged], None
        scorer = next(s for s in self.scorers if s.name == ModelName.XGBOOST)
        return await scorer.explain(features[flagged], scorer.timeout_s - xgboost.seconds)
