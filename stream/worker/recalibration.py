"""The dynamic threshold in a worker: join late labels to scores, recalibrate, stay in sync.

Labels are keyed by `txn_id`, so the worker that receives a label is usually not the one
that decided the transaction; the decision's score is therefore looked up in the shared
score store (`ScoreStore.scores_for`, Redis in the worker). Any worker may recalibrate;
publishing is a compare-and-set on the shared threshold, so two workers never create the
same version, and every worker applies whatever is live within one refresh interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from fraudstream.features.stores import ScoreStore
from fraudstream.features.transaction import Label
from fraudstream.models.signing import SigningKey
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.online import (
    GuardRails,
    LabelledWindow,
    Recalibration,
    ThresholdState,
    recalibrate,
)
from fraudstream.thresholds.optimise import Constraints
from fraudstream.thresholds.shared import SharedThreshold

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400.0
#: Matured labelled decisions between two recalibration attempts.
RECALIBRATE_EVERY = 200
#: Online guard rails: the window holds few frauds, so move slowly (see thresholds/online.py).
ONLINE_RAILS = GuardRails(min_frauds=100, min_legits=2000, max_step=0.02, smoothing=0.3)


class ThresholdKeeper:
    """Owns a worker's labelled window and its view of the group's live threshold."""

    def __init__(
        self,
        shared: SharedThreshold,
        score_store: ScoreStore,
        window: LabelledWindow,
        cost: CostModel,
        constraints: Constraints,
        rails: GuardRails = ONLINE_RAILS,
    ) -> None:
        self.shared = shared
        self.score_store = score_store
        self.window = window
        self.cost = cost
        self.constraints = constraints
        self.rails = rails
        self.live: ThresholdState | None = None
        self._floor_yielded = False
        self._since_attempt = 0
        self._stream_time = float("-inf")

    async def start(self, initial: ThresholdState) -> ThresholdState:
        """Publish `initial` unless the group already has a live threshold; adopt it."""
        self.live = await self.shared.initialise(initial)
        return self.live

    async def refresh(self) -> ThresholdState | None:
        """The group's live threshold (None when nothing is published yet)."""
        current = await self.shared.current()
        if current is not None:
            self.live = current
        return self.live

    async def model_changed(
        self, model_version: str, review: float, decline: float
    ) -> ThresholdState:
        """A new model's scores need its own pair: publish it once for the whole group.

        Every worker calls this when it loads the version; the first publishes, the others
        find the live state already tagged with the model version and adopt it.
        """
        for _ in range(3):
            live = await self.refresh()
            assert live is not None
            if live.figures.get("model_version") == model_version:
                return live
            proposed = ThresholdState(live.version + 1, review, decline,
                                      f"model {model_version} promoted: its validation optimum",
                                      {"model_version": model_version})  # fmt: skip
            if await self.shared.publish(proposed, expected_version=live.version):
                self.live = proposed
                return proposed
        return await self.refresh() or proposed

    async def learn(self, labels: Sequence[Label]) -> Recalibration | None:
        """Add labelled decisions; recalibrate every `RECALIBRATE_EVERY` matured ones.

        Returns the attempt when one was made (accepted or not), else None.
        """
        scores = await self.score_store.scores_for([label.txn_id for label in labels])
        for label, found in zip(labels, scores, strict=True):
            self._stream_time = max(self._stream_time, label.label_time)
            if found is not None:
                event_time, score = found
                self.window.add(event_time, min(1.0, max(0.0, score)), label.is_fraud)
        before = self.window.released
        self.window.evict(self._stream_time)
        self._since_attempt += self.window.released - before
        if self._since_attempt < RECALIBRATE_EVERY or self.live is None:
            return None
        self._since_attempt = 0
        await self.refresh()
        assert self.live is not None
        # Off the event loop: an attempt costs ~10 ms per 10,000 labelled decisions in the
        # window (100,000 at most), and on the loop it stalled every batch in flight
        # (issue 9). The window stays put meanwhile: only this method changes it, and the
        # label agent awaits it before taking its next batch.
        attempt = await asyncio.to_thread(
            recalibrate, self.live, self.window, self.cost, self.constraints, self.rails
        )
        self._note_recall_floor(attempt)
        if not attempt.accepted:
            return attempt
        figures = {**attempt.state.figures, "stream_time": self._stream_time,
                   "model_version": self.live.figures.get("model_version")}  # fmt: skip
        proposed = ThresholdState(attempt.state.version, attempt.state.review,
                                  attempt.state.decline, attempt.state.reason, figures)  # fmt: skip
        if await self.shared.publish(proposed, expected_version=self.live.version):
            self.live = proposed
            log.warning("threshold v%d: %s", proposed.version, proposed.reason)
        else:
            await self.refresh()  # another worker published first: adopt theirs
        return attempt

    def _note_recall_floor(self, attempt: Recalibration) -> None:
        """Log when the recall floor starts and stops yielding to the hard limits (not at
        every attempt: under a tight review capacity it may yield for days). An attempt
        that stopped before optimising (too few labels) says nothing about the floor."""
        if "optimum_review" not in attempt.figures:
            return
        reason = attempt.figures.get("recall_floor_yielded")
        if (reason is not None) != self._floor_yielded:
            self._floor_yielded = reason is not None
            if reason is not None:
                log.warning("recall floor yields to the FPR cap and review capacity: %s", reason)
            else:
                log.warning("recall floor %s met again", self.constraints.min_recall)


