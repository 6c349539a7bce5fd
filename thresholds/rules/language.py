"""The condition language of a rule: a tokenizer and a recursive-descent parser, never eval.

A condition is a boolean expression over the transaction fields and the features:

    condition  := disjunct ("or" disjunct)*
    disjunct   := negation ("and" negation)*
    negation   := "not" negation | "(" condition ")" | comparison
    comparison := operand ("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                | NAME ["not"] "in" LIST_NAME
    operand    := NAME | NUMBER | 'text' | "text"

Examples: ``count_1h >= 8 and amount < 5``, ``country != 'US' and not (channel == 'pos')``,
``merchant_id in blocked_merchants``. Names are checked and typed later (`compiler.py`), so
this module knows nothing of features. Nesting deeper than `MAX_DEPTH` is refused with a
`ConditionError`, never a RecursionError.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: Deepest nesting of not/parentheses accepted; real rules stay far below it.
MAX_DEPTH = 32
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
KEYWORDS = ("and", "or", "not", "in")

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<text>'[^']*'|"[^"]*")
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<operator>==|!=|<=|>=|<|>|\(|\))
    )""",
    re.VERBOSE,
)


class ConditionError(ValueError):
    """A condition that does not parse; the message quotes where."""


@dataclass(frozen=True, slots=True)
class Name:
    """A transaction field or feature, resolved and typed when the rule set is checked."""

    name: str


@dataclass(frozen=True, slots=True)
class Constant:
    value: float | str


@dataclass(frozen=True, slots=True)
class Compare:
    left: Name | Constant
    operator: str
    right: Name | Constant


@dataclass(frozen=True, slots=True)
class Member:
    """`field in list_name` (or `not in` when `negated`)."""

    field: Name
    list_name: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Condition, ...]


Condition = Compare | Member | Not | And | Or


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number", "text", "name", "keyword", "operator", "end"
    text: str
    position: int


def tokenize(source: str) -> list[_Token]:
    """The tokens of `source`, ending with an "end" token; ConditionError on a stray character."""
    tokens: list[_Token] = []
    position = 0
    while True:
        while position < len(source) and source[position].isspace():
            position += 1
        if position == len(source):
            tokens.append(_Token("end", "", position))
            return tokens
        match = _TOKEN.match(source, position)
        if match is None or match.lastgroup is None:
            raise ConditionError(f"unexpected {source[position]!r} at column {position + 1}")
        group = match.lastgroup
        text = match.group(group)
        kind = "keyword" if group == "name" and text in KEYWORDS else group
        tokens.append(_Token(kind, text, match.start(group)))
        position = match.end()


class _Parser:
    def __init__(self, source: str) -> None:
        self._tokens = tokenize(source)
        self._next = 0

    def _peek(self) -> _Token:
        return self._tokens[self._next]

    def _take(self) -> _Token:
        token = self._tokens[self._next]
        self._next += 1
        return token

    def _accept(self, text: str) -> bool:
        token = self._peek()
        if token.kind in ("keyword", "operator") and token.text == text:
            self._next += 1
            return True
        return False

    def _fail(self, expected: str) -> ConditionError:
        token = self._peek()
        found = "the end" if token.kind == "end" else repr(token.text)
        return ConditionError(f"expected {expected} at column {token.position + 1}, found {found}")

    def parse(self) -> Condition:
        condition = self._condition(0)
        if self._peek().kind != "end":
            raise self._fail("'and', 'or' or the end")
        return condition

    def _condition(self, depth: int) -> Condition:
        operands = [self._disjunct(depth)]
        while self._accept("or"):
            operands.append(self._disjunct(depth))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _disjunct(self, depth: int) -> Condition:
        operands = [self._negation(depth)]
        while self._accept("and"):
            operands.append(self._negation(depth))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _negation(self, depth: int) -> Condition:
        if depth >= MAX_DEPTH:
            raise ConditionError(
                f"nested deeper than {MAX_DEPTH} levels of 'not' and parentheses at column "
                f"{self._peek().position + 1}; split the rule"
            )
        if self._accept("not"):
            return Not(self._negation(depth + 1))
        if self._accept("("):
            inner = self._condition(depth + 1)
            if not self._accept(")"):
                raise self._fail("')'")
            return inner
        return self._comparison()

    def _comparison(self) -> Condition:
        left = self._operand()
        if isinstance(left, Name):
            negated = self._accept("not")
            if self._accept("in"):
                list_name = self._take()
                if list_name.kind != "name":
                    self._next -= 1
                    raise self._fail("a list name after 'in'")
                return Member(left, list_name.text, negated)
            if negated:
                raise self._fail("'in' after 'not'")
        operator = self._peek()
        if operator.kind != "operator" or operator.text not in COMPARISONS:
            raise self._fail("a comparison (==, !=, <, <=, >, >=)" + (
                " or 'in'" if isinstance(left, Name) else ""))  # fmt: skip
        self._next += 1
        return Compare(left, operator.text, self._operand())

    def _operand(self) -> Name | Constant:
        token = self._peek()
        if token.kind == "name":
            self._next += 1
            return Name(token.text)
        if token.kind == "number":
            self._next += 1
            value = float(token.text)
            if not math.isfinite(value):
                raise ConditionError(f"number {token.text} at column {token.position + 1} is "
                                     "beyond a double")  # fmt: skip
            return Constant(value)
        if token.kind == "text":
            self._next += 1
            return Constant(token.text[1:-1])
        raise self._fail("a field, a feature, a number or a quoted text")


def parse_condition(source: str) -> Condition:
    """The syntax tree of `source`; ConditionError saying where it went wrong."""
    return _Parser(source).parse()
