"""An XGBoost booster compiled into flat NumPy arrays: scores and Saabas contributions.

Why: the streaming worker scores batches of 5-50 rows, and there XGBoost's per-call
overhead (``inplace_predict``'s array-interface plumbing, a ``DMatrix`` for
``predict(pred_contribs=True, approx_contribs=True)``) costs more than the trees
themselves. As in :mod:`fraudstream.models.isolation`, all trees are packed into one node
table and every (row, tree) pair descends together, one depth level per NumPy step; the
same pass that finds the leaves also collects the Saabas attributions of the path.

The contract is equivalence with the booster itself (see tests/models/test_compiled_xgboost.py):

- inputs are rounded to float32 first and a row goes left when ``x < split_condition``
  (strict; both float32), as XGBoost's ``GetNextNode`` does; NaN is missing and takes the
  node's default branch; ``inf`` compares as a number, as in ``inplace_predict``;
- the margin is accumulated as XGBoost does, in float32, starting from the base margin and
  adding the trees' leaf values in tree order, so it usually matches bit for bit; the
  probability is XGBoost's float32 sigmoid of it;
- contributions are XGBoost's ``approx_contribs=True`` (Saabas): each split on a row's
  path credits its feature with ``mean(child) - mean(node)``, a node's mean being the
  cover-weighted mean of its subtree's leaf values, computed in float32 with XGBoost's
  operation order; they are summed in float64, so they differ from XGBoost's float32 sums
  by rounding only. The bias is the base margin plus the trees' root means.

Only ``binary:logistic`` gbtree boosters with numeric splits and one output are
supported; anything else raises ``ValueError`` at compile time rather than scoring wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import xgboost as xgb
from numpy.typing import NDArray

_NO_CHILD = -1
_BLOCK_ROWS = 1024  # (1024 rows x 116 trees) x 8 bytes ≈ 1 MB per index array
_SIGMOID_CLAMP = np.float32(88.7)  # XGBoost's common::Sigmoid bound against exp overflow
_PROBABILITY_EPS = np.float32(1e-6)  # kRtEps: XGBoost clips base_score into [eps, 1 - eps]


class Attribution(NamedTuple):
    """Per-row margin (log-odds), Saabas contributions (n, n_features) and bias.

    ``contributions.sum(axis=1) + bias`` equals ``margin`` up to float rounding.
    """

    margin: NDArray[np.float64]
    contributions: NDArray[np.float64]
    bias: NDArray[np.float64]


@dataclass(frozen=True)
class CompiledBooster:
    """All trees of a ``binary:logistic`` booster as one node table.

    Node ``i`` (global index over all trees) tests ``feature[i]`` against
    ``threshold[i]``; ``children[2 i + 1]`` is taken when ``x < threshold`` (or x is NaN
    and ``default_left[i]``), ``children[2 i]`` otherwise, and ``edge_gain[2 i + side]``
    is ``mean(child) - mean(i)`` for that move. Leaves point to themselves with a gain of
    0, so every (row, tree) pair takes exactly ``n_levels`` steps without masking.
    ``leaf_value`` is the leaf's output (0 at inner nodes); ``bias`` is the base margin
    plus the sum of the root means.
    """

    feature: NDArray[np.intp]
    threshold: NDArray[np.float32]
    children: NDArray[np.intp]
    default_left: NDArray[np.bool_]
    edge_gain: NDArray[np.float64]
    leaf_value: NDArray[np.float32]
    roots: NDArray[np.intp]
    n_levels: int
    n_features: int
    base_margin: float
    bias: float

    @classmethod
    def from_booster(cls, booster: xgb.Booster) -> CompiledBooster:
        """Pack a trained booster (read from its JSON model); the booster is not kept."""
        learner = json.loads(booster.save_raw(raw_format="json"))["learner"]
        _check_supported(learner)
        trees = learner["gradient_booster"]["model"]["trees"]
        n_features = int(learner["learner_model_param"]["num_feature"])
        base_margin = _base_margin(learner["learner_model_param"]["base_score"])
        sizes = [len(tree["left_children"]) for tree in trees]
        offsets = np.cumsum([0, *sizes], dtype=np.intp)
        left = _concat(trees, "left_children", np.intp, offsets[:-1])
        right = _concat(trees, "right_children", np.intp, offsets[:-1])
        condition = _concat(trees, "split_conditions", np.float32)
        hessian = _concat(trees, "sum_hessian", np.float32)
        is_leaf = left == _NO_CHILD
        own = np.arange(is_leaf.size, dtype=np.intp)
        left = np.where(is_leaf, own, left)
        right = np.where(is_leaf, own, right)
        roots = offsets[:-1]
        depth = _node_depths(left, right, is_leaf, roots)
        n_levels = int(depth.max(initial=0))
        leaf_value = np.where(is_leaf, condition, np.float32(0.0))
        mean = _mean_values(left, right, is_leaf, depth, leaf_value, hessian)
        children = np.empty(2 * own.size, dtype=np.intp)
        children[0::2], children[1::2] = right, left
        edge_gain = np.empty(2 * own.size, dtype=np.float32)
        edge_gain[0::2] = mean[right] - mean
        edge_gain[1::2] = mean[left] - mean  # both 0 at leaves: they point to themselves
        return cls(
            feature=np.where(is_leaf, 0, _concat(trees, "split_indices", np.intp)),
            threshold=np.where(is_leaf, np.float32(0.0), condition),
            children=children,
            default_left=_concat(trees, "default_left", np.bool_) & ~is_leaf,
            edge_gain=edge_gain.astype(np.float64),
            leaf_value=leaf_value,
            roots=roots,
            n_levels=n_levels,
            n_features=n_features,
            base_margin=float(base_margin),
            bias=float(base_margin) + float(mean[roots].astype(np.float64).sum()),
        )

    def predict(self, X: NDArray[np.floating]) -> NDArray[np.float64]:
        """Fraud probabilities, as ``booster.inplace_predict(X)``; result (n_rows,).

        ``X`` has shape (n_rows, n_features) or (n_features,) for one row.
        """
        return sigmoid(self._margin32(self._rows(X)))

    def predict_margin(self, X: NDArray[np.floating]) -> NDArray[np.float64]:
        """Log-odds, as ``booster.inplace_predict(X, predict_type="margin")``."""
        return self._margin32(self._rows(X)).astype(np.float64)

    def margin_and_contributions(self, X: NDArray[np.floating]) -> Attribution:
        """Margin and Saabas contributions from one descent of all trees.

        The contributions and bias are XGBoost's
        ``predict(DMatrix(X), pred_contribs=True, approx_contribs=True)`` split into its
        feature columns and its last (bias) column.
        """
        rows = self._rows(X)
        margin = np.empty(rows.shape[0], dtype=np.float32)
        contributions = np.zeros(rows.shape, dtype=np.float64)
        for block in _blocks(rows.shape[0]):
            totals = contributions[block].reshape(-1)  # a view: C-contiguous row block
            margin[block] = self._sum_leaves(self._leaves(rows[block], totals))
        return Attribution(
            margin=margin.astype(np.float64),
            contributions=contributions,
            bias=np.full(rows.shape[0], self.bias),
        )

    def _rows(self, X: NDArray[np.floating]) -> NDArray[np.float32]:
        with np.errstate(over="ignore"):  # beyond float32 range: ±inf, silently, as XGBoost
            rows = np.asarray(X, dtype=np.float32)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(
                f"expected rows of {self.n_features} features, got shape {np.shape(X)}"
            )
        return np.ascontiguousarray(rows)

    def _margin32(self, rows: NDArray[np.float32]) -> NDArray[np.float32]:
        margin = np.empty(rows.shape[0], dtype=np.float32)
        for block in _blocks(rows.shape[0]):
            margin[block] = self._sum_leaves(self._leaves(rows[block], None))
        return margin

    def _leaves(
        self, rows: NDArray[np.float32], contributions: NDArray[np.float64] | None
    ) -> NDArray[np.intp]:
        """Leaf node of every (row, tree). With ``contributions`` (the rows' flattened
        (n_rows * n_features) attribution buffer), add each split's gain to its feature."""
        flat = rows.ravel()
        row_start = (np.arange(rows.shape[0], dtype=np.intp) * self.n_features)[:, None]
        node = np.broadcast_to(self.roots, (rows.shape[0], self.roots.size)).copy()
        follow_missing = bool(np.isnan(flat).any())
        for _ in range(self.n_levels):
            cell = row_start + self.feature.take(node)  # also the contribution's index
            x = flat.take(cell)
            go_left = x < self.threshold.take(node)
            if follow_missing:
                go_left |= np.isnan(x) & self.default_left.take(node)
            edge = node * 2
            edge += go_left
            node = self.children.take(edge)
            if contributions is not None:
                contributions += np.bincount(
                    cell.ravel(),
                    weights=self.edge_gain.take(edge).ravel(),
                    minlength=contributions.size,
                )
        return node

    def _sum_leaves(self, node: NDArray[np.intp]) -> NDArray[np.float32]:
        """XGBoost's float32 sum: base margin first, then each tree's leaf in tree order.

        ``add.accumulate`` is sequential by definition; ``add.reduce`` would switch to
        pairwise summation for a single row and differ from XGBoost in the last bits.
        """
        terms = np.empty((node.shape[0], node.shape[1] + 1), dtype=np.float32)
        terms[:, 0] = self.base_margin
        terms[:, 1:] = self.leaf_value.take(node)
        return np.add.accumulate(terms, axis=1)[:, -1]


