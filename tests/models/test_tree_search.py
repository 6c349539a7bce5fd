"""The grids and the rule that picks a candidate."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudstream.models.training import TrainingParams
from fraudstream.models.tree_search import (
    GRIDS,
    SELECTION_METRIC,
    Candidate,
    TreeSearch,
    TreeSettings,
    choose,
)


def _candidate(average_precision: float, depth: int = 6) -> Candidate:
    return Candidate(TreeSettings(depth, 0.1), average_precision, 0.9, 50, 1.0)


@given(st.lists(st.floats(0.0, 1.0) | st.just(math.nan), min_size=1, max_size=12))
def test_choice_is_the_first_best_average_precision(figures: list[float]) -> None:
    candidates = [_candidate(figure, depth=i + 1) for i, figure in enumerate(figures)]
    known = [figure for figure in figures if not math.isnan(figure)]
    if not known:
        with pytest.raises(ValueError, match="needs fraud rows"):
            choose(candidates)
        return
    assert choose(candidates) == figures.index(max(known))


def test_every_grid_starts_with_the_settings_trained_before_the_search() -> None:
    before = TrainingParams().tree_settings()
    for settings in GRIDS.values():
        assert settings[0] == before
        assert len(set(settings)) == len(settings)


def test_hist_needs_bins_and_exact_takes_none() -> None:
    with pytest.raises(ValueError, match="exact trees take none"):
        TreeSettings(6, 0.1, "exact", 256)
    with pytest.raises(ValueError, match="hist trees need a max_bin"):
        TreeSettings(6, 0.1, "hist", None)
    assert TreeSettings(4, 0.05, "exact", None).label == "depth 4, lr 0.05, exact"
    assert TreeSettings(8, 0.1, "hist", 4096).label == "depth 8, lr 0.1, hist/4096"


def test_search_round_trips_through_json_and_reports_its_choice() -> None:
    search = TreeSearch.of([_candidate(0.3), _candidate(0.5, depth=4), _candidate(0.4, depth=8)])
    document = search.to_json()
    assert document["metric"] == SELECTION_METRIC and document["chosen"] == 1
    again = TreeSearch.from_json(document)
    assert again == search
    assert search.summary().startswith("depth 4, lr 0.1, hist/256")
    marked = [line for line in search.report() if line.startswith("*")]
    assert marked == [search.report()[1]]


def test_settings_carry_into_training_params_and_back() -> None:
    for settings in (*GRIDS["full"], *GRIDS["quick"]):
        params = TrainingParams(seed=3).with_trees(settings)
        assert params.tree_settings() == settings and params.seed == 3
