"""Rule evaluation: precedence, the ids that fired, pseudonymised ids, and the compiled
conditions against a plain-Python reference on random batches."""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.features.transaction import Transaction
from fraudstream.thresholds.rules import NO_VERDICT, RuleVerdict, parse_rules
from tests.support.rule_batches import feature_rows, transaction

PRECEDENCE = """\
lists:
  stolen: {field: card_id, values: [c-stolen]}
  fraud_shops: {field: merchant_id, values: [m-fraud]}
  staff: {field: card_id, values: [c-staff, c-stolen]}
block: [stolen, fraud_shops]
allow: [staff]
rules:
  - {id: big-review, when: amount > 100, action: review, priority: 5}
  - {id: big-allow, when: amount > 100, action: allow, priority: 5}
  - {id: huge-decline, when: amount > 1000, action: decline, priority: 9}
  - {id: low-allow, when: amount < 1, action: allow}
"""


def verdicts_for(text: str, *transactions: Transaction) -> list[RuleVerdict]:
    return parse_rules(text).evaluate(transactions, feature_rows(transactions))


def test_a_block_list_beats_an_allow_list_and_every_rule() -> None:
    (verdict,) = verdicts_for(PRECEDENCE, transaction(card_id="c-stolen", amount=5000))
    fired = ("stolen", "staff", "huge-decline", "big-review", "big-allow")
    assert verdict == RuleVerdict("decline", "stolen", fired)


def test_an_allow_list_beats_every_rule() -> None:
    (verdict,) = verdicts_for(PRECEDENCE, transaction(card_id="c-staff", amount=5000))
    assert verdict.action == "allow"
    assert verdict.decided_by == "staff"


def test_the_higher_priority_rule_decides() -> None:
    (verdict,) = verdicts_for(PRECEDENCE, transaction(amount=5000))
    assert verdict == RuleVerdict("decline", "huge-decline",
                                  ("huge-decline", "big-review", "big-allow"))  # fmt: skip


def test_of_equal_priorities_the_earlier_rule_in_the_file_decides() -> None:
    (verdict,) = verdicts_for(PRECEDENCE, transaction(amount=500))
    assert verdict == RuleVerdict("review", "big-review", ("big-review", "big-allow"))


def test_priority_zero_by_default_comes_after_positive_priorities() -> None:
    assert parse_rules(PRECEDENCE).ids[-1] == "low-allow"


def test_a_transaction_no_list_or_rule_matches_is_left_to_the_model() -> None:
    assert verdicts_for(PRECEDENCE, transaction(amount=50)) == [NO_VERDICT]
    assert NO_VERDICT.action is None and NO_VERDICT.fired == ()


def test_a_merchant_block_list_matches_on_the_merchant() -> None:
    verdicts = verdicts_for(PRECEDENCE, transaction(merchant_id="m-fraud", amount=50),
                            transaction(card_id="m-fraud", amount=50))  # fmt: skip
    assert [verdict.decided_by for verdict in verdicts] == ["fraud_shops", None]


def test_verdicts_follow_the_batch_order_and_an_empty_batch_gives_none() -> None:
    batch = [transaction(amount=50), transaction(amount=0.5), transaction(card_id="c-stolen")]
    assert [v.decided_by for v in verdicts_for(PRECEDENCE, *batch)] == [None, "low-allow", "stolen"]
    assert verdicts_for(PRECEDENCE) == []


def test_feature_rows_of_the_wrong_shape_are_refused() -> None:
    expected = rf"expected \(1, {len(FEATURE_NAMES)}\)"
    with pytest.raises(ValueError, match=expected):
        parse_rules(PRECEDENCE).evaluate([transaction()], np.zeros((1, len(FEATURE_NAMES) - 1)))


def test_lists_and_conditions_on_ids_work_on_pseudonymised_transactions() -> None:
    text = PRECEDENCE + "  - {id: one-card, when: \"card_id == 'c-watch'\", action: review}\n"
    ids = IdPseudonyms("an example key for the rules tests 0123456789")
    rule_set = parse_rules(text).with_ids(card=ids.card, merchant=ids.merchant)
    raw = [transaction(card_id="c-stolen", amount=50), transaction(merchant_id="m-fraud"),
           transaction(card_id="c-staff", amount=5000), transaction(card_id="c-watch")]  # fmt: skip
    seen = [ids.transaction(txn) for txn in raw]
    verdicts = rule_set.evaluate(seen, feature_rows(seen))
    assert [v.decided_by for v in verdicts] == ["stolen", "fraud_shops", "staff", "one-card"]
    assert rule_set.lists["stolen"].values == frozenset({ids.card("c-stolen")})
    assert rule_set.version == parse_rules(text).version
    unmapped = parse_rules(text).evaluate(seen, feature_rows(seen))
    assert [v.decided_by for v in unmapped] == [None, None, "huge-decline", None]


