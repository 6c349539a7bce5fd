"""The rule set at run time: every condition compiled once, evaluated per micro-batch.

Precedence, for each transaction: a hit in a block list declines it; else a hit in an
allow list allows it; else the matching rule of highest priority (ties: the earlier in
the file) decides; else no rule decides (`RuleVerdict.action` is None) and the model's
thresholds do. Every block list, allow list and rule that matched is named in
`RuleVerdict.fired`, in that same precedence order, so a decision can give them as reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.transaction import Transaction
from fraudstream.thresholds.rules.compiler import (
    Batch,
    CompiledCondition,
    NamedList,
    compile_condition,
    map_constants,
    membership,
)
from fraudstream.thresholds.rules.language import Condition

Action = Literal["allow", "review", "decline"]
ACTIONS: tuple[Action, ...] = ("allow", "review", "decline")
#: The decision (DESIGN.md §3) each rule action stands for.
DECISION_OF_ACTION: dict[Action, str] = {"allow": "approve", "review": "review",
                                         "decline": "decline"}  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """One rule of the file. `review_capacity` is the share of transactions this rule may
    send to review (review rules only; None: the capacity the caller gives)."""

    id: str
    condition: Condition
    action: Action
    priority: int = 0
    review_capacity: float | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """What the rules say about one transaction.

    `action` is None when no list or rule matched: the model decides. `decided_by` is the
    id of the list or rule whose action stands, `fired` the ids of all that matched.
    """

    action: Action | None
    decided_by: str | None
    fired: tuple[str, ...]


NO_VERDICT = RuleVerdict(action=None, decided_by=None, fired=())


@dataclass(frozen=True)
class _Entry:
    id: str
    action: Action
    matches: CompiledCondition


class RuleSet:
    """Block lists, allow lists and rules, compiled for `evaluate`; immutable.

    `version` identifies the file's content (a short hash) for each decision's
    `rules_version`; `with_ids` keeps it, since the rules are the same.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        lists: dict[str, NamedList],
        block: Sequence[str] = (),
        allow: Sequence[str] = (),
        version: str = "",
    ) -> None:
        self.rules = tuple(rules)
        self.lists = dict(lists)
        self.block = tuple(block)
        self.allow = tuple(allow)
        self.version = version
        by_priority = sorted(self.rules, key=lambda rule: -rule.priority)  # stable: file order
        self._entries = (
            *(self._list_entry(name, "decline") for name in self.block),
            *(self._list_entry(name, "allow") for name in self.allow),
            *(_Entry(rule.id, rule.action, compile_condition(rule.condition, self.lists))
              for rule in by_priority),
        )  # fmt: skip
        self._ids = np.array([entry.id for entry in self._entries], dtype=object)
        #: The action of each id (decline for block lists, allow for allow lists).
        self.action_of: dict[str, Action] = {entry.id: entry.action for entry in self._entries}

    def _list_entry(self, name: str, action: Action) -> _Entry:
        named = self.lists[name]
        return _Entry(name, action, membership(named.field, named.values))

    @property
    def ids(self) -> tuple[str, ...]:
        """Every block list, allow list and rule id, in precedence order: the metric labels."""
        return tuple(entry.id for entry in self._entries)

    @property
    def actions(self) -> tuple[Action, ...]:
        """The action of each of `ids`: decline for block lists, allow for allow lists."""
        return tuple(entry.action for entry in self._entries)

    def hits(
        self, transactions: Sequence[Transaction], feature_rows: NDArray[np.float64]
    ) -> NDArray[np.bool_]:
        """A (len(ids), n) mask: row i says which transactions entry `ids[i]` matched.

        `feature_rows` is (n, len(FEATURE_NAMES)) in that order; ValueError for another shape.
        """
        batch = Batch(transactions, feature_rows)
        if not self._entries:
            return np.zeros((0, len(batch)), dtype=bool)
        return np.stack([entry.matches(batch) for entry in self._entries])

    def evaluate(
        self, transactions: Sequence[Transaction], feature_rows: NDArray[np.float64]
    ) -> list[RuleVerdict]:
        """One verdict per transaction, in order (see the module docstring for precedence)."""
        hits = self.hits(transactions, feature_rows)
        verdicts = [NO_VERDICT] * len(transactions)
        for column in np.flatnonzero(hits.any(axis=0)):
            matched = np.flatnonzero(hits[:, column])
            first = self._entries[matched[0]]
            verdicts[column] = RuleVerdict(first.action, first.id, tuple(self._ids[matched]))
        return verdicts

    def with_ids(
        self,
        card: Callable[[str], str] | None = None,
        merchant: Callable[[str], str] | None = None,
    ) -> RuleSet:
        """The same rules over pseudonymised ids: the card and merchant ids in lists and in
        conditions mapped once through `card` and `merchant` (IdPseudonyms.card and
        .merchant in the worker), so they match transactions whose ids were mapped alike."""
        mappers = {
            field: mapper
            for field, mapper in (("card_id", card), ("merchant_id", merchant))
            if mapper is not None
        }
        lists = {
            name: NamedList(named.field, frozenset(map(mappers[named.field], named.values)))  # type: ignore[arg-type]
            if named.field in mappers
            else named
            for name, named in self.lists.items()
        }
        rules = [replace(rule, condition=map_constants(rule.condition, mappers))
                 for rule in self.rules]  # fmt: skip
        return RuleSet(rules, lists, self.block, self.allow, self.version)


#: No rules (version ""): before a worker has read its rules file, or when it started on an
#: invalid one; and wherever no rules are in force.
NO_RULES = RuleSet(rules=(), lists={})
