"""Backtest figures on six hand-made transactions, every one computed by hand below.

Costs: 100 per missed fraud, 10 per false decline, 1 per review; the model's pair is
(review 0.5, decline 0.9). Per transaction (score, label -> model alone):
  t1 card c-stolen, 50   0.10 fraud -> approve: 100   (block list: decline, 0)
  t2 1500                0.20 fraud -> approve: 100   (big: review, 1)
  t3 1200                0.95 legit -> decline: 10    (big: review, 1)
  t4 1                   0.60 legit -> review:  1     (tiny: allow, 0)
  t5 20                  0.30 legit -> approve: 0
  t6 card c-stolen, 1    0.30 no label                (block list and tiny hit; block decides)
Model alone: 211 / 5 labelled = 42.2 per transaction.
"""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.rules import parse_rules
from fraudstream.thresholds.rules.backtest import backtest_rules, format_backtest
from tests.support.rule_batches import feature_rows, transaction

RULES = """\
lists:
  stolen: {field: card_id, values: [c-stolen]}
block: [stolen]
rules:
  - {id: big, when: amount >= 1000, action: review, priority: 5}
  - {id: tiny, when: amount < 2, action: allow}
"""
BATCH = [
    transaction("t1", card_id="c-stolen", amount=50),
    transaction("t2", amount=1500),
    transaction("t3", amount=1200),
    transaction("t4", amount=1),
    transaction("t5", amount=20),
    transaction("t6", card_id="c-stolen", amount=1),
]
SCORES = np.array([0.1, 0.2, 0.95, 0.6, 0.3, 0.3])
IS_FRAUD = np.array([1, 1, 0, 0, 0, np.nan])
COSTS = CostModel(cost_fn=100, cost_fp=10, cost_review=1)


def backtest(rules: str = RULES, review_capacity: float | None = 0.2) -> dict:
    return backtest_rules(parse_rules(rules), BATCH, feature_rows(BATCH), SCORES, IS_FRAUD,
                          (0.5, 0.9), COSTS, review_capacity)  # fmt: skip


def test_the_totals_compare_the_rules_with_the_model_alone() -> None:
    report = backtest()
    assert (report["transactions"], report["labelled"], report["frauds"]) == (6, 5, 2)
    assert report["cost_per_txn_model"] == pytest.approx(42.2)
    # t1 declined (0), t2 and t3 reviewed (1 + 1), t4 allowed (0), t5 approved (0).
    assert report["cost_per_txn_with_rules"] == pytest.approx(0.4)
    assert report["cost_per_txn_delta"] == pytest.approx(-41.8)
    assert report["review_share_model"] == pytest.approx(1 / 6)  # t4
    assert report["review_share_with_rules"] == pytest.approx(2 / 6)  # t2, t3


def test_each_entry_has_its_hits_precision_recall_and_cost_delta() -> None:
    rows = {row["id"]: row for row in backtest()["rules"]}
    assert list(rows) == ["stolen", "big", "tiny"]
    stolen, big, tiny = rows["stolen"], rows["big"], rows["tiny"]
    assert (stolen["hits"], stolen["decided"], stolen["precision"], stolen["recall"]) == (
        2, 2, 1.0, 0.5)  # fmt: skip
    assert stolen["cost_per_txn_delta"] == pytest.approx((111 - 211) / 5)  # t1 caught
    assert (big["hits"], big["decided"], big["precision"], big["recall"]) == (2, 2, 0.5, 0.5)
    assert big["cost_per_txn_delta"] == pytest.approx((103 - 211) / 5)  # t2, t3 reviewed
    assert (tiny["hits"], tiny["decided"], tiny["precision"], tiny["recall"]) == (2, 1, 0.0, 0.0)
    assert tiny["cost_per_txn_delta"] == pytest.approx((210 - 211) / 5)  # t4 not reviewed


def test_reviews_beyond_the_capacity_are_counted_over_it() -> None:
    big = backtest()["rules"][1]
    # 2 reviews of 6 transactions; a 20 % capacity holds floor(1.2) = 1 of them.
    assert (big["reviews"], big["review_capacity"], big["over_capacity_reviews"]) == (2, 0.2, 1)
    assert big["review_share"] == pytest.approx(2 / 6)
    stolen = backtest()["rules"][0]
    assert (stolen["reviews"], stolen["review_capacity"], stolen["over_capacity_reviews"]) == (
        0, None, None)  # a block list reviews nothing  # fmt: skip


def test_a_rule_s_own_review_capacity_overrides_the_given_one() -> None:
    own = RULES.replace("priority: 5}", "priority: 5, review_capacity: 0.5}")
    big = backtest(own)["rules"][1]
    assert (big["review_capacity"], big["over_capacity_reviews"]) == (0.5, 0)  # floor(3) >= 2
    assert backtest(review_capacity=None)["rules"][1]["over_capacity_reviews"] is None


def test_without_labels_there_are_hits_but_no_precision_or_cost() -> None:
    report = backtest_rules(parse_rules(RULES), BATCH, feature_rows(BATCH), SCORES,
                            np.full(6, np.nan), (0.5, 0.9), COSTS)  # fmt: skip
    assert report["cost_per_txn_model"] is None and report["cost_per_txn_delta"] is None
    assert [(row["hits"], row["precision"], row["recall"]) for row in report["rules"]] == [
        (2, None, None), (2, None, None), (2, None, None)]  # fmt: skip


def test_the_markdown_has_one_row_per_entry_with_its_figures() -> None:
    text = format_backtest(backtest())
    assert "Cost per transaction: model alone 42.2000, with the rules 0.4000 (-41.8000)." in text
    assert "| big | review | 5 | 2 | 2 | 0.500 | 0.500 | 33.3333% | 20.00% | 1 | -21.6000 |" in text
    assert "| stolen | decline | – | 2 | 2 | 1.000 | 0.500 | 0.0000% | – | – | -20.0000 |" in text
