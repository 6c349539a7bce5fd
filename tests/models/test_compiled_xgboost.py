"""CompiledBooster against XGBoost itself: same probabilities, same Saabas contributions.

Every expected value comes from the booster (``inplace_predict``, ``predict`` with
``approx_contribs=True``), on boosters trained here on random data with missing values:
a few hand-picked settings, and every tree method and bin count the training search can
choose (models/tree_search.py), each at the deepest depth a grid pairs it with.
The probe rows include every split threshold exactly, its float32 neighbour below, and a
float64 value just below it that rounds up onto it in float32, so both the strict
``x < threshold`` rule and the float32 cast are exercised at every split.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from fraudstream.models.compiled_xgboost import CompiledBooster
from fraudstream.models.scorers import XGBoostScorer
from fraudstream.models.tree_search import GRIDS

N_FEATURES = 6
PROBABILITY_TOLERANCE = 1e-6
CONTRIBUTION_TOLERANCE = 1e-4


def _searchable_configs() -> dict[str, dict[str, Any]]:
    """One booster per (tree method, max_bin) any grid holds, at its deepest depth there,
    trained on more rows than 256 bins can separate, so 4096 bins cut where 256 do not."""
    deepest: dict[tuple[str, int | None], int] = {}
    for trees in (trees for grid in GRIDS.values() for trees in grid):
        key = (trees.tree_method, trees.max_bin)
        deepest[key] = max(deepest.get(key, 0), trees.max_depth)
    return {
        f"searchable-{method}{'' if max_bin is None else max_bin}-depth{depth}": {
            "tree_method": method,
            "max_depth": depth,
            **({} if max_bin is None else {"max_bin": max_bin}),
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "n_rows": 2000,
            "rounds": 20,
        }
        for (method, max_bin), depth in sorted(deepest.items(), key=str)
    }


CONFIGS: dict[str, dict[str, Any]] = {
    "hist-depth6": {"max_depth": 6, "tree_method": "hist", "subsample": 0.8},
    "exact-depth4-base-score": {"max_depth": 4, "tree_method": "exact", "base_score": 0.2},
    "approx-depth5": {"max_depth": 5, "tree_method": "approx", "colsample_bytree": 0.7},
    **_searchable_configs(),
}


def _training_rows(n_rows: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Random rows, 10 % missing; the label depends on a missing flag too, so trees
    learn default directions on both sides."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, N_FEATURES))
    X[rng.random(X.shape) < 0.1] = np.nan
    filled = np.nan_to_num(X)
    signal = filled[:, 0] + filled[:, 1] * filled[:, 2] + np.isnan(X[:, 3])
    return X, signal + rng.normal(scale=0.5, size=n_rows) > 0.5


def _train(params: dict[str, Any], rounds: int = 60, n_rows: int = 400) -> xgb.Booster:
    X, y = _training_rows(n_rows, seed=0)
    return xgb.train(
        {"objective": "binary:logistic", "seed": 0, **params},
        xgb.DMatrix(X, label=y),
        num_boost_round=rounds,
    )


def _splits(booster: xgb.Booster) -> list[tuple[int, np.float32]]:
    """(feature, threshold) of every split node, thresholds exactly as XGBoost stores them."""
    trees = json.loads(booster.save_raw(raw_format="json"))["learner"]["gradient_booster"]
    return [
        (feature, np.float32(threshold))
        for tree in trees["model"]["trees"]
        for feature, threshold, left in zip(
            tree["split_indices"], tree["split_conditions"], tree["left_children"], strict=True
        )
        if left != -1
    ]


def _probe_rows(booster: xgb.Booster, n_random: int = 1500) -> NDArray[np.float64]:
    """Random rows with 15 % NaN (more than one 1024-row block), then three rows per
    split: the threshold, the float32 just below it, and a float64 just below it that
    rounds up to the threshold in float32 (XGBoost compares in float32: that goes right)."""
    rng = np.random.default_rng(1)
    random_rows = rng.normal(scale=1.5, size=(n_random, N_FEATURES))
    random_rows[rng.random(random_rows.shape) < 0.15] = np.nan
    splits = _splits(booster)
    edge_rows = np.repeat(rng.normal(size=(len(splits), N_FEATURES)), 3, axis=0)
    for i, (feature, threshold) in enumerate(splits):
        below = np.nextafter(threshold, np.float32(-np.inf))
        rounds_up = np.nextafter(np.float64(threshold), -np.inf)
        assert np.float32(rounds_up) == threshold
        edge_rows[3 * i : 3 * i + 3, feature] = [threshold, below, rounds_up]
    return np.vstack([random_rows, edge_rows])


def _stock_contributions(booster: xgb.Booster, rows: NDArray[np.float64]) -> NDArray[np.float32]:
    return booster.predict(xgb.DMatrix(rows), pred_contribs=True, approx_contribs=True)


@pytest.fixture(scope="module", params=list(CONFIGS.values()), ids=list(CONFIGS))
def booster(request: pytest.FixtureRequest) -> xgb.Booster:
    return _train(**_train_arguments(request.param))


def _train_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """A config's XGBoost params, apart from its `rounds` and `n_rows` if it sets them."""
    sizes = {key: config[key] for key in ("rounds", "n_rows") if key in config}
    return {"params": {k: v for k, v in config.items() if k not in sizes}, **sizes}


