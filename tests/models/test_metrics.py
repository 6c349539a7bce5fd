import pytest

from fraudstream.models.metrics import (
    DailyCardPrecision,
    card_precision_at_k,
    card_precision_by_day,
)

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def two_days() -> tuple[list[float], list[bool], list[str], list[float]]:
    """Day 1: 10 transactions on 5 cards, the top card (c1, max 0.9) compromised, the
    second (c2, 0.8) not; day 2: 4 transactions, the top card legit, the second compromised."""
    rows = [
        ("c1", 0.9, True), ("c1", 0.1, False), ("c2", 0.8, False), ("c2", 0.2, False),
        ("c3", 0.3, True), ("c3", 0.3, False), ("c4", 0.1, False), ("c4", 0.1, False),
        ("c5", 0.0, False), ("c5", 0.0, False),
    ]  # fmt: skip
    next_day = [("c1", 0.95, False), ("c2", 0.7, True), ("c6", 0.1, False), ("c6", 0.1, False)]
    cards = [card for card, _, _ in rows + next_day]
    scores = [score for _, score, _ in rows + next_day]
    frauds = [fraud for _, _, fraud in rows + next_day]
    times = [T0 + i for i in range(len(rows))] + [T0 + DAY + i for i in range(len(next_day))]
    return scores, frauds, cards, times


def test_k_from_a_share_of_each_days_transactions_left_once_detected_cards_are_out() -> None:
    daily = card_precision_by_day(*two_days(), share_of_day=0.2)
    # Day 1: k = round(0.2 x 10) = 2 cards, c1 (fraud: detected) and c2 (legit). Day 2 without
    # c1: 3 transactions, k = round(0.6) = 1, and the top card is c2, compromised that day.
    assert daily == [
        DailyCardPrecision(day="2026-01-01", transactions=10, k=2, precision=0.5),
        DailyCardPrecision(day="2026-01-02", transactions=3, k=1, precision=1.0),
    ]


def test_a_card_counts_by_its_highest_score_and_any_fraud_that_day() -> None:
    # k = 3 on day 1: c1, c2, then c3 (0.3 beats c4's 0.1), whose fraud counts.
    daily = card_precision_by_day(*two_days(), k=3)
    assert daily[0].precision == pytest.approx(2 / 3)


def test_a_day_too_small_for_one_review_has_no_precision_and_no_weight_in_the_mean() -> None:
    scores, frauds, cards, times = two_days()
    daily = card_precision_by_day(scores, frauds, cards, times, share_of_day=0.1)
    assert [(entry.k, entry.precision) for entry in daily] == [(1, 1.0), (0, None)]


def test_fixed_k_divides_by_k_even_when_a_day_has_fewer_cards() -> None:
    # Day 1: 2 frauds among 5 cards, / 10; day 2: 1 fraud among 3 cards, / 10.
    assert card_precision_at_k(*two_days(), k=10) == pytest.approx((0.2 + 0.1) / 2)


def test_a_half_rounds_up() -> None:
    # 2.5 cards on day 1, then 0.75 on day 2 (c1 and c3 detected, 3 transactions left).
    daily = card_precision_by_day(*two_days(), share_of_day=0.25)
    assert [entry.k for entry in daily] == [3, 1]


def test_exactly_one_way_to_choose_k() -> None:
    with pytest.raises(ValueError, match="exactly one of k and share_of_day"):
        card_precision_by_day(*two_days(), k=2, share_of_day=0.1)


def handbook_example() -> tuple[list[float], list[bool], list[str], list[float]]:
    """Three days of one transaction per card (A..F), scores and labels chosen by hand.

    day 1: A 0.9 fraud, B 0.8 legit, C 0.3 fraud, D 0.1 legit
    day 2: A 0.95 fraud, C 0.6 fraud, E 0.5 legit, B 0.2 legit
    day 3: A 0.9 fraud, C 0.8 fraud, F 0.4 fraud, E 0.1 legit
    """
    days = [
        [("A", 0.9, True), ("B", 0.8, False), ("C", 0.3, True), ("D", 0.1, False)],
        [("A", 0.95, True), ("C", 0.6, True), ("E", 0.5, False), ("B", 0.2, False)],
        [("A", 0.9, True), ("C", 0.8, True), ("F", 0.4, True), ("E", 0.1, False)],
    ]
    rows = [(day, row) for day, day_rows in enumerate(days) for row in day_rows]
    return (
        [score for _, (_, score, _) in rows],
        [fraud for _, (_, _, fraud) in rows],
        [card for _, (card, _, _) in rows],
        [T0 + day * DAY + 60 * i for i, (day, _) in enumerate(rows)],
    )


def test_cards_detected_on_an_earlier_day_leave_the_later_rankings() -> None:
    # k = 2. Day 1: A (fraud) and B: 1/2, A detected. Day 2 without A: C (fraud) and E: 1/2,
    # C detected. Day 3 without A and C: F (fraud) and E: 1/2. Keeping detected cards would
    # rank A and C first on days 2 and 3 and read (1/2 + 1 + 1) / 3 = 0.833.
    daily = card_precision_by_day(*handbook_example(), k=2)
    assert [(entry.transactions, entry.precision) for entry in daily] == [
        (4, 0.5),
        (3, 0.5),
        (2, 0.5),
    ]
    assert card_precision_at_k(*handbook_example(), k=2) == pytest.approx(0.5)


def test_a_card_ranked_but_legit_that_day_is_not_detected() -> None:
    # k = 1. Day 1: A (fraud), detected. Day 2: C (fraud), detected. Day 3: only F and E left.
    daily = card_precision_by_day(*handbook_example(), k=1)
    assert [entry.precision for entry in daily] == [1.0, 1.0, 1.0]
    # With B ranked first on day 1 (legit), B stays in the ranking on day 2.
    scores, frauds, cards, times = handbook_example()
    scores[1] = 0.99
    daily = card_precision_by_day(scores, frauds, cards, times, k=1)
    assert [(entry.transactions, entry.precision) for entry in daily] == [
        (4, 0.0),
        (4, 1.0),
        (3, 1.0),
    ]
