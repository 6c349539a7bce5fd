"""A synthetic card-transaction stream with labelled frauds.

Legitimate traffic is drawn in bulk from the cards' habits (usual merchants, daily rhythm,
amount scale, trips abroad, weekend sprees); fraud episodes from `fraudstream.stream.sim.scenarios`
are then written into real cards' histories, so per-card window features carry the signal.
Only `numpy.random.default_rng(config.seed)` is used: the same config gives the same bytes.

Labels arrive delayed like chargebacks (DESIGN.md §3). Writing and reading the stream as
files is `fraudstream.stream.sim.streamfile`'s job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fraudstream.features.geo import COUNTRIES, SECONDS_PER_DAY, SECONDS_PER_HOUR
from fraudstream.features.transaction import CHANNELS, Label, Transaction
from fraudstream.stream.sim.scenarios import (
    ATM,
    CATEGORIES,
    CATEGORY_MEDIAN,
    CITIES_PER_COUNTRY,
    COUNTRY_CODES,
    COUNTRY_OFFSET_S,
    ECOM,
    POS,
    SCENARIOS,
    USUAL_SLOT_CHANNEL,
    USUAL_SLOT_SHARE,
    History,
    World,
    build_world,
    other_countries,
    plan_frauds,
)

__all__ = [
    "SCENARIOS",
    "GeneratorConfig",
    "SyntheticStream",
    "generate_stream",
]

#: Legitimate habits: share of purchases at merchants outside the card's usual set, share of
#: those abroad (web shops), share of traffic that is weekend-style shopping sprees, share of
#: cards that take one trip abroad, and the post-drift shift (pos→ecom share, amount factor).
EXPLORE_SHARE = 0.13
EXPLORE_ABROAD_SHARE = 0.25
SPREE_SHARE = 0.05
SPREE_AMOUNT_FACTOR = 1.7
TRAVELLER_SHARE = 0.3
DRIFT_ECOM_SHIFT = 0.15
DRIFT_AMOUNT_FACTOR = 1.15
#: Subscription prices, small recurring charges that look like card testing.
SUBSCRIPTION_PRICES = np.array([0.99, 1.99, 2.99, 4.99, 7.99, 9.99, 12.99, 14.99])
_CATEGORY_NAMES = [name for name, *_ in CATEGORIES]
_SUBSCRIPTION = _CATEGORY_NAMES.index("subscription")
_TRANSIT = _CATEGORY_NAMES.index("transit")
#: Chargeback delay of frauds: lognormal, median 7 days, clipped to [1, 60] days.
CHARGEBACK_MEDIAN_DAYS = 7.0
CHARGEBACK_SIGMA = 0.7


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate; `cards`/`merchants` default to sizes that scale with `transactions`."""

    transactions: int = 50_000
    seed: int = 7
    fraud_rate: float = 0.01
    days: float = 60.0
    start_time: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    cards: int | None = None
    merchants: int | None = None
    drift_at: float = 0.75

    def __post_init__(self) -> None:
        if self.transactions < 100:
            raise ValueError(f"transactions must be >= 100, got {self.transactions}")
        if not 0.0 <= self.fraud_rate <= 0.5:
            raise ValueError(f"fraud_rate must lie in [0, 0.5], got {self.fraud_rate}")
        if not self.days >= 1.0:
            raise ValueError(f"days must be >= 1 so fraud episodes fit, got {self.days}")
        if not 0.0 < self.drift_at < 1.0:
            raise ValueError(f"drift_at must lie strictly between 0 and 1, got {self.drift_at}")
        if self.cards is not None and self.cards < 1:
            raise ValueError(f"cards must be >= 1, got {self.cards}")
        if self.merchants is not None and self.merchants < 3:
            raise ValueError(f"merchants must be >= 3 (one per channel), got {self.merchants}")

    @property
    def n_cards(self) -> int:
        return self.cards if self.cards is not None else max(50, self.transactions // 120)

    @property
    def n_merchants(self) -> int:
        return self.merchants if self.merchants is not None else max(30, self.transactions // 400)


@dataclass(frozen=True)
class SyntheticStream:
    """Transactions sorted by `event_time` (ties by `txn_id`) and one label each, same order."""

    transactions: list[Transaction]
    labels: list[Label]
    drift_time: float  # epoch seconds; `novel` frauds happen only from here on


def _legit_traffic(
    rng: np.random.Generator, world: World, n: int, span: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`n` legitimate (card, merchant, time, amount) rows, unsorted."""
    start, drift, end = span
    n_spree = round(n * SPREE_SHARE)
    n_base = n - n_spree
    share = world.card_activity / world.card_activity.sum()
    card = np.repeat(np.arange(len(share)), rng.multinomial(n_base, share))

    # Days weighted by weekday (busier weekends), hours from the card's own rhythm.
    n_days = math.ceil((end - start) / SECONDS_PER_DAY)
    weekday = (int(start // SECONDS_PER_DAY) + np.arange(n_days) + 3) % 7
    day_weight = np.select([weekday == 5, weekday == 6], [1.25, 1.1], 1.0)
    day = rng.choice(n_days, size=n_base, p=day_weight / day_weight.sum())
    hour = (
        world.card_peak_hour[card] + world.card_hour_spread[card] * rng.normal(size=n_base)
    ) % 24
    local = day * SECONDS_PER_DAY + hour * SECONDS_PER_HOUR
    time = local - COUNTRY_OFFSET_S[world.card_country[card]]

    slot = rng.choice(len(USUAL_SLOT_SHARE), size=n_base, p=USUAL_SLOT_SHARE)
    merchant = world.card_usual[card, slot]
    explore = np.flatnonzero(rng.random(n_base) < EXPLORE_SHARE)
    explore_channel = rng.choice([POS, ECOM, ATM], size=len(explore), p=[0.55, 0.4, 0.05])
    merchant[explore] = _new_merchants(rng, world, card[explore], explore_channel)

    # Sprees: a few extra purchases at new merchants within hours of a (mostly weekend) one.
    spree_weight = np.where(weekday[day] >= 5, 3.0, 1.0)
    anchors = rng.choice(n_base, size=n_spree // 4 + 1, p=spree_weight / spree_weight.sum())
    anchor = anchors[rng.integers(0, len(anchors), n_spree)]
    spree_card = card[anchor]
    spree_channel = np.where(rng.random(n_spree) < 0.65, POS, ECOM)
    card = np.concatenate([card, spree_card])
    time = np.concatenate([time, time[anchor] + rng.uniform(120, 9000, n_spree)])
    merchant = np.concatenate([merchant, _new_merchants(rng, world, spree_card, spree_channel)])
    time = start + (time % (end - start))

    # After the drift point some shop visits move online.
    to_ecom = np.flatnonzero(
        (time >= drift)
        & (world.merchant_channel[merchant] == POS)
        & (rng.random(n) < DRIFT_ECOM_SHIFT)
    )
    ecom_slots = np.flatnonzero(USUAL_SLOT_CHANNEL == ECOM)
    merchant[to_ecom] = world.card_usual[card[to_ecom], rng.choice(ecom_slots, len(to_ecom))]

    # Travellers: during one trip their shop and ATM visits happen in another country.
    n_cards = len(world.card_country)
    trip_start = start + rng.uniform(-0.1, 1.0, n_cards) * (end - start)
    trip_end = trip_start + rng.uniform(2, 10, n_cards) * SECONDS_PER_DAY
    trip_country = other_countries(rng, world.card_country)
    trip_city = rng.integers(0, CITIES_PER_COUNTRY, n_cards)
    away = np.flatnonzero(
        (rng.random(n_cards) < TRAVELLER_SHARE)[card]
        & (time >= trip_start[card])
        & (time < trip_end[card])
        & (world.merchant_channel[merchant] != ECOM)
    )
    merchant[away] = world.pick_merchants(
        rng, world.merchant_channel[merchant[away]], trip_country[card[away]], trip_city[card[away]]
    )

    factor = np.where(time >= drift, DRIFT_AMOUNT_FACTOR, 1.0)
    factor[n_base:] *= SPREE_AMOUNT_FACTOR
    return card, merchant, time, _legit_amounts(rng, world, card, merchant, factor)


def _new_merchants(
    rng: np.random.Generator, world: World, card: np.ndarray, channel: np.ndarray
) -> np.ndarray:
    """Merchants outside the usual set: shops and ATMs in the home city, web shops anywhere."""
    home = world.card_country[card]
    web = channel == ECOM
    abroad = web & (rng.random(len(card)) < EXPLORE_ABROAD_SHARE)
    country = np.where(abroad, other_countries(rng, home), home)
    merchant = np.empty(len(card), dtype=np.int64)
    merchant[web] = world.pick_merchants(rng, channel[web], country[web])
    shop = ~web
    merchant[shop] = world.pick_merchants(
        rng, channel[shop], country[shop], world.card_city[card[shop]]
    )
    return merchant


def _legit_amounts(
    rng: np.random.Generator,
    world: World,
    card: np.ndarray,
    merchant: np.ndarray,
    factor: np.ndarray,
) -> np.ndarray:
    """Category median x card scale x card-specific lognormal noise; fixed-price exceptions."""
    category = world.merchant_category[merchant]
    noise = rng.normal(size=len(card)) * world.card_amount_sigma[card]
    amount = CATEGORY_MEDIAN[category] * world.card_amount_scale[card] * np.exp(noise) * factor
    channel = world.merchant_channel[merchant]
    atm = channel == ATM
    amount[atm] = np.maximum(20.0, np.round(amount[atm] / 20.0) * 20.0)
    subscription = category == _SUBSCRIPTION
    amount[subscription] = rng.choice(SUBSCRIPTION_PRICES, size=int(subscription.sum()))
    transit = category == _TRANSIT
    amount[transit] = CATEGORY_MEDIAN[_TRANSIT] * rng.lognormal(0.0, 0.25, int(transit.sum()))
    return amount


def generate_stream(config: GeneratorConfig) -> SyntheticStream:
    """The whole stream in memory: legit traffic in bulk, then frauds injected into it."""
    rng = np.random.default_rng(config.seed)
    start = config.start_time
    end = start + config.days * SECONDS_PER_DAY
    drift = round(start + config.drift_at * (end - start), 3)
    world = build_world(rng, config.n_cards, config.n_merchants)
    n_frauds = int(rng.binomial(config.transactions, config.fraud_rate))
    card, merchant, time, amount = _legit_traffic(
        rng, world, config.transactions - n_frauds, (start, drift, end)
    )
    order = np.argsort(time, kind="stable")
    fraud, fraud_code = plan_frauds(
        rng, world, History(card[order], time[order]), n_frauds, (start, drift, end)
    )
    card = np.concatenate([card, fraud.card]).astype(np.int64)
    merchant = np.concatenate([merchant, fraud.merchant]).astype(np.int64)
    time = np.round(np.concatenate([time, fraud.time]), 3)
    amount = np.maximum(np.round(np.concatenate([amount, fraud.amount]), 2), 0.01)
    code = np.concatenate([np.full(len(time) - n_frauds, -1), fraud_code])
    order = np.argsort(time, kind="stable")
    card, merchant, time, amount, code = (a[order] for a in (card, merchant, time, amount, code))

    is_fraud = code >= 0
    delay_days = np.where(
        is_fraud,
        np.clip(rng.lognormal(np.log(CHARGEBACK_MEDIAN_DAYS), CHARGEBACK_SIGMA, len(time)), 1, 60),
        rng.uniform(1, 10, len(time)),
    )
    label_time = np.round(time + delay_days * SECONDS_PER_DAY, 3)
    channel = world.merchant_channel[merchant]
    jitter = np.where(channel == ECOM, 0.0, 0.001)  # terminals: GPS-like noise; web: the shop
    lat = np.round(world.merchant_lat[merchant] + jitter * rng.normal(size=len(time)), 4)
    lon = np.round(world.merchant_lon[merchant] + jitter * rng.normal(size=len(time)), 4)

    width = max(8, len(str(len(time))))
    txn_ids = [f"t{i:0{width}d}" for i in range(1, len(time) + 1)]
    country = world.merchant_country[merchant]
    currencies = np.array([COUNTRIES[c].currency for c in COUNTRY_CODES], dtype=object)
    transactions = list(
        map(
            Transaction,
            txn_ids,
            _names("c", 5, len(world.card_country))[card].tolist(),
            _names("m", 4, len(world.merchant_country))[merchant].tolist(),
            amount.tolist(),
            currencies[country].tolist(),
            np.array(COUNTRY_CODES, dtype=object)[country].tolist(),
            np.array(CHANNELS, dtype=object)[channel].tolist(),
            time.tolist(),
            lat.tolist(),
            np.clip(lon, -180.0, 180.0).tolist(),
        )
    )
    names = np.array([*SCENARIOS, "legit"], dtype=object)
    labels = list(map(Label, txn_ids, is_fraud.tolist(), names[code].tolist(), label_time.tolist()))
    return SyntheticStream(transactions, labels, drift)


def _names(prefix: str, min_width: int, count: int) -> np.ndarray:
    width = max(min_width, len(str(count)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, count + 1)], dtype=object)