def _blocks(n_rows: int) -> list[slice]:
    """Row blocks of at most ``_BLOCK_ROWS``: the descent holds several (rows x trees)
    index arrays at once, so a 100k-row call must not materialise them all."""
    return [slice(start, start + _BLOCK_ROWS) for start in range(0, max(n_rows, 1), _BLOCK_ROWS)]


def _check_supported(learner: dict[str, Any]) -> None:
    """Refuse boosters this evaluator would score differently from XGBoost."""
    objective = learner["objective"]["name"]
    booster = learner["gradient_booster"]["name"]
    params = learner["learner_model_param"]
    if objective != "binary:logistic":
        raise ValueError(f"only binary:logistic boosters are supported, not {objective!r}")
    if booster != "gbtree":
        raise ValueError(f"only gbtree boosters are supported, not {booster!r}")
    if int(params.get("num_class", 0)) > 1 or int(params.get("num_target", 1)) != 1:
        raise ValueError("only single-output boosters are supported")
    trees = learner["gradient_booster"]["model"]["trees"]
    if not trees:  # XGBoost then treats its placeholder base_score as a margin
        raise ValueError("the booster has no trees: train it first")
    for tree in trees:
        if any(tree["split_type"]) or tree.get("categories"):
            raise ValueError("categorical splits are not supported")
        if int(tree["tree_param"].get("size_leaf_vector", 1)) > 1:
            raise ValueError("vector-leaf (multi-target) trees are not supported")