# The reference: every random condition comes as its text and a plain-Python predicate.
NUMERIC = ("amount", "count_1h", "velocity_kmh")
NUMBERS = (0.0, 1.0, 2.5, 10.0)
COUNTRIES = ("US", "FR", "DE")
EURO = frozenset({"FR", "DE"})
OPERATORS: dict[str, Callable[[object, object], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
Row = tuple[Transaction, dict[str, float]]
Case = tuple[str, Callable[[Row], bool]]


def _numeric_comparison(name: str, symbol: str, number: float, constant_first: bool) -> Case:
    compare = OPERATORS[symbol]
    if constant_first:
        return f"{number} {symbol} {name}", lambda row: compare(number, row[1][name])
    return f"{name} {symbol} {number}", lambda row: compare(row[1][name], number)


def _country_test(symbol: str, country: str) -> Case:
    compare = OPERATORS[symbol]
    return f"country {symbol} '{country}'", lambda row: compare(row[0].country, country)


def _euro_membership(negated: bool) -> Case:
    if negated:
        return "country not in euro", lambda row: row[0].country not in EURO
    return "country in euro", lambda row: row[0].country in EURO


def _combined(cases: list[Case], joiner: str) -> Case:
    text = f" {joiner} ".join(f"({case[0]})" for case in cases)
    predicates = [case[1] for case in cases]
    if joiner == "and":
        return text, lambda row: all(predicate(row) for predicate in predicates)
    return text, lambda row: any(predicate(row) for predicate in predicates)


def _negated(case: Case) -> Case:
    return f"not ({case[0]})", lambda row: not case[1](row)


leaves = st.one_of(
    st.builds(_numeric_comparison, st.sampled_from(NUMERIC), st.sampled_from(list(OPERATORS)),
              st.sampled_from(NUMBERS), st.booleans()),
    st.builds(_country_test, st.sampled_from(["==", "!="]), st.sampled_from(COUNTRIES)),
    st.builds(_euro_membership, st.booleans()),
)  # fmt: skip
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(_combined, st.lists(inner, min_size=2, max_size=3),
                  st.sampled_from(["and", "or"])),
        st.builds(_negated, inner),
    ),
    max_leaves=8,
)  # fmt: skip
rows = st.lists(
    st.tuples(st.sampled_from(COUNTRIES), st.tuples(*(st.sampled_from(NUMBERS[1:] if name ==
              "amount" else NUMBERS) for name in NUMERIC))),
    max_size=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(condition=conditions, batch=rows)
def test_a_compiled_condition_agrees_with_plain_python(condition: Case, batch: list) -> None:
    text, predicate = condition
    rule_set = parse_rules(
        "lists:\n  euro: {field: country, values: [FR, DE]}\n"
        f"rules:\n  - id: r\n    action: review\n    when: \"{text}\"\n"
    )
    transactions = [transaction(txn_id=f"t{i}", country=country, amount=values[0])
                    for i, (country, values) in enumerate(batch)]  # fmt: skip
    features = [dict(zip(NUMERIC, values, strict=True)) for _, values in batch]
    verdicts = rule_set.evaluate(transactions, feature_rows(transactions, features))
    expected = [predicate(row) for row in zip(transactions, features, strict=True)]
    assert [verdict.action == "review" for verdict in verdicts] == expected


def test_a_numeric_list_matches_by_value() -> None:
    text = ("lists:\n  night: {field: local_hour, values: [0, 1, 2, 3]}\n"
            "rules:\n  - {id: at-night, when: local_hour in night, action: review}\n")  # fmt: skip
    batch = [transaction(), transaction(), transaction()]
    rows = feature_rows(batch, [{"local_hour": 3}, {"local_hour": 4}, {"local_hour": 2.5}])
    assert [v.action for v in parse_rules(text).evaluate(batch, rows)] == ["review", None, None]
