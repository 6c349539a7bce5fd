"""The rules file: valid files load, and every hostile one fails with file:line: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.thresholds.rules import DEFAULT_RULES_FILE, RulesError, load_rules, parse_rules
from fraudstream.thresholds.rules.language import MAX_DEPTH
from tests.support.rule_batches import feature_rows, transaction

GOOD = """\
lists:
  stolen: {field: card_id, values: [c9, c8]}
  euro: {field: country, values: [FR, DE]}
block: [stolen]
rules:
  - id: tiny-burst
    when: count_1h >= 8 and amount < 5
    action: decline
    priority: 10
  - id: euro-night
    when: country in euro and local_hour < 6
    action: review
    review_capacity: 0.01
    description: night use in the euro area
"""


def rules_with(condition: str, extra: str = "") -> str:
    """A file of one rule with `condition` (line 4), after `extra` top-level YAML."""
    return f"{extra}rules:\n  - id: r\n    action: decline\n    when: \"{condition}\"\n"


def error_of(text: str, source: str = "rules.yaml") -> str:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, source)
    return str(caught.value)


def test_a_valid_file_gives_its_rules_lists_and_precedence() -> None:
    rule_set = parse_rules(GOOD, "rules.yaml")
    assert rule_set.ids == ("stolen", "tiny-burst", "euro-night")
    assert rule_set.actions == ("decline", "decline", "review")
    assert [rule.review_capacity for rule in rule_set.rules] == [None, 0.01]
    assert rule_set.rules[1].description == "night use in the euro area"
    assert rule_set.lists["euro"].values == frozenset({"FR", "DE"})
    assert len(rule_set.version) == 12


def test_the_version_changes_with_the_content_only() -> None:
    assert parse_rules(GOOD).version == parse_rules(GOOD, "other.yaml").version
    assert parse_rules(GOOD).version != parse_rules(GOOD + "\n").version


def test_the_same_rules_in_json_load_alike(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(
        '{\n\t"lists": {"stolen": {"field": "card_id", "values": ["c9"]}},\n'
        '\t"block": ["stolen"],\n'
        '\t"rules": [{"id": "big", "when": "amount > 5000", "action": "review"}]\n}\n'
    )
    assert load_rules(path).ids == ("stolen", "big")


def test_an_empty_file_is_an_empty_rule_set() -> None:
    assert parse_rules("# nothing yet\n").ids == ()


def test_the_shipped_default_file_is_valid_and_has_the_examples() -> None:
    rule_set = load_rules()
    assert load_rules(DEFAULT_RULES_FILE).version == rule_set.version
    assert {"card-testing", "impossible-travel", "high-amount-new-country"} <= set(rule_set.ids)
    assert rule_set.block and rule_set.allow


def test_the_default_card_testing_rule_fires_on_a_burst_of_tiny_payments() -> None:
    burst = {"count_1h": 9, "mean_amount_1h": 1.5, "distinct_merchants_1h": 4}
    batch = [transaction(amount=1.0), transaction(amount=1.0)]
    verdicts = load_rules().evaluate(batch, feature_rows(batch, [burst, {}]))
    assert [verdict.decided_by for verdict in verdicts] == ["card-testing", None]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [\n  {id: a\n", "rules.yaml:3: not valid YAML"),
        ("rules:\n  - id: a\n   when: x\n", "rules.yaml:3: not valid YAML"),
        ("rules: []\ncolour: red\n", "rules.yaml:2: unknown key 'colour' in the rules file"),
        ("rules:\n  - id: a\n    action: decline\n    when: amount > 1\n    wen: x\n",
         "rules.yaml:5: unknown key 'wen' in a rule"),
        (rules_with("amout > 3"),
         "rules.yaml:4: rule 'r': unknown field or feature 'amout' (did you mean 'amount'?)"),
        (rules_with("country > 'FR'"), "rules.yaml:4: rule 'r': country > 'FR': text is "
                                       "compared with == or != only"),
        (rules_with("country == 3"),
         "rules.yaml:4: rule 'r': country == 3 compares a text with a number"),
        (rules_with("amount == 'big'"),
         "rules.yaml:4: rule 'r': amount == 'big' compares a number with a text"),
        (rules_with("1 < 2"), "rules.yaml:4: rule 'r': 1 < 2 compares two constants"),
        (rules_with("card_id in stolen"),
         "rules.yaml:4: rule 'r': unknown list 'stolen' (lists: none are declared)"),
        (rules_with("merchant_id in stolen", "lists:\n  stolen: {field: card_id, values: []}\n"),
         "rules.yaml:6: rule 'r': list 'stolen' holds card_id values, not merchant_id values"),
        (rules_with("amount > 1 and"),
         "rules.yaml:4: rule 'r': expected a field, a feature, a number or a quoted text at "
         "column 15, found the end"),
        (rules_with("amount >> 1"), "rules.yaml:4: rule 'r': expected a field, a feature, a "
                                    "number or a quoted text at column 9, found '>'"),
        (rules_with("amount > 1e400"), "rules.yaml:4: rule 'r': number 1e400 at column 10 is "
                                       "beyond a double"),
        (rules_with("amount ~ 1"), "rules.yaml:4: rule 'r': unexpected '~' at column 8"),
        ("rules:\n  - {id: a, when: amount > 1, action: block}\n",
         "rules.yaml:2: rule 'a': action 'block' is not one of allow, review, decline"),
        ("rules:\n  - {id: a, when: amount > 1, action: decline}\n"
         "  - {id: a, when: amount > 2, action: review}\n",
         "rules.yaml:3: duplicate id 'a' (first at line 2)"),
        ("lists:\n  a: {field: card_id, values: []}\nrules:\n"
         "  - {id: a, when: amount > 2, action: review}\n",
         "rules.yaml:4: duplicate id 'a' (first at line 2)"),
        ("rules:\n  - {when: amount > 1, action: decline}\n", "rules.yaml:2: a rule needs id"),
        ("rules:\n  - {id: a, when: amount > 1, action: decline, priority: high}\n",
         "rules.yaml:2: rule 'a': priority must be an integer"),
        ("rules:\n  - {id: a, when: amount > 1, action: decline, review_capacity: 0.1}\n",
         "rules.yaml:2: rule 'a': review_capacity is a share in [0, 1], for review rules only"),
        ("rules:\n  - {id: a, when: 5, action: decline}\n",
         "rules.yaml:2: the condition of rule 'a' must be a non-empty text, got 5"),
        ("lists:\n  l:\n    field: card_id\n    values:\n      - c1\n      - 4111111111111111\n",
         "rules.yaml:6: a value of list 'l' (card_id, text) must be a non-empty text, got "
         "4111111111111111; quote it"),
        ("lists:\n  l: {field: amount, values: [1, two]}\n",
         "rules.yaml:2: a value of list 'l' (amount, number) must be a number, got 'two'"),
        ("lists:\n  l: {field: colour, values: []}\n",
         "rules.yaml:2: list 'l': unknown field or feature 'colour'"),
        ("lists:\n  l: {field: card_id}\n", "rules.yaml:2: list 'l' needs 'field' and 'values'"),
        ("block: [nowhere]\n", "rules.yaml:1: block names unknown list 'nowhere'"),
        ("lists:\n  l: {field: card_id, values: []}\nblock: [l]\nallow: [l]\n",
         "rules.yaml:4: lists ['l'] are in both block and allow"),
        ("rules:\n  - {id: a, when: amount > 1, action: decline, action: allow}\n",
         "rules.yaml:2: key 'action' appears twice in a rule"),
        ("rules:\n  - !!python/object:os.system {id: a}\n",
         "rules.yaml:2: a rule needs when, action"),  # the tag constructs nothing
        ("rules:\n  - {id: a, when: !!python/name:os.system x, action: decline}\n",
         "rules.yaml:2: the condition of rule 'a': unsupported YAML tag"),
        ("- just\n- a list\n", "rules.yaml:1: the rules file must be a mapping"),
        ("rules:\n  - {id: a, when: amount > 1, action: decline, priority: !!int abc}\n",
         "rules.yaml:2: a priority: cannot read 'abc'"),
        ("lists:\n  l: {field: amount, values: [1, 2024-02-30]}\n",
         "rules.yaml:2: a value of list 'l' (amount, number): cannot read '2024-02-30'"),
    ],
)  # fmt: skip
def test_a_hostile_file_gives_the_line_and_what_is_wrong(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


def test_a_condition_nested_past_the_limit_is_refused_without_recursion_error() -> None:
    deep = "(" * 5000 + "amount > 1" + ")" * 5000
    assert error_of(rules_with(deep)).startswith(
        f"rules.yaml:4: rule 'r': nested deeper than {MAX_DEPTH} levels of 'not' and "
        "parentheses at column 33; split the rule"
    )
    assert error_of(rules_with("not " * 5000 + "amount > 1")).startswith("rules.yaml:4: rule 'r'")


def test_a_condition_nested_within_the_limit_loads() -> None:
    nested = "(" * (MAX_DEPTH - 1) + "amount > 1" + ")" * (MAX_DEPTH - 1)
    assert parse_rules(rules_with(nested)).ids == ("r",)


def test_yaml_nested_too_deep_is_an_error_not_a_crash() -> None:
    assert error_of("rules: " + "[" * 100_000).startswith("rules.yaml:1: not valid YAML")


def test_an_unreadable_file_is_a_rules_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="missing.yaml: cannot read the rules file"):
        load_rules(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RulesError, match="binary.yaml: cannot read the rules file"):
        load_rules(binary)


def test_a_list_of_100_000_cards_loads_and_matches() -> None:
    cards = [f"card-{number:06d}" for number in range(100_000)]
    text = ("lists:\n  stolen:\n    field: card_id\n    values:\n"
            + "".join(f"      - {card}\n" for card in cards) + "block: [stolen]\n")  # fmt: skip
    rule_set = parse_rules(text)
    assert len(rule_set.lists["stolen"].values) == 100_000
    batch = [transaction(card_id="card-099999"), transaction(card_id="card-100000")]
    verdicts = rule_set.evaluate(batch, feature_rows(batch))
    assert [verdict.action for verdict in verdicts] == ["decline", None]


def test_every_feature_name_can_be_used_in_a_condition() -> None:
    condition = " or ".join(f"{name} > 0" for name in FEATURE_NAMES)
    assert parse_rules(rules_with(condition)).ids == ("r",)


def test_the_readme_example_is_a_valid_rules_file() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    example = readme.split("### Business rules", 1)[1].split("```yaml\n", 1)[1].split("```")[0]
    rule_set = parse_rules(example, "README.md")
    assert [rule.id for rule in rule_set.rules] == ["card-testing", "big-foreign"]
    assert rule_set.block == ("stolen_cards",)