def _base_margin(stored: str) -> np.float32:
    """The margin XGBoost starts from: logit of the stored base_score, in float32.

    XGBoost 3 stores the intercept as a vector string such as ``"[5E-1]"``, 2.x as a
    plain number; either way it is a probability for ``binary:logistic``, clipped into
    [1e-6, 1 - 1e-6] and mapped with ``-log(1 / p - 1)`` (``LogisticRegression::ProbToMargin``).
    """
    values = [v for v in stored.strip().strip("[]").split(",") if v.strip()]
    if len(values) != 1:
        raise ValueError(f"expected one base_score, got {stored!r}")
    one = np.float32(1.0)
    p = np.clip(np.float32(values[0]), _PROBABILITY_EPS, one - _PROBABILITY_EPS)
    return np.float32(-np.log(one / p - one))


def _concat(
    trees: list[dict[str, Any]],
    key: str,
    dtype: type[np.generic],
    offsets: NDArray[np.intp] | None = None,
) -> NDArray[Any]:
    """One per-node array over all trees; with ``offsets``, child ids become global."""
    parts = [np.asarray(tree[key], dtype=dtype) for tree in trees]
    if offsets is not None:
        parts = [np.where(p == _NO_CHILD, p, p + o) for p, o in zip(parts, offsets, strict=True)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _node_depths(
    left: NDArray[np.intp],
    right: NDArray[np.intp],
    is_leaf: NDArray[np.bool_],
    roots: NDArray[np.intp],
) -> NDArray[np.intp]:
    """Edges from its root to each node (-1 for nodes no root reaches)."""
    depth = np.full(left.size, -1, dtype=np.intp)
    frontier, level = roots, 0
    while frontier.size:
        depth[frontier] = level
        inner = frontier[~is_leaf[frontier]]
        frontier = np.concatenate([left[inner], right[inner]])
        level += 1
    return depth


def _mean_values(
    left: NDArray[np.intp],
    right: NDArray[np.intp],
    is_leaf: NDArray[np.bool_],
    depth: NDArray[np.intp],
    leaf_value: NDArray[np.float32],
    hessian: NDArray[np.float32],
) -> NDArray[np.float32]:
    """Cover-weighted mean leaf value of each subtree, bottom-up, in float32 with the
    operations of XGBoost's ``FillNodeMeanValues`` (so the gains match its own)."""
    mean = leaf_value.copy()
    for level in range(int(depth.max(initial=0)) - 1, -1, -1):
        nodes = np.flatnonzero((depth == level) & ~is_leaf)
        lo, hi = left[nodes], right[nodes]
        total = mean[lo] * hessian[lo]
        total += mean[hi] * hessian[hi]
        mean[nodes] = total / hessian[nodes]
    return mean


def sigmoid(margin: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """XGBoost's float32 ``common::Sigmoid``: ``1 / (expf(min(-x, 88.7)) + 1)``.

    ``exp`` runs in float64 and is rounded to float32, as glibc's ``expf`` is in effect;
    NumPy's own float32 ``exp`` differs from it in the last bit for about 1 row in 4.
    """
    exponent = np.minimum(-margin, _SIGMOID_CLAMP).astype(np.float64)
    denominator = np.exp(exponent).astype(np.float32)
    denominator += np.float32(1.0)
    return (np.float32(1.0) / denominator).astype(np.float64)
