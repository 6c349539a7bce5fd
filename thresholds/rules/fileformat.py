"""The rules file (YAML, or JSON, which the same parser reads), validated fully up front.

    lists:                          # named sets of values of one field or feature
      blocked_cards: {field: card_id, values: [c000017, c000023]}
    block: [blocked_cards]          # lists whose hits are declined, before anything else
    allow: []                       # lists whose hits are allowed, before any rule
    rules:
      - id: card-testing            # unique among rules and lists: metric label and reason
        when: count_1h >= 8 and amount < 5    # see language.py
        action: decline             # allow, review or decline
        priority: 100               # higher first; ties in file order [0]
        review_capacity: 0.002      # review rules: share of transactions [the caller's]
        description: many tiny payments in an hour

Every problem raises `RulesError` with a message `file:line: what is wrong`, the line of
the offending node (1-based): malformed YAML, an unknown key, a wrong type, an unknown
field, feature or list, a bad action, a duplicate id, a condition nested too deep. Lists
are frozensets, so a 100,000-entry list loads in a fraction of a second. The version is
the first 12 hex digits of the file's SHA-256.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import yaml

from fraudstream.thresholds.rules.compiler import NamedList, compile_condition, value_type
from fraudstream.thresholds.rules.engine import ACTIONS, Action, Rule, RuleSet
from fraudstream.thresholds.rules.language import KEYWORDS, ConditionError, parse_condition

#: The rules shipped with the package, used when FRAUDSTREAM_RULES is unset.
DEFAULT_RULES_FILE = Path(__file__).with_name("default.yaml")

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's C parser when built
_CONSTRUCTOR = yaml.SafeLoader("")  # converts scalar nodes only: keeps no state between them
_TOP_KEYS = ("lists", "block", "allow", "rules")
_LIST_KEYS = ("field", "values")
_RULE_KEYS = ("id", "when", "action", "priority", "review_capacity", "description")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
_LIST_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_STR_TAG = "tag:yaml.org,2002:str"


class RulesError(ValueError):
    """A rules file that cannot be used; the message is `file:line: what is wrong`."""


class _Checker:
    """Reads the composed YAML nodes of one file, raising RulesError at the node's line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, node: yaml.Node | None, message: str) -> RulesError:
        line = node.start_mark.line + 1 if node is not None else 1
        return RulesError(f"{self.source}:{line}: {message}")

    def mapping(self, node: yaml.Node, what: str, keys: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping of {', '.join(keys)}")
        fields: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key of {what}")
            if key not in keys:
                raise self.error(key_node, f"unknown key {key!r} in {what}; expected one of "
                                           f"{', '.join(keys)}")  # fmt: skip
            if key in fields:
                raise self.error(key_node, f"key {key!r} appears twice in {what}")
            fields[key] = value_node
        return fields

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list")
        return cast(list[yaml.Node], node.value)

    def scalar(self, node: yaml.Node, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, f"{what} must be a single value, not a list or mapping")
        if node.tag == _STR_TAG:
            return node.value
        construct = _CONSTRUCTOR.yaml_constructors.get(node.tag)
        if construct is None:
            raise self.error(node, f"{what}: unsupported YAML tag {node.tag}")
        try:
            return construct(_CONSTRUCTOR, node)
        except (ValueError, yaml.YAMLError) as error:  # `!!int abc`, a 30th of February
            raise self.error(node, f"{what}: cannot read {node.value!r}: {error}") from None

    def text(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node, what)
        if not isinstance(value, str) or not value:
            raise self.error(node, f"{what} must be a non-empty text, got {value!r}; quote it")
        return value

    def number(self, node: yaml.Node, what: str) -> float:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(node, f"{what} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise self.error(node, f"{what} must be finite, got {value!r}")
        return float(value)


def _compose(text: str, source: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = error.problem or error.context or "malformed"
        raise RulesError(f"{source}:{line}: not valid YAML: {problem}") from None
    except yaml.reader.ReaderError as error:  # a character YAML does not allow
        line = text.count("\n", 0, error.position) + 1
        raise RulesError(f"{source}:{line}: not valid YAML: {error.reason}") from None
    except yaml.YAMLError as error:
        raise RulesError(f"{source}:1: not valid YAML: {error}") from None
    except RecursionError:  # the pure-Python parser, without libyaml's own depth limit
        raise RulesError(f"{source}:1: not valid YAML: nested too deep") from None


def _lists(checker: _Checker, node: yaml.Node) -> tuple[dict[str, NamedList], dict[str, int]]:
    """The named lists, and the line each is declared on."""
    if not isinstance(node, yaml.MappingNode):
        raise checker.error(node, "lists must be a mapping of list names to lists")
    lists: dict[str, NamedList] = {}
    lines: dict[str, int] = {}
    for name_node, list_node in node.value:
        name = checker.text(name_node, "a list name")
        if not _LIST_NAME.fullmatch(name) or name in KEYWORDS:
            raise checker.error(name_node, f"list name {name!r} must be a word of letters, "
                                           "digits and _ (not and/or/not/in)")  # fmt: skip
        if name in lists:
            raise checker.error(name_node, f"list {name!r} is declared twice")
        fields = checker.mapping(list_node, f"list {name!r}", _LIST_KEYS)
        if "field" not in fields or "values" not in fields:
            raise checker.error(list_node, f"list {name!r} needs 'field' and 'values'")
        field = checker.text(fields["field"], f"the field of list {name!r}")
        try:
            kind = value_type(field)
        except ConditionError as error:
            raise checker.error(fields["field"], f"list {name!r}: {error}") from None
        read = checker.number if kind == "number" else checker.text
        what = f"a value of list {name!r} ({field}, {kind})"
        values = [read(value, what) for value in checker.sequence(fields["values"], what)]
        lists[name] = NamedList(field, frozenset(values))  # type: ignore[arg-type]
        lines[name] = name_node.start_mark.line + 1
    return lists, lines


def _list_names(
    checker: _Checker, node: yaml.Node, what: str, lists: dict[str, NamedList]
) -> Iterator[str]:
    for name_node in checker.sequence(node, what):
        name = checker.text(name_node, f"a list of {what}")
        if name not in lists:
            raise checker.error(name_node, f"{what} names unknown list {name!r}")
        yield name


def _rule(checker: _Checker, node: yaml.Node, lists: dict[str, NamedList]) -> Rule:
    fields = checker.mapping(node, "a rule", _RULE_KEYS)
    missing = [key for key in ("id", "when", "action") if key not in fields]
    if missing:
        raise checker.error(node, f"a rule needs {', '.join(missing)}")
    rule_id = checker.text(fields["id"], "a rule id")
    if not _ID.fullmatch(rule_id):
        raise checker.error(fields["id"], f"rule id {rule_id!r} must be 1-100 letters, digits "
                                          "or _ . : - (a metric label)")  # fmt: skip
    action = checker.text(fields["action"], f"the action of rule {rule_id!r}")
    if action not in ACTIONS:
        raise checker.error(fields["action"], f"rule {rule_id!r}: action {action!r} is not "
                                              f"one of {', '.join(ACTIONS)}")  # fmt: skip
    when = checker.text(fields["when"], f"the condition of rule {rule_id!r}")
    try:
        condition = parse_condition(when)
        compile_condition(condition, lists)  # type errors and unknown names, now
    except ConditionError as error:
        raise checker.error(fields["when"], f"rule {rule_id!r}: {error}") from None
    priority_node = fields.get("priority")
    priority = checker.scalar(priority_node, "a priority") if priority_node is not None else 0
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise checker.error(priority_node, f"rule {rule_id!r}: priority must be an integer")
    capacity_node = fields.get("review_capacity")
    capacity = None
    if capacity_node is not None:
        capacity = checker.number(capacity_node, f"the review capacity of rule {rule_id!r}")
        if action != "review" or not 0.0 <= capacity <= 1.0:
            raise checker.error(capacity_node, f"rule {rule_id!r}: review_capacity is a share "
                                               "in [0, 1], for review rules only")  # fmt: skip
    description_node = fields.get("description")
    description = (
        checker.text(description_node, "a description") if description_node is not None else ""
    )
    return Rule(rule_id, condition, cast(Action, action), priority, capacity, description)


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """A rule set from the text of a rules file; RulesError naming `source` and the line."""
    checker = _Checker(source)
    root = _compose(text.replace("\t", " ") if source.endswith(".json") else text, source)
    if root is None:
        return RuleSet((), {}, version=_version(text))
    top = checker.mapping(root, "the rules file", _TOP_KEYS)
    lists, first_line = _lists(checker, top["lists"]) if "lists" in top else ({}, {})
    block = list(_list_names(checker, top["block"], "block", lists)) if "block" in top else []
    allow = list(_list_names(checker, top["allow"], "allow", lists)) if "allow" in top else []
    both = set(block) & set(allow)
    if both:
        raise checker.error(top["allow"], f"lists {sorted(both)} are in both block and allow")
    rules: list[Rule] = []
    for rule_node in checker.sequence(top["rules"], "rules") if "rules" in top else []:
        rule = _rule(checker, rule_node, lists)
        if rule.id in first_line:
            raise checker.error(rule_node, f"duplicate id {rule.id!r} (first at line "
                                           f"{first_line[rule.id]}); ids must be unique "
                                           "among rules and lists")  # fmt: skip
        first_line[rule.id] = rule_node.start_mark.line + 1
        rules.append(rule)
    return RuleSet(rules, lists, block, allow, version=_version(text))


def _version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def load_rules(path: Path | None = None) -> RuleSet:
    """The rule set in `path` (None: the shipped `DEFAULT_RULES_FILE`); RulesError if the
    file cannot be read or is not a valid rules file."""
    path = DEFAULT_RULES_FILE if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError(f"{path}: cannot read the rules file: {error}") from None
    return parse_rules(text, str(path))
