"""Where `fraudstream explain` finds what it shows about one decision.

From a run folder of `fraudstream demo --out` (stream/tools/run_files.py), or from the live
system: the decisions and transactions topics read from their beginning (bounded by a
timeout) and the group's threshold history in Redis. Either way the model version's
ensemble weights (registry metadata, overridden by settings as in the worker) and, for a
`<version>-static` pair, its values come from the registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from fraudstream.models.registry import RegistryError, load_version
from fraudstream.models.signing import SigningKeyError, signing_key_for
from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.rejected import RejectedRecords, rejected_path_for
from fraudstream.stream.sim.streamfile import read_stream_file
from fraudstream.stream.tools.explain import DecisionSources
from fraudstream.stream.tools.run_files import (
    DECISIONS_FILE,
    THRESHOLD_HISTORY_FILE,
    TRANSACTIONS_FILE,
    read_decision_records,
    read_threshold_history,
)
from fraudstream.stream.tools.services import kafka_bootstrap
from fraudstream.stream.tools.tail import TAIL_FETCH_MAX_WAIT_MS
from fraudstream.stream.tools.topic_reader import arrivals
from fraudstream.stream.worker.recalibration import shared_threshold
from fraudstream.stream.worker.runtime import registry_pair, weights_for
from fraudstream.thresholds.pair import ThresholdPair
from fraudstream.thresholds.shared import SharedThresholdError

#: How long `explain` without a run folder searches the topics from their beginning.
DEFAULT_SEARCH_TIMEOUT_S = 30.0


class DecisionNotFound(LookupError):
    """No decision for the transaction where `explain` looked."""


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
        with RejectedRecords(rejected_path_for(stream_path)) as rejects:
            transactions, labels = read_stream_file(stream_path, rejects)
        if rejects.count:
            notes.append(f"{stream_path}: {rejects.summary()}")
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
    records = arrivals(
        kafka_bootstrap(kafka_url), [settings.topic_decisions, settings.topic_transactions],
        settings.partitions, from_end=False, fetch_max_wait_ms=TAIL_FETCH_MAX_WAIT_MS,
        security=settings.kafka_security, ready_timeout_s=timeout_s, search_timeout_s=timeout_s,
    )  # fmt: skip
    record: dict[str, Any] | None = None
    transaction: Transaction | None = None
    try:
        for topic, value in records:
            try:
                found = orjson.loads(value)
            except orjson.JSONDecodeError:
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
            if record is not None and transaction is not None:
                break
    finally:
        records.close()  # stops the reader
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
