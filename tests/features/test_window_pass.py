"""The running window aggregates against the pass they replace, to the bit."""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.features import window_pass as window_pass_module
from fraudstream.features import windows as windows_module
from fraudstream.features.transaction import Transaction
from fraudstream.features.window_pass import RunningCardHistory, WindowPass, window_pass
from fraudstream.features.windows import CardEvent
from tests.features.test_windows import BASE_TIME, arrivals


def _comparable(windows: WindowPass) -> tuple[Any, ...]:
    return (windows.values, windows.count_30d, windows.total_30d, windows.sum_of_squares_30d,
            sorted(windows.merchants_30d), sorted(windows.countries_30d),  # type: ignore[call-overload]
            list(windows.events_30d))  # fmt: skip


def _replay(arrived: list[Transaction], history: RunningCardHistory) -> None:
    """Ask for each transaction's windows (twice, as a retried batch would), then add it;
    the running answer must equal the pass over the same events."""
    for txn in arrived:
        for _ in range(2):
            got = history.pass_before(txn.event_time, txn.txn_id)
            expected = window_pass(history.before(txn.event_time, txn.txn_id), txn.event_time)
            assert _comparable(got) == _comparable(expected)
        history.add(CardEvent.from_transaction(txn))


@settings(max_examples=300, deadline=None)
@given(arrivals())
def test_running_windows_equal_the_pass_on_late_and_duplicated_arrivals(
    arrived: list[Transaction],
) -> None:
    _replay(arrived, RunningCardHistory())


@settings(max_examples=100, deadline=None)
@given(arrivals())
def test_running_windows_equal_the_pass_past_the_event_caps(arrived: list[Transaction]) -> None:
    """With caps of 5 events seen and 8 kept, the caps evict and the pass takes over."""
    with (
        mock.patch.object(windows_module, "MAX_CARD_EVENTS", 5),
        mock.patch.object(windows_module, "STORED_CARD_EVENTS", 8),
    ):
        _replay(arrived, RunningCardHistory())


def _in_order(count: int, amount: float = 12.5) -> list[Transaction]:
    return [
        Transaction(
            txn_id=f"t{i:04d}",
            card_id="c1",
            merchant_id=f"m{i % 3}",
            amount=amount,
            currency="USD",
            country="US",
            channel="pos",
            event_time=BASE_TIME + 1_800.0 * i,
            lat=None,
            lon=None,
        )  # fmt: skip
        for i in range(count)
    ]


def _passes_made(arrived: list[Transaction], history: RunningCardHistory) -> int:
    with mock.patch.object(window_pass_module, "window_pass", wraps=window_pass) as full_pass:
        for txn in arrived:
            history.pass_before(txn.event_time, txn.txn_id)
            history.add(CardEvent.from_transaction(txn))
    return full_pass.call_count


def test_transactions_in_time_order_are_served_without_a_pass_after_the_first() -> None:
    """A card loaded with a month of events, then 200 more in order: the first is served
    by the pass (a card asked once may be a cold one), the others by the running windows."""
    events = [CardEvent.from_transaction(txn) for txn in _in_order(1_500)]
    history = RunningCardHistory(events[:1_300])
    assert _passes_made(_in_order(1_500)[1_300:], history) == 1


def test_a_card_past_the_cap_is_served_without_a_pass() -> None:
    """A card-testing bot's card: each transaction sees its latest `MAX_CARD_EVENTS` events,
    and costs no pass over them."""
    with (
        mock.patch.object(windows_module, "MAX_CARD_EVENTS", 5),
        mock.patch.object(windows_module, "STORED_CARD_EVENTS", 8),
    ):
        history = RunningCardHistory()
        assert _passes_made(_in_order(30), history) == 1
        _replay(_in_order(40)[30:], history)


def test_a_late_transaction_is_served_by_the_pass_and_the_windows_rebuilt_once() -> None:
    arrived = _in_order(50)
    late = arrived.pop(20)
    history = RunningCardHistory()
    _passes_made(arrived[:40], history)
    assert _passes_made([late], history) == 1  # it comes before the newest event
    assert _passes_made(arrived[40:], history) == 0  # rebuilt from what the card holds


def test_an_amount_without_an_exact_integer_form_is_served_by_the_pass() -> None:
    arrived = _in_order(10, amount=1e-30)
    history = RunningCardHistory([CardEvent.from_transaction(arrived[0])])
    assert _passes_made(arrived[1:], history) == 9
    _replay(_in_order(20)[10:], history)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.01, 1e7), min_size=1, max_size=300))
def test_totals_are_exactly_rounded_whatever_the_amounts(amounts: list[float]) -> None:
    txns = [
        Transaction(
            txn_id=f"t{i:04d}",
            card_id="c1",
            merchant_id="m1",
            amount=amount,
            currency="USD",
            country="US",
            channel="pos",
            event_time=BASE_TIME + i,
            lat=None,
            lon=None,
        )  # fmt: skip
        for i, amount in enumerate(amounts)
    ]
    _replay(txns, RunningCardHistory())
