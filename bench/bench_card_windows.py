"""A card's window features: the pass over its history against the running windows.

CPU per transaction of what the worker does for each transaction of a cached card: its
card features, then adding it to the card's history. `pass` is `CardHistory` with
`definitions.card_features` (one pass over the card's month), `running` is
`RunningCardHistory` with `card_features_from` (features/window_pass.py). Two inputs:
a generated stream in time order (about 60 events a card a month), and one card at the
`MAX_CARD_EVENTS` cap (a card-testing bot: an event every 500 s). And a cold card: its
window loaded as Redis returns it, then one transaction (what a worker pays the first
time it sees a card).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from fraudstream.features.definitions import card_features, card_features_from
from fraudstream.features.transaction import Transaction
from fraudstream.features.window_pass import RunningCardHistory
from fraudstream.features.windows import MAX_CARD_EVENTS, CardEvent, CardHistory
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream

BOT_GAP_S = 500.0
COLD_CARDS = 2_000
COLD_MIN_EVENTS = 30


def _pass_features(history: CardHistory, txn: Transaction) -> list[float]:
    return card_features(txn, history.before(txn.event_time, txn.txn_id))


def _running_features(history: RunningCardHistory, txn: Transaction) -> list[float]:
    return card_features_from(txn, history.pass_before(txn.event_time, txn.txn_id))


#: Each path: the card history it keeps, and how it gets a transaction's card features.
PATHS: dict[str, tuple[type[CardHistory], Callable[[Any, Transaction], list[float]]]] = {
    "pass": (CardHistory, _pass_features),
    "running": (RunningCardHistory, _running_features),
}


def _us_per_txn(path: str, warm: Sequence[Transaction], timed: Sequence[Transaction]) -> float:
    """A cached card's transaction: its card features, then adding it to the history."""
    history_class, features = PATHS[path]
    histories: dict[str, CardHistory] = {}

    def step(txn: Transaction) -> None:
        history = histories.setdefault(txn.card_id, history_class())
        features(history, txn)
        history.add(CardEvent.from_transaction(txn))

    for txn in warm:
        step(txn)
    started = time.process_time()
    for txn in timed:
        step(txn)
    return 1e6 * (time.process_time() - started) / len(timed)


def _cold_us_per_card(path: str, ordered: Sequence[Transaction]) -> float:
    """A cold card: its window loaded as Redis returns it, then its transaction's features."""
    history_class, features = PATHS[path]
    held: dict[str, list[CardEvent]] = {}
    cases = []
    for txn in ordered:
        events = held.setdefault(txn.card_id, [])
        if len(events) >= COLD_MIN_EVENTS:
            cases.append((txn, list(events)))
        events.append(CardEvent.from_transaction(txn))
    cases = cases[:: max(1, len(cases) // COLD_CARDS)]
    started = time.process_time()
    for txn, events in cases:
        features(history_class(events), txn)
    return 1e6 * (time.process_time() - started) / len(cases)


def _bot_card(count: int) -> list[Transaction]:
    return [
        Transaction(
            txn_id=f"b{i:06d}",
            card_id="bot",
            merchant_id=f"m{i % 40}",
            amount=1.0 + i % 7,
            currency="USD",
            country="US",
            channel="web",
            event_time=1_767_225_600.0 + BOT_GAP_S * i,
            lat=None,
            lon=None,
        )  # fmt: skip
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    stream = generate_stream(GeneratorConfig(transactions=args.transactions, seed=3))
    ordered = sorted(stream.transactions, key=lambda txn: (txn.event_time, txn.txn_id))
    bot = _bot_card(MAX_CARD_EVENTS + 1_000)
    inputs = {
        "generated stream": (ordered[: len(ordered) // 2], ordered[len(ordered) // 2 :]),
        "one card at the cap": (bot[:MAX_CARD_EVENTS], bot[MAX_CARD_EVENTS:]),
    }
    print("| input | pass us / txn | running us / txn |\n|---|---:|---:|")
    for name, (warm, timed) in inputs.items():
        medians = [
            statistics.median(_us_per_txn(path, warm, timed) for _ in range(args.runs))
            for path in PATHS
        ]
        print(f"| {name} | {medians[0]:.1f} | {medians[1]:.1f} |")
    cold = [
        statistics.median(_cold_us_per_card(path, ordered) for _ in range(args.runs))
        for path in PATHS
    ]
    print(f"| a cold card (loaded, then one transaction) | {cold[0]:.1f} | {cold[1]:.1f} |")


if __name__ == "__main__":
    main()
