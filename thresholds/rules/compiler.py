"""Type-check a parsed condition and compile it once into a vectorised NumPy mask.

A name is a feature of `FEATURE_NAMES` (a float column of the batch's feature rows) or a
transaction field of `TEXT_FIELDS` (a string, compared with == and != only, or looked up
in a list). A compiled condition maps one micro-batch to a boolean array, one entry per
transaction: the per-row work is NumPy's, plus one set lookup per row for text membership.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.transaction import Transaction
from fraudstream.thresholds.rules.language import (
    And,
    Compare,
    Condition,
    ConditionError,
    Constant,
    Member,
    Name,
    Not,
    Or,
)

ValueType = Literal["number", "text"]
#: Transaction fields a rule may name besides the features (`amount` is a feature too).
TEXT_FIELDS = ("card_id", "merchant_id", "currency", "country", "channel")
_FEATURE_INDEX = {name: index for index, name in enumerate(FEATURE_NAMES)}
_ORDERINGS = ("<", "<=", ">", ">=")
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NUMPY_COMPARISONS: dict[str, np.ufunc] = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}

Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class NamedList:
    """A named set of values of one field, such as the card ids of a block list."""

    field: str
    values: frozenset[float] | frozenset[str]


class Batch:
    """One micro-batch as the compiled conditions read it; text columns built once each."""

    def __init__(self, transactions: Sequence[Transaction], feature_rows: NDArray[np.float64]):
        if feature_rows.shape != (len(transactions), len(FEATURE_NAMES)):
            raise ValueError(
                f"feature rows of shape {feature_rows.shape} for {len(transactions)} "
                f"transactions; expected ({len(transactions)}, {len(FEATURE_NAMES)})"
            )
        self.transactions = transactions
        self.feature_rows = feature_rows
        self._text: dict[str, NDArray[np.object_]] = {}

    def __len__(self) -> int:
        return len(self.transactions)

    def text(self, field: str) -> NDArray[np.object_]:
        column = self._text.get(field)
        if column is None:
            column = np.array([getattr(txn, field) for txn in self.transactions], dtype=object)
            self._text[field] = column
        return column


CompiledCondition = Callable[[Batch], Mask]


def value_type(name: str) -> ValueType:
    """The type of a field or feature; ConditionError, with a suggestion, for an unknown one."""
    if name in _FEATURE_INDEX:
        return "number"
    if name in TEXT_FIELDS:
        return "text"
    close = difflib.get_close_matches(name, (*FEATURE_NAMES, *TEXT_FIELDS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConditionError(f"unknown field or feature {name!r}{hint}")


def _operand_type(operand: Name | Constant) -> ValueType:
    if isinstance(operand, Name):
        return value_type(operand.name)
    return "number" if isinstance(operand.value, float) else "text"


def _shown(operand: Name | Constant) -> str:
    if isinstance(operand, Name):
        return operand.name
    return f"{operand.value:g}" if isinstance(operand.value, float) else repr(operand.value)


def _column(operand: Name | Constant) -> Callable[[Batch], NDArray[np.generic] | float | str]:
    if isinstance(operand, Constant):
        value = operand.value
        return lambda _batch: value
    name = operand.name
    if name in _FEATURE_INDEX:
        index = _FEATURE_INDEX[name]
        return lambda batch: batch.feature_rows[:, index]
    return lambda batch: batch.text(name)


def _compile_compare(condition: Compare) -> CompiledCondition:
    left, right = condition.left, condition.right
    left_type, right_type = _operand_type(left), _operand_type(right)
    if left_type != right_type:
        raise ConditionError(
            f"{_shown(left)} {condition.operator} {_shown(right)} compares a {left_type} "
            f"with a {right_type}"
        )
    if isinstance(left, Constant) and isinstance(right, Constant):
        raise ConditionError(
            f"{_shown(left)} {condition.operator} {_shown(right)} compares two constants"
        )
    if left_type == "text" and condition.operator in _ORDERINGS:
        raise ConditionError(
            f"{_shown(left)} {condition.operator} {_shown(right)}: text is compared with == "
            "or != only"
        )
    operator = condition.operator
    if isinstance(left, Constant):  # keep the column on the left, for NumPy's operators
        left, right, operator = right, left, _FLIPPED[operator]
    read_left, read_right = _column(left), _column(right)
    compare = _NUMPY_COMPARISONS[operator]
    return lambda batch: np.asarray(compare(read_left(batch), read_right(batch)), dtype=bool)



def _compile_member(condition: Member, lists: dict[str, NamedList]) -> CompiledCondition:
    named = lists.get(condition.list_name)
    if named is None:
        known = ", ".join(sorted(lists)) or "none are declared"
        raise ConditionError(f"unknown list {condition.list_name!r} (lists: {known})")
    field = condition.field.name
    value_type(field)
    if named.field != field:
        raise ConditionError(
            f"list {condition.list_name!r} holds {named.field} values, not {field} values"
        )
    inside = membership(field, named.values)
    if condition.negated:
        return lambda batch: ~inside(batch)
    return inside


def membership(field: str, values: frozenset[float] | frozenset[str]) -> CompiledCondition:
    """Whether each transaction's `field` is in `values`: a hash lookup per row for text,
    a binary search in the sorted values for a feature (never a pass over the whole list)."""
    if field in _FEATURE_INDEX:
        index = _FEATURE_INDEX[field]
        ordered = np.array(sorted(values), dtype=np.float64)

        def in_numbers(batch: Batch) -> Mask:
            column = batch.feature_rows[:, index]
            found = np.searchsorted(ordered, column).clip(max=max(len(ordered) - 1, 0))
            return ordered[found] == column if len(ordered) else np.zeros(len(batch), bool)

        return in_numbers

    def in_texts(batch: Batch) -> Mask:
        column = batch.text(field)
        return np.fromiter((value in values for value in column), dtype=bool, count=len(column))

    return in_texts


def compile_condition(condition: Condition, lists: dict[str, NamedList]) -> CompiledCondition:
    """A function from a batch to the mask of the transactions `condition` holds for.

    Raises ConditionError for an unknown name or list, or a type error.
    """
    if isinstance(condition, Compare):
        return _compile_compare(condition)
    if isinstance(condition, Member):
        return _compile_member(condition, lists)
    if isinstance(condition, Not):
        inner = compile_condition(condition.operand, lists)
        return lambda batch: ~inner(batch)
    parts = [compile_condition(operand, lists) for operand in condition.operands]
    combine = np.logical_and if isinstance(condition, And) else np.logical_or

    def combined(batch: Batch) -> Mask:
        mask = parts[0](batch)
        for part in parts[1:]:
            mask = combine(mask, part(batch))
        return mask

    return combined


def map_constants(condition: Condition, mappers: dict[str, Callable[[str], str]]) -> Condition:
    """`condition` with every text constant compared with a field of `mappers` mapped by it
    (the card ids of `card_id == 'c1'` through the worker's pseudonymiser, say)."""
    if isinstance(condition, Compare):
        left, right = condition.left, condition.right
        field = next((side.name for side in (left, right) if isinstance(side, Name)), None)
        mapper = mappers.get(field) if field is not None else None
        if mapper is None:
            return condition

        def mapped(side: Name | Constant) -> Name | Constant:
            if isinstance(side, Constant) and isinstance(side.value, str):
                return Constant(mapper(side.value))
            return side

        return Compare(mapped(left), condition.operator, mapped(right))
    if isinstance(condition, Member):
        return condition
    if isinstance(condition, Not):
        return Not(map_constants(condition.operand, mappers))
    operands = tuple(map_constants(operand, mappers) for operand in condition.operands)
    return And(operands) if isinstance(condition, And) else Or(operands)
