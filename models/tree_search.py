"""Which XGBoost tree settings to train with: a small grid, judged on the validation split.

Why a search at all: histogram trees (``tree_method="hist"``) consider splits only at
``max_bin`` quantile cuts of each feature, 256 by default. A pattern that lives in a
feature's rare tail, such as fraud above a fixed large amount when few amounts are large,
falls inside the top bin: no cut lies near the threshold, and the pattern is caught only
in part. More bins, or exact trees (every distinct value a candidate), put a cut there.
Depth and learning rate trade the same way between data sets, so they are searched too;
the number of rounds is not a grid axis, early stopping on the validation split picks it.

Why average precision decides: it is what early stopping already maximises, so rounds
and settings answer to one objective; it needs no threshold, so a choice made now still
holds when the cost model or the limits change later; and it weighs the top of the
ranking, where declines happen, which is where a missing split hurts (the recall at a
0.1 % FPR), unlike ROC AUC. The cost of the deployed model is then minimised where it
is decided: the ensemble weights and thresholds are chosen by cost on the same split.

This module is pure: the grids and the rule that picks a candidate. Training runs them
(``models/training.py``); the registry records the result under ``tree_search``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

TreeMethod = Literal["hist", "exact"]
#: The figure that picks a candidate, as recorded in the registry metadata.
SELECTION_METRIC = "average_precision"


@dataclass(frozen=True)
class TreeSettings:
    """One point of a grid: XGBoost's ``max_depth``, ``learning_rate``, ``tree_method``
    and, for ``"hist"`` only, ``max_bin`` (None for ``"exact"``, which has no bins)."""

    max_depth: int
    learning_rate: float
    tree_method: TreeMethod = "hist"
    max_bin: int | None = 256

    def __post_init__(self) -> None:
        if (self.tree_method == "hist") != (self.max_bin is not None):
            raise ValueError(
                f"tree_method {self.tree_method!r} with max_bin {self.max_bin}: "
                "hist trees need a max_bin, exact trees take none"
            )

    @property
    def label(self) -> str:
        """How reports name it: ``depth 6, lr 0.1, hist/4096`` or ``..., exact``."""
        method = "exact" if self.max_bin is None else f"hist/{self.max_bin}"
        return f"depth {self.max_depth}, lr {self.learning_rate:g}, {method}"

    def to_json(self) -> dict[str, Any]:
        return {
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "tree_method": self.tree_method,
            "max_bin": self.max_bin,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> TreeSettings:
        return cls(
            max_depth=int(document["max_depth"]),
            learning_rate=float(document["learning_rate"]),
            tree_method=document["tree_method"],
            max_bin=None if document["max_bin"] is None else int(document["max_bin"]),
        )


def _grid(
    depths: Sequence[int], learning_rates: Sequence[float], bins: Sequence[int | None]
) -> tuple[TreeSettings, ...]:
    """Every combination, in a fixed order; a max_bin of None means exact trees."""
    return tuple(
        TreeSettings(depth, rate, "exact" if max_bin is None else "hist", max_bin)
        for depth, rate, max_bin in itertools.product(depths, learning_rates, bins)
    )


#: Named grids for ``fraudstream train --search``. Each starts with the settings trained
#: before the search existed (depth 6, lr 0.1, hist with 256 bins), and ties go to the
#: earlier candidate, so a search never moves off them for nothing.
#: quick (the default): more bins against the missing-split problem, and a shallower
#: tree; 3-5x one booster's training time on the demo's data (bench/RESULTS.md).
#: full: depth x learning rate x (256 bins, 4096 bins, exact), 18 candidates; minutes.
GRIDS: dict[str, tuple[TreeSettings, ...]] = {
    "quick": (
        TreeSettings(6, 0.1, "hist", 256),
        TreeSettings(6, 0.1, "hist", 4096),
        TreeSettings(4, 0.1, "hist", 4096),
    ),
    "full": _grid(depths=(6, 4, 8), learning_rates=(0.1, 0.05), bins=(256, 4096, None)),
}


@dataclass(frozen=True)
class Candidate:
    """One trained candidate's validation figures; ``trees`` is what early stopping kept."""

    settings: TreeSettings
    average_precision: float
    auc_roc: float
    trees: int
    train_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            **self.settings.to_json(),
            SELECTION_METRIC: self.average_precision,
            "auc_roc": self.auc_roc,
            "trees": self.trees,
            "train_seconds": self.train_seconds,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Candidate:
        return cls(
            settings=TreeSettings.from_json(document),
            average_precision=float(document[SELECTION_METRIC]),
            auc_roc=float(document["auc_roc"]),
            trees=int(document["trees"]),
            train_seconds=float(document["train_seconds"]),
        )


@dataclass(frozen=True)
class TreeSearch:
    """Every candidate in grid order and the index of the chosen one."""

    candidates: tuple[Candidate, ...]
    chosen_index: int

    @classmethod
    def of(cls, candidates: Sequence[Candidate]) -> TreeSearch:
        """The search that chooses by ``choose``."""
        return cls(tuple(candidates), choose(candidates))

    @property
    def chosen(self) -> Candidate:
        return self.candidates[self.chosen_index]

    def summary(self) -> str:
        """One line for listings: the chosen settings and how they were chosen."""
        return (
            f"{self.chosen.settings.label}, {self.chosen.trees} trees "
            f"(validation AP {self.chosen.average_precision:.3f}, "
            f"best of {len(self.candidates)})"
        )

    def report(self) -> list[str]:
        """One line per candidate, the chosen one marked with ``*``."""
        return [
            f"{'*' if i == self.chosen_index else ' '} {c.settings.label:<27} "
            f"AP {c.average_precision:.4f}  ROC AUC {c.auc_roc:.4f}  "
            f"{c.trees:>3} trees  {c.train_seconds:.1f}s"
            for i, c in enumerate(self.candidates)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": SELECTION_METRIC,
            "split": "validation",
            "candidates": [candidate.to_json() for candidate in self.candidates],
            "chosen": self.chosen_index,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> TreeSearch:
        candidates = tuple(Candidate.from_json(entry) for entry in document["candidates"])
        return cls(candidates, int(document["chosen"]))


def choose(candidates: Sequence[Candidate]) -> int:
    """Index of the highest validation average precision; the first such on ties.

    A NaN (no fraud in the split) never wins; ``ValueError`` when nothing can be chosen.
    """
    scored = [
        (candidate.average_precision, -index)
        for index, candidate in enumerate(candidates)
        if not math.isnan(candidate.average_precision)
    ]
    if not scored:
        raise ValueError(
            f"none of {len(candidates)} tree settings has a validation average precision; "
            "the validation split needs fraud rows"
        )
    return -max(scored)[1]