async def describe_live_threshold(
    redis_url: str, group: str, signing_key: SigningKey, limit: int = 20
) -> str:
    """The live version (verified with `signing_key`), its history and the expected cost
    per transaction at each."""
    shared = shared_threshold(redis_url, group, signing_key)
    try:
        live = await shared.current()
        history = await shared.history(limit)
    finally:
        await shared.close()
    if live is None:
        return f"no threshold published for consumer group {group!r} yet"
    lines = [
        f"live: v{live.version}  review >= {live.review:.4f}  decline >= {live.decline:.4f}",
        f"      {live.reason}",
        "",
        f"{'version':>7} {'review':>8} {'decline':>8} {'cost/txn before':>16} "
        f"{'cost/txn after':>15} {'frauds':>7} {'legits':>7}  reason",
    ]
    for entry in history:
        state = ThresholdState.from_dict(entry["state"])
        figures = state.figures

        def cell(key: str, width: int, figures: dict[str, object] = figures) -> str:
            value = figures.get(key)
            return f"{value:>{width}.3f}" if isinstance(value, float) else f"{'-':>{width}}"

        lines.append(
            f"{state.version:>7} {state.review:>8.4f} {state.decline:>8.4f} "
            f"{cell('cost_per_txn_current', 16)} {cell('cost_per_txn_new', 15)} "
            f"{figures.get('frauds', '-'):>7} {figures.get('legits', '-'):>7}  {state.reason}"
        )
    return "\n".join(lines)


def shared_threshold(redis_url: str, group: str, signing_key: SigningKey) -> SharedThreshold:
    """The shared threshold of one consumer group (close it when done)."""
    return SharedThreshold.from_url(
        redis_url, key_prefix=f"fs:{{threshold:{group}}}", signing_key=signing_key
    )


def keeper_for(
    score_store: ScoreStore, redis_url: str, group: str, signing_key: SigningKey, *,
    maturity_days: float, window_days: float, cost: CostModel, constraints: Constraints,
) -> ThresholdKeeper:  # fmt: skip
    """A keeper whose shared threshold is scoped to one consumer group, recalibrating
    within `constraints` (`Settings.recalibration_constraints`)."""
    return ThresholdKeeper(
        shared_threshold(redis_url, group, signing_key),
        score_store,
        LabelledWindow(
            max_size=100_000,
            max_age_s=window_days * SECONDS_PER_DAY,
            maturity_s=maturity_days * SECONDS_PER_DAY,
        ),  # fmt: skip
        cost,
        constraints,
    )
