"""The offline path, rules backtest: replay history through the rules and the live model.

History is featurised by the offline builder and scored by the registry's live version
exactly as `fraudstream evaluate` scores it (the ensemble at the version's own weights and
static threshold pair); `thresholds.rules.backtest` then works out what each rule adds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fraudstream.features.builder import build_features
from fraudstream.features.transaction import Label, Transaction
from fraudstream.models.ensemble import EnsembleWeights
from fraudstream.models.registry import load_version
from fraudstream.stream.offline.training import score_all
from fraudstream.stream.served_features import trained_label_delay_s
from fraudstream.stream.sim.rejected import RejectedRecords
from fraudstream.stream.sim.streamfile import (
    labels_path_for,
    read_mixed_jsonl,
    read_stream_file,
)
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.rules import load_rules
from fraudstream.thresholds.rules.backtest import backtest_rules


def read_history(
    data: Path, labels: Path | None = None, rejects: RejectedRecords | None = None
) -> tuple[list[Transaction], list[Label]]:
    """Transactions of `data` and their labels: from `labels` when given, else from the
    labels file beside `data`, else from the label records inside a JSONL `data`. Records
    that break the contract go to `rejects` (see `read_stream_file`)."""
    if labels is None and data.suffix == ".jsonl" and not labels_path_for(data).exists():
        return read_mixed_jsonl(data, rejects)
    return read_stream_file(data, rejects, labels)


def backtest_from_file(
    rules: Path,
    data: Path,
    registry: Path,
    labels: Path | None = None,
    cost: CostModel = CostModel(),
    review_capacity: float | None = None,
    rejects: RejectedRecords | None = None,
) -> dict[str, Any]:
    """The backtest report of `rules` on the history in `data` (see `backtest_rules`), with
    the model version and the data file. Raises RulesError, RegistryError or
    InvalidTransaction, each with a message saying what to fix; records of `data` that
    break the contract go to `rejects` (see `read_history`)."""
    rule_set = load_rules(rules)
    models = load_version(registry)
    matrix = build_features(
        *read_history(data, labels, rejects), label_delay_s=trained_label_delay_s(models, registry)
    )
    weights = EnsembleWeights.from_dict(models.metadata["weights"])
    scores = score_all(models, weights, matrix.features)["ensemble"]
    chosen = models.metadata["thresholds"]["ensemble"]
    report = backtest_rules(
        rule_set, matrix.transactions, matrix.features, scores, matrix.is_fraud,
        (chosen["review"], chosen["decline"]), cost, review_capacity,
    )  # fmt: skip
    return {"model_version": models.version, "data": str(data), "rules_file": str(rules),
            **report}  # fmt: skip
