"""Window state against brute-force recomputation on random, disordered, duplicated input."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.features import windows as windows_module
from fraudstream.features.definitions import NO_MERCHANT_HISTORY, feature_vector
from fraudstream.features.transaction import Transaction
from fraudstream.features.windows import (
    ALLOWED_LATENESS_SECONDS,
    WINDOWS,
    CardEvent,
    CardHistory,
    MerchantHistory,
    aggregate,
    merchant_retention_seconds,
)

BASE_TIME = 1_767_225_600.0
MERCHANTS = ["m1", "m2", "m3", "m4"]
COUNTRIES = ["US", "GB", "JP"]


@st.composite
def arrivals(draw: st.DrawFn) -> list[Transaction]:
    """Transactions in arrival order: sorted by time, then locally shuffled and duplicated."""
    count = draw(st.integers(min_value=1, max_value=60))
    gaps = draw(st.lists(st.floats(0, 3 * 86_400.0), min_size=count, max_size=count))
    times, t = [], BASE_TIME
    for gap in gaps:
        t += gap
        times.append(round(t, 3))
    located = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    txns = [
        Transaction(
            txn_id=f"t{i:03d}",
            card_id="c1",
            merchant_id=draw(st.sampled_from(MERCHANTS)),
            amount=draw(st.floats(0.01, 5000.0)),
            currency="USD",
            country=draw(st.sampled_from(COUNTRIES)),
            channel="pos",
            event_time=times[i],
            lat=draw(st.floats(-80, 80)) if located[i] else None,
            lon=draw(st.floats(-170, 170)) if located[i] else None,
        )
        for i in range(count)
    ]
    # Late arrival: each event may be delayed by up to the allowed lateness.
    delays = draw(
        st.lists(st.floats(0, ALLOWED_LATENESS_SECONDS * 0.999), min_size=count, max_size=count)
    )
    order = sorted(range(count), key=lambda i: (txns[i].event_time + delays[i], i))
    arrived = [txns[i] for i in order]
    duplicates = draw(st.lists(st.integers(0, count - 1), max_size=10))
    for position in duplicates:
        arrived.insert(min(position + 1, len(arrived)), arrived[position])
    return arrived


def brute_force_prior(seen: list[Transaction], txn: Transaction) -> list[CardEvent]:
    unique = {t.txn_id: t for t in seen}
    earlier = [
        t for t in unique.values() if (t.event_time, t.txn_id) < (txn.event_time, txn.txn_id)
    ]
    earlier.sort(key=lambda t: (t.event_time, t.txn_id))
    return [CardEvent.from_transaction(t) for t in earlier]


@settings(max_examples=200, deadline=None)
@given(arrivals())
def test_window_aggregates_equal_brute_force(arrived: list[Transaction]) -> None:
    history = CardHistory()
    seen: list[Transaction] = []
    for txn in arrived:
        prior = history.before(txn.event_time, txn.txn_id)
        expected_prior = brute_force_prior(seen, txn)
        for length in WINDOWS.values():
            start = txn.event_time - length
            got = aggregate(e for e in prior if e.event_time >= start)
            expected = aggregate(e for e in expected_prior if e.event_time >= start)
            assert got == expected
        history.add(CardEvent.from_transaction(txn))
        seen.append(txn)


@settings(max_examples=200, deadline=None)
@given(arrivals())
def test_feature_vector_from_state_equals_brute_force(arrived: list[Transaction]) -> None:
    history = CardHistory()
    seen: list[Transaction] = []
    for txn in arrived:
        got = feature_vector(txn, history.before(txn.event_time, txn.txn_id), NO_MERCHANT_HISTORY)
        expected = feature_vector(txn, brute_force_prior(seen, txn), NO_MERCHANT_HISTORY)
        assert got.tolist() == expected.tolist()
        history.add(CardEvent.from_transaction(txn))
        seen.append(txn)


@settings(max_examples=200, deadline=None)
@given(arrivals())
def test_feature_vector_window_columns_equal_aggregate_of_each_window(
    arrived: list[Transaction],
) -> None:
    events = sorted(
        {t.txn_id: CardEvent.from_transaction(t) for t in arrived}.values(),
        key=lambda event: event.key,
    )
    txn = arrived[-1]
    prior = [event for event in events if event.key < (txn.event_time, txn.txn_id)]
    vector = feature_vector(txn, prior, NO_MERCHANT_HISTORY)
    for index, length in enumerate(WINDOWS.values()):
        window = aggregate(e for e in prior if e.event_time >= txn.event_time - length)
        expected = [window.count, window.total_amount, window.mean_amount,
                    window.distinct_merchants, window.distinct_countries,
                    window.night_count, window.weekend_count]  # fmt: skip
        got = vector[7 * index : 7 * index + 7].tolist()
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(arrivals())
def test_redelivered_transaction_is_not_counted_twice(arrived: list[Transaction]) -> None:
    history = CardHistory()
    for txn in arrived:
        history.add(CardEvent.from_transaction(txn))
    ids = [event.txn_id for event in history.events]
    assert len(ids) == len(set(ids))
    assert history.add(CardEvent.from_transaction(arrived[-1])) is False


@settings(max_examples=100, deadline=None)
@given(
    arrivals(),
    st.lists(st.tuples(st.integers(0, 59), st.floats(0, 40 * 86_400.0)), max_size=20),
    st.floats(0, 14 * 86_400.0),
    st.floats(0, 10 * 86_400.0),
)
def test_merchant_counts_equal_brute_force(
    arrived: list[Transaction],
    fraud_draws: list[tuple[int, float]],
    label_delay: float,
    asked_after: float,
) -> None:
    merchant = MerchantHistory(merchant_retention_seconds(label_delay))
    seen: dict[str, float] = {}
    for txn in arrived:
        start = txn.event_time - WINDOWS["1d"]
        expected = sum(
            1
            for txn_id, t in seen.items()
            if start <= t and (t, txn_id) < (txn.event_time, txn.txn_id)
        )
        assert merchant.transactions_between(start, txn.event_time, txn.txn_id) == expected
        merchant.add_transaction(txn.event_time, txn.txn_id)
        seen[txn.txn_id] = txn.event_time
    ids = sorted(seen)
    labelled: dict[str, float] = {}
    for index, delay in fraud_draws:
        txn_id = ids[index % len(ids)]
        merchant.add_fraud_label(seen[txn_id], txn_id, seen[txn_id] + delay)
        labelled.setdefault(txn_id, seen[txn_id] + delay)  # the first label stands
    newest = max(seen.values())
    kept = {i: t for i, t in seen.items() if t >= newest - merchant_retention_seconds(label_delay)}
    asked = newest + asked_after
    end = asked - label_delay
    for window in ("1d", "7d", "30d"):
        start = end - WINDOWS[window]
        inside = {i for i, t in kept.items() if start <= t < end}
        assert merchant.transactions_in(start, end) == len(inside)
        known = sum(1 for i in inside if i in labelled and labelled[i] < asked)
        assert merchant.frauds_known_in(start, end, asked) == known


def test_events_past_retention_are_evicted() -> None:
    history = CardHistory()
    first = CardEvent("a", BASE_TIME, 10.0, "m1", "US", None, None, False, False)
    later = CardEvent("b", BASE_TIME + 40 * 86_400.0, 10.0, "m1", "US", None, None, False, False)
    history.add(first)
    history.add(later)
    assert [event.txn_id for event in history.events] == ["b"]


@settings(max_examples=100, deadline=None)
@given(arrivals(), st.integers(2, 30))
def test_a_history_loaded_at_once_equals_one_added_event_by_event(
    arrived: list[Transaction], stored_cap: int
) -> None:
    """Sorted, distinct events (a card's window as Redis returns it) are taken at once; in
    any other order one by one. Both end where adding them one at a time ends, retention
    and the cap of stored events included."""
    events = [CardEvent.from_transaction(txn) for txn in arrived]
    in_order = sorted({event.txn_id: event for event in events}.values(), key=lambda e: e.key)
    with mock.patch.object(windows_module, "STORED_CARD_EVENTS", stored_cap):
        for source in (in_order, events):
            one_by_one = CardHistory()
            for event in source:
                one_by_one.add(event)
            loaded = CardHistory(source)
            assert loaded.events == one_by_one.events
            last = arrived[-1]
            assert loaded.before(last.event_time, last.txn_id) == one_by_one.before(
                last.event_time, last.txn_id
            )
            assert loaded.add(events[0]) is one_by_one.add(events[0])