@pytest.fixture(scope="module")
def compiled(booster: xgb.Booster) -> CompiledBooster:
    return CompiledBooster.from_booster(booster)


@pytest.fixture(scope="module")
def probe_rows(booster: xgb.Booster) -> NDArray[np.float64]:
    return _probe_rows(booster)


def test_probabilities_and_margins_equal_inplace_predict(
    booster: xgb.Booster, compiled: CompiledBooster, probe_rows: NDArray[np.float64]
) -> None:
    rows = probe_rows.copy()
    rows[:3, 0] = [np.inf, -np.inf, 1e300]  # inplace_predict compares infinities as numbers
    np.testing.assert_allclose(
        compiled.predict(rows), booster.inplace_predict(rows), rtol=0, atol=PROBABILITY_TOLERANCE
    )
    np.testing.assert_allclose(
        compiled.predict_margin(rows),
        booster.inplace_predict(rows, predict_type="margin"),
        rtol=0,
        atol=PROBABILITY_TOLERANCE,
    )


def test_contributions_equal_xgboost_approx_contribs(
    booster: xgb.Booster, compiled: CompiledBooster, probe_rows: NDArray[np.float64]
) -> None:
    result = compiled.margin_and_contributions(probe_rows)
    stock = _stock_contributions(booster, probe_rows)
    assert result.contributions.shape == (probe_rows.shape[0], N_FEATURES)
    np.testing.assert_allclose(
        result.contributions, stock[:, :-1], rtol=0, atol=CONTRIBUTION_TOLERANCE
    )
    np.testing.assert_allclose(result.bias, stock[:, -1], rtol=0, atol=CONTRIBUTION_TOLERANCE)
    np.testing.assert_allclose(
        result.margin,
        booster.inplace_predict(probe_rows, predict_type="margin"),
        rtol=0,
        atol=PROBABILITY_TOLERANCE,
    )
    np.testing.assert_allclose(
        result.contributions.sum(axis=1) + result.bias,
        result.margin,
        rtol=0,
        atol=CONTRIBUTION_TOLERANCE,
    )


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_rows_agree_with_xgboost(
    booster: xgb.Booster, compiled: CompiledBooster, data: st.DataObject
) -> None:
    """Rows built from thresholds, their neighbours below (float32 and float64), NaN and
    arbitrary floats."""
    thresholds: dict[int, list[float]] = {f: [0.0] for f in range(N_FEATURES)}
    for feature, threshold in _splits(booster):
        below = np.nextafter(threshold, np.float32(-np.inf))
        rounds_up = np.nextafter(np.float64(threshold), -np.inf)
        thresholds[feature] += [float(threshold), float(below), float(rounds_up)]
    columns = [
        st.one_of(
            st.sampled_from(thresholds[feature]),
            st.floats(-1e6, 1e6, allow_nan=False),
            st.just(float("nan")),
        )
        for feature in range(N_FEATURES)
    ]
    rows = np.array(
        data.draw(st.lists(st.tuples(*columns), min_size=1, max_size=20)), dtype=np.float64
    )
    np.testing.assert_allclose(
        compiled.predict(rows), booster.inplace_predict(rows), rtol=0, atol=PROBABILITY_TOLERANCE
    )
    result = compiled.margin_and_contributions(rows)
    stock = _stock_contributions(booster, rows)
    np.testing.assert_allclose(
        result.contributions, stock[:, :-1], rtol=0, atol=CONTRIBUTION_TOLERANCE
    )
    np.testing.assert_allclose(result.bias, stock[:, -1], rtol=0, atol=CONTRIBUTION_TOLERANCE)


