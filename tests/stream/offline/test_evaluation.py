"""evaluate's two protocols on a small generated stream: the label-delay gap, known
compromised cards left out, and prequential folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fraudstream.models.metrics import SECONDS_PER_DAY
from fraudstream.models.registry import load_version
from fraudstream.stream.cli import main
from fraudstream.stream.offline.evaluation import MODEL_NAMES, evaluate_from_file
from fraudstream.stream.offline.prequential import (
    FOLD_FIGURES,
    evaluate_prequential,
    format_prequential_report,
)
from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.streamfile import read_stream_file


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("evaluation") / "stream.jsonl"
    assert main(["generate", "--transactions", "15000", "--seed", "3", "--out", str(data)]) == 0
    return data


@pytest.fixture(scope="module")
def registry(stream_file: Path) -> Path:
    registry = stream_file.parent / "registry"
    assert main(["train", "--data", str(stream_file), "--registry", str(registry)]) == 0
    return registry


def labelled_times(stream_file: Path) -> np.ndarray:
    transactions, labels = read_stream_file(stream_file)
    labelled = {label.txn_id for label in labels}
    return np.array([txn.event_time for txn in transactions if txn.txn_id in labelled])


def test_the_test_starts_at_a_midnight_one_label_delay_after_the_validation_split(
    stream_file: Path, registry: Path
) -> None:
    valid_end = load_version(registry).metadata["split"]["valid_end"]
    report = evaluate_from_file(stream_file, registry, delay_days=7)
    start = report["period"]["start"]
    assert start % SECONDS_PER_DAY == 0
    assert valid_end + 7 * SECONDS_PER_DAY <= start < valid_end + 8 * SECONDS_PER_DAY
    # Every labelled transaction from the start on is tested or left out as known compromised;
    # none from the gap is.
    times = labelled_times(stream_file)
    tested_or_left_out = report["transactions"] + report["known_compromised_removed"]
    assert tested_or_left_out == int((times >= start).sum())
    assert tested_or_left_out < int((times >= valid_end).sum())


def test_cards_known_compromised_are_left_out_and_no_delay_tests_more(
    stream_file: Path, registry: Path
) -> None:
    week = evaluate_from_file(stream_file, registry, delay_days=7)
    assert week["known_compromised_removed"] > 0
    no_delay = evaluate_from_file(stream_file, registry, delay_days=0)
    assert no_delay["period"]["start"] < week["period"]["start"]
    assert no_delay["transactions"] > week["transactions"]


def test_prequential_folds_report_each_figure_over_the_folds(stream_file: Path) -> None:
    limits = Settings()  # the default 2 % review capacity, so cp@cap is defined
    report = evaluate_prequential(
        stream_file, 3, 7, limits.cost_model, limits.threshold_constraints,
        limits.selection_constraints, delay_days=7,
    )  # fmt: skip
    folds = report["folds"]
    assert len(folds) == 3
    for earlier, later in zip(folds, folds[1:], strict=False):
        assert earlier["period"]["end"] == later["period"]["start"]
    for fold in folds:
        period = fold["period"]
        assert period["start"] - period["fit_end"] == 7 * SECONDS_PER_DAY
        assert period["end"] - period["start"] == 7 * SECONDS_PER_DAY
        assert fold["rows"]["train"] > 0 and fold["rows"]["valid"] > 0
        assert fold["transactions"] > 0
    # Later folds fit on more history.
    assert folds[0]["rows"]["train"] < folds[-1]["rows"]["train"]
    assert set(report["models"]) == set(MODEL_NAMES)
    for name in MODEL_NAMES:
        for figure in FOLD_FIGURES:
            values = [fold["models"][name][figure] for fold in folds]
            summary = report["models"][name][figure]
            assert min(values) <= summary["mean"] <= max(values), (name, figure)
            assert (summary["min"], summary["max"]) == (min(values), max(values))
            assert summary["std"] >= 0
    assert "mean ± std" in format_prequential_report(report)


def test_the_command_line_runs_prequential_folds(
    stream_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prequential.json"
    argv = ["evaluate", "--data", str(stream_file), "--protocol", "prequential"]
    assert main([*argv, "--folds", "2", "--fold-days", "5", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (len(report["folds"]), report["fold_days"]) == (2, 5)
    assert "2 folds of 5 days" in capsys.readouterr().out


def test_the_command_line_says_what_to_change_when_the_folds_do_not_fit(
    stream_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--data", str(stream_file)]
    assert main([*argv, "--protocol", "prequential", "--folds", "9"]) == 1
    assert "give fewer --folds" in capsys.readouterr().err
    assert main([*argv, "--folds", "3"]) == 2
    assert "--protocol prequential" in capsys.readouterr().err
