"""`fraudstream explain`: one decision walked through, stage by stage, as a design interview
would ask for it.

The story is assembled from what the system recorded, never recomputed from models: the
decision record (its features, model scores, reasons, latency), the transaction it decided
(a run folder's stream file, or the `transactions` topic), the model version's ensemble
weights (registry metadata, overridden by settings as in the worker) and the threshold
pair named by `threshold_version` (the version's static pair, or the group's published
history). What cannot be found is said, not guessed: `notes` lists it.

`explain_decision` is pure and returns JSON-ready data; `format_explanation` lays it out as
Markdown-ish text. The two finders (`sources_from_run`, `sources_from_topics`) gather the
inputs.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.transaction import (
    InvalidTransaction,
    Label,
    Transaction,
    parse_transaction,
)
from fraudstream.models.ensemble import combine
from fraudstream.models.registry import RegistryError, load_version
from fraudstream.models.signing import SigningKeyError, signing_key_for
from fraudstream.stream.contract import Decision
from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.streamfile import read_stream_file
from fraudstream.stream.tools.run_files import (
    DECISIONS_FILE,
    THRESHOLD_HISTORY_FILE,
    TRANSACTIONS_FILE,
    read_decision_records,
    read_threshold_history,
)
from fraudstream.stream.tools.services import kafka_bootstrap
from fraudstream.stream.tools.tail import TAIL_FETCH_MAX_WAIT_MS, event_time_text
from fraudstream.stream.tools.topic_reader import TopicReader
from fraudstream.stream.worker.recalibration import shared_threshold
from fraudstream.stream.worker.runtime import registry_pair, weights_for
from fraudstream.thresholds.pair import ThresholdPair
from fraudstream.thresholds.shared import SharedThresholdError

#: How long `explain` without a run folder searches the topics from their beginning.
DEFAULT_SEARCH_TIMEOUT_S = 30.0


class DecisionNotFound(LookupError):
    """No decision for the transaction where `explain` looked."""


@dataclass(frozen=True)
class DecisionSources:
    """What was found about one decision: its record as on the topic (fields the contract
    does not know yet, such as fired `rules`, included), and whatever else could be."""

    record: Mapping[str, Any]
    transaction: Transaction | None = None
    label: Label | None = None
    weights: Mapping[str, float] | None = None
    feature_names: Sequence[str] = FEATURE_NAMES
    pair: ThresholdPair | None = None
    notes: tuple[str, ...] = field(default=())


def _model_rows(decision: Decision, weights: Mapping[str, float] | None) -> list[dict[str, Any]]:
    """Each model's score, configured weight, weight used (renormalised over the models that
    answered, as `combine` does) and contribution = weight used x score."""
    used: Mapping[str, float] | None = None
    if weights is not None and all(name in weights for name in decision.model_scores):
        used = combine(decision.model_scores, weights).weights_used
    rows = []
    for name, score in decision.model_scores.items():
        weight_used = None if used is None else used[name]
        rows.append({
            "model": name, "score": score,
            "weight": None if weights is None else weights.get(name),
            "weight_used": weight_used,
            "contribution": None if weight_used is None or score is None
                            else weight_used * score,
            "fallback": decision.fallbacks.get(name),
        })  # fmt: skip
    return rows


def explain_decision(sources: DecisionSources) -> dict[str, Any]:
    """The walk-through of one decision as JSON-ready data (see `format_explanation`)."""
    record = sources.record
    decision = Decision.from_dict(record)
    models = _model_rows(decision, sources.weights)
    contributions = [row["contribution"] for row in models]
    pair = sources.pair
    return {
        "txn_id": decision.txn_id,
        "card_id": decision.card_id,
        "event_time": decision.event_time,
        "decision": decision.decision,
        "score": decision.score,
        "transaction": None if sources.transaction is None else sources.transaction.to_dict(),
        "label": None if sources.label is None else sources.label.to_dict(),
        "features": dict(zip(sources.feature_names, decision.features, strict=False)),
        "model_version": decision.model_version,
        "models": models,
        "ensemble_recomputed": None if None in contributions or not contributions
                               else sum(contributions),
        "threshold": {"version": decision.threshold_version,
                      "review": None if pair is None else pair.review,
                      "decline": None if pair is None else pair.decline},
        "rules": list(record.get("rules") or []),
        "rules_version": record.get("rules_version"),
        "reasons": list(decision.reasons),
        "fallbacks": dict(decision.fallbacks),
        "stand_in": decision.stand_in,
        "degraded": decision.degraded,
        "latency_ms": dict(decision.latency_ms),
        "shadow": None if decision.shadow is None else decision.shadow.to_dict(),
        "notes": list(sources.notes),
    }  # fmt: skip


def _number(value: float | None, spec: str = ".4f") -> str:
    return "?" if value is None else format(value, spec)


def _transaction_lines(story: Mapping[str, Any]) -> list[str]:
    txn, label = story["transaction"], story["label"]
    lines = ["## 1. The transaction", ""]
    if txn is None:
        lines.append("not found (see notes); the decision's own fields:")
        lines.append(f"- card (pseudonym) {story['card_id']}, "
                     f"event time {event_time_text(story['event_time'])} UTC")  # fmt: skip
    else:
        lines += [f"- {name}: {value}" for name, value in txn.items()]
        lines.append(f"- event time: {event_time_text(txn['event_time'])} UTC; the card is "
                     f"{story['card_id']} in the decision (keyed pseudonym)")  # fmt: skip
    if label is not None:
        truth = f"fraud ({label['scenario']})" if label["is_fraud"] else "legitimate"
        lines.append(f"- truth, labelled later: {truth}")
    return lines


def _model_lines(story: Mapping[str, Any]) -> list[str]:
    lines = [f"## 3. Models and the ensemble (model version {story['model_version']})", "",
             "| model | score | weight | weight used | contribution | fallback |",
             "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for row in story["models"]:
        lines.append(
            f"| {row['model']} | {_number(row['score'])} | {_number(row['weight'], '.3f')} | "
            f"{_number(row['weight_used'], '.3f')} | {_number(row['contribution'])} | "
            f"{row['fallback'] or '-'} |"
        )
    lines += ["", f"ensemble score {story['score']:.4f} (weighted mean of the scores that "
              f"answered; the contributions sum to {_number(story['ensemble_recomputed'])})"]
    return lines  # fmt: skip


def _threshold_lines(story: Mapping[str, Any]) -> list[str]:
    pair = story["threshold"]
    line = f"pair {pair['version']}"
    if pair["review"] is not None:
        line += f": review at score >= {pair['review']:.4f}, decline at >= {pair['decline']:.4f}"
    else:
        line += ": its review/decline values were not found (see notes)"
    return ["## 4. Thresholds", "", line,
            f"score {story['score']:.4f} -> {story['decision'].upper()}"]  # fmt: skip


def _health_lines(story: Mapping[str, Any]) -> list[str]:
    fallbacks = story["fallbacks"]
    lines = ["## 7. Fallbacks and degraded mode", "",
             "- fallbacks: " + ("; ".join(f"{m}: {why}" for m, why in fallbacks.items())
                                or "none"),
             f"- stand-in (decided late by XGBoost alone): {'yes' if story['stand_in'] else 'no'}",
             f"- degraded (features or a model missing): {'yes' if story['degraded'] else 'no'}"]
    if story["shadow"] is not None:
        shadow = story["shadow"]
        lines.append(f"- shadow {shadow['model_version']} would have said "
                     f"{shadow['decision']} at {shadow['score']:.4f}")
    return lines  # fmt: skip


def format_explanation(story: Mapping[str, Any]) -> str:
    """`explain_decision`'s data as a Markdown walk-through, stage by stage."""
    rules = story["rules"]
    rules_line = ", ".join(rules) if rules else "none"
    if story["rules_version"] is not None:
        rules_line += f" (rules version {story['rules_version']})"
    lines = [f"# Decision for {story['txn_id']}: {story['decision'].upper()} "
             f"(score {story['score']:.4f})", ""]  # fmt: skip
    lines += _transaction_lines(story)
    lines += ["", "## 2. Window features (what the models saw)", "",
              "| feature | value |", "|---|---:|"]  # fmt: skip
    lines += [f"| {name} | {value:.6g} |" for name, value in story["features"].items()]
    lines += ["", *_model_lines(story), "", *_threshold_lines(story), "",
              "## 5. Rules fired", "", rules_line, "", "## 6. Reasons", ""]  # fmt: skip
    lines += [f"- {reason}" for reason in story["reasons"]] or ["none (approvals carry none)"]
    lines += ["", *_health_lines(story), "", "## 8. Latency by stage (ms)", "",
              "| stage | ms |", "|---|---:|"]  # fmt: skip
    lines += [f"| {stage} | {ms:.2f} |" for stage, ms in story["latency_ms"].items()]
    if story["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in story["notes"]]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _ModelContext:
    weights: Mapping[str, float] | None
    feature_names: Sequence[str]
    static_pair: ThresholdPair | None
    notes: tuple[str, ...]


def _model_context(settings: Settings, registry: Path, model_version: str) -> _ModelContext:
    """The version's weights (as the worker applies them), feature names and static pair.

    Loaded with hashes checked but no signature: a report on a registry the caller trusts.
    """
    try:
        models = load_version(registry, model_version)
    except (RegistryError, OSError) as error:
        return _ModelContext(None, FEATURE_NAMES, None,
                             (f"weights and static pair unknown: {error}",))  # fmt: skip
    return _ModelContext(weights_for(settings, models), models.feature_names,
                         registry_pair(models), ())  # fmt: skip


def _pair_in_history(version: str, history: Sequence[Mapping[str, Any]]) -> ThresholdPair | None:
    """The published pair named `version` (`v12`) among states {version, review, decline}."""
    for state in history:
        if f"v{state['version']}" == version:
            return ThresholdPair(version, float(state["review"]), float(state["decline"]))
    return None


def _threshold_pair(
    version: str, context: _ModelContext, history: Sequence[Mapping[str, Any]]
) -> ThresholdPair | None:
    if context.static_pair is not None and context.static_pair.version == version:
        return context.static_pair
    return _pair_in_history(version, history)


def _sources(
    record: Mapping[str, Any], transaction: Transaction | None, label: Label | None,
    settings: Settings, registry: Path, history: Sequence[Mapping[str, Any]],
    notes: Sequence[str],
) -> DecisionSources:  # fmt: skip
    context = _model_context(settings, registry, str(record["model_version"]))
    pair = _threshold_pair(str(record["threshold_version"]), context, history)
    missing = [] if pair is not None else [
        f"threshold pair {record['threshold_version']} is neither {record['model_version']}'s "
        "static pair nor in the threshold history found"
    ]  # fmt: skip
    return DecisionSources(record, transaction, label, context.weights, context.feature_names,
                           pair, (*notes, *context.notes, *missing))  # fmt: skip


def sources_from_run(
    run_dir: Path, txn_id: str, settings: Settings, registry: Path
) -> DecisionSources:
    """Everything about `txn_id` from a `fraudstream demo --out` folder: its first decision
    (delivery is at least once), the replayed transaction and label, the threshold history."""
    decisions_path = run_dir / DECISIONS_FILE
    if not decisions_path.is_file():
        raise DecisionNotFound(f"{decisions_path} does not exist: is {run_dir} a run folder of "
                               "`fraudstream demo --out`, made since it keeps decisions?")
    record = next((r for r in read_decision_records(decisions_path) if r.get("txn_id") == txn_id),
                  None)  # fmt: skip
    if record is None:
        raise DecisionNotFound(f"no decision for {txn_id!r} in {decisions_path}")
    notes: list[str] = []
    transaction = label = None
    stream_path = run_dir / TRANSACTIONS_FILE
    if stream_path.is_file():
        transactions, labels = read_stream_file(stream_path)
        transaction = next((t for t in transactions if t.txn_id == txn_id), None)
        label = next((lb for lb in labels if lb.txn_id == txn_id), None)
    else:
        notes.append(f"{stream_path} does not exist: transaction not shown")
    history_path = run_dir / THRESHOLD_HISTORY_FILE
    history = read_threshold_history(history_path) if history_path.is_file() else []
    return _sources(record, transaction, label, settings, registry, history, notes)


def _find_on_topics(
    settings: Settings, kafka_url: str, txn_id: str, timeout_s: float
) -> tuple[dict[str, Any] | None, Transaction | None]:
    """The first decision and the transaction for `txn_id`, reading the decisions and
    transactions topics from their beginning until both are found or `timeout_s` passes."""
    arrived: queue.Queue[tuple[str, bytes]] = queue.Queue()
    reader = TopicReader(
        kafka_bootstrap(kafka_url), [settings.topic_decisions, settings.topic_transactions],
        settings.partitions, lambda topic, value, _read_at: arrived.put((topic, value)),
        from_end=False, fetch_max_wait_ms=TAIL_FETCH_MAX_WAIT_MS, security=settings.kafka_security,
    )  # fmt: skip
    record: dict[str, Any] | None = None
    transaction: Transaction | None = None
    reader.start()
    try:
        reader.wait_ready(timeout_s)
        deadline = time.monotonic() + timeout_s
        while (record is None or transaction is None) and time.monotonic() < deadline:
            reader.raise_error()
            try:
                topic, value = arrived.get(timeout=0.2)
                found = orjson.loads(value)
            except (queue.Empty, orjson.JSONDecodeError):
                continue
            if not isinstance(found, dict) or found.get("txn_id") != txn_id:
                continue
            if topic == settings.topic_decisions and record is None:
                record = found
            elif topic == settings.topic_transactions and transaction is None:
                try:
                    transaction = parse_transaction(found)
                except InvalidTransaction:
                    continue
    finally:
        reader.stop()
    return record, transaction


def _published_history(settings: Settings, registry: Path) -> tuple[list[dict[str, Any]], str]:
    """The group's published threshold states from Redis, or none and why."""
    if settings.redis_url is None:
        return [], "FRAUDSTREAM_REDIS_URL unset: the group's threshold history not read"
    redis_url = settings.redis_url

    async def read() -> list[dict[str, Any]]:
        key = signing_key_for(registry, settings.signing_key)
        shared = shared_threshold(redis_url, settings.app_id, key)
        try:
            return [entry["state"] for entry in await shared.history(1000)]
        finally:
            await shared.close()

    try:
        return asyncio.run(read()), ""
    except (SharedThresholdError, SigningKeyError) as error:
        return [], f"threshold history not read: {error}"


def sources_from_topics(
    settings: Settings, txn_id: str, registry: Path,
    timeout_s: float = DEFAULT_SEARCH_TIMEOUT_S,
) -> DecisionSources:  # fmt: skip
    """Everything about `txn_id` from the live system: the topics read from their beginning
    (bounded by `timeout_s`), the registry, and the group's threshold history in Redis."""
    if settings.kafka_url is None:
        raise DecisionNotFound("explain without --run needs FRAUDSTREAM_KAFKA_URL")
    record, transaction = _find_on_topics(settings, settings.kafka_url, txn_id, timeout_s)
    if record is None:
        raise DecisionNotFound(f"no decision for {txn_id!r} on {settings.topic_decisions} "
                               f"within {timeout_s:g} s")  # fmt: skip
    notes = [] if transaction is not None else [
        f"transaction not found on {settings.topic_transactions} within {timeout_s:g} s"]
    history, why = _published_history(settings, registry)
    return _sources(record, transaction, None, settings, registry, history,
                    [*notes, why] if why else notes)  # fmt: skip