def test_one_row_may_be_a_vector(
    compiled: CompiledBooster, probe_rows: NDArray[np.float64]
) -> None:
    row = probe_rows[4]
    assert compiled.predict(row).shape == (1,)
    assert compiled.predict(row)[0] == compiled.predict(probe_rows[4:5])[0]
    vector = compiled.margin_and_contributions(row).contributions
    np.testing.assert_array_equal(vector, compiled.margin_and_contributions(probe_rows[4:5])[1])


def test_rows_of_the_wrong_width_are_refused(compiled: CompiledBooster) -> None:
    with pytest.raises(ValueError, match=f"expected rows of {N_FEATURES} features"):
        compiled.predict(np.zeros((2, N_FEATURES + 1)))


def test_trees_that_are_a_single_leaf() -> None:
    """A split loss no split can beat leaves every tree a lone root leaf."""
    booster = _train({"min_split_loss": 1e9}, rounds=5)
    compiled = CompiledBooster.from_booster(booster)
    rows = _training_rows(10, seed=2)[0]
    np.testing.assert_allclose(
        compiled.predict(rows), booster.inplace_predict(rows), rtol=0, atol=PROBABILITY_TOLERANCE
    )
    result = compiled.margin_and_contributions(rows)
    stock = _stock_contributions(booster, rows)
    np.testing.assert_array_equal(result.contributions, stock[:, :-1])
    np.testing.assert_allclose(result.bias, stock[:, -1], rtol=0, atol=CONTRIBUTION_TOLERANCE)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"objective": "reg:squarederror"}, "binary:logistic"),
        ({"objective": "binary:logitraw"}, "binary:logistic"),
        ({"objective": "multi:softprob", "num_class": 3}, "binary:logistic"),
        ({"booster": "dart"}, "gbtree"),
        ({"booster": "gblinear"}, "gbtree"),
    ],
)
def test_unsupported_boosters_are_refused(params: dict[str, Any], message: str) -> None:
    X, y = _training_rows(200, seed=3)
    labels = y.astype(np.float64)
    if "num_class" in params:  # three classes: feature 0 below -0.5, in between, above 0.5
        labels = np.digitize(np.nan_to_num(X[:, 0]), [-0.5, 0.5]).astype(np.float64)
    booster = xgb.train({"objective": "binary:logistic", **params}, xgb.DMatrix(X, label=labels), 3)
    with pytest.raises(ValueError, match=message):
        CompiledBooster.from_booster(booster)


def test_categorical_splits_and_untrained_boosters_are_refused() -> None:
    X, y = _training_rows(200, seed=4)
    X[:, 0] = np.random.default_rng(4).integers(0, 4, size=200)
    categorical = xgb.DMatrix(
        X, label=y, feature_types=["c"] + ["q"] * (N_FEATURES - 1), enable_categorical=True
    )
    params = {"objective": "binary:logistic", "max_cat_to_onehot": 1}
    with pytest.raises(ValueError, match="categorical"):
        CompiledBooster.from_booster(xgb.train(params, categorical, 5))
    with pytest.raises(ValueError, match="no trees"):
        CompiledBooster.from_booster(xgb.train(params, xgb.DMatrix(X, label=y), 0))


def test_scorer_matches_xgboost_below_and_above_the_compiled_batch_size(
    booster: xgb.Booster, probe_rows: NDArray[np.float64]
) -> None:
    names = [f"f{i}" for i in range(N_FEATURES)]
    scorer = XGBoostScorer(booster, names)
    small = probe_rows[: XGBoostScorer.COMPILED_MAX_ROWS]
    for rows in (small, probe_rows[:3], probe_rows):
        np.testing.assert_allclose(
            scorer.score_batch(rows),
            booster.inplace_predict(rows),
            rtol=0,
            atol=PROBABILITY_TOLERANCE,
        )
    assert scorer.score_one(small[5]) == pytest.approx(
        float(booster.inplace_predict(small[5:6])[0]), abs=PROBABILITY_TOLERANCE
    )
    stock = _stock_contributions(booster, small)[:, :-1]
    for values, ranked in zip(
        stock, scorer.contributions_batch(small, top_k=None, approximate=True), strict=True
    ):
        by_name = dict(ranked)
        assert sorted(by_name) == names
        for name, expected in zip(names, values, strict=True):
            assert by_name[name] == pytest.approx(float(expected), abs=CONTRIBUTION_TOLERANCE)
