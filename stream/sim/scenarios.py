"""The actors of the synthetic stream, and the frauds played on them.

A `World` holds cards (home city, spending scale, daily rhythm, usual merchants) and
merchants (channel, category, country, location) as NumPy arrays, so the generator
(`generator.py`) can draw legitimate traffic in bulk. Each fraud scenario is one function
that writes a short episode into a real card's history; `plan_frauds` fills a
per-scenario budget with them.
Amounts are on one scale for every country (as if converted to the card's billing currency).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fraudstream.features.geo import COUNTRIES, SECONDS_PER_DAY, SECONDS_PER_HOUR, haversine_km

SCENARIOS: tuple[str, ...] = (
    "stolen_card",
    "card_testing",
    "account_takeover",
    "compromised_merchant",
    "cross_border_night",
    "novel",
)
POS, ECOM, ATM = 0, 1, 2  # indices into features.transaction.CHANNELS

#: Per country: share of cards and merchants, and spread of its cities around the centroid (°).
_COUNTRY_PROFILE: dict[str, tuple[float, float]] = {
    "US": (0.24, 7.0), "GB": (0.11, 1.5), "DE": (0.10, 1.5), "FR": (0.08, 1.5),
    "ES": (0.05, 1.5), "IT": (0.05, 1.5), "NL": (0.04, 1.5), "CA": (0.05, 3.0),
    "BR": (0.05, 5.0), "MX": (0.03, 1.5), "IN": (0.05, 4.0), "JP": (0.04, 1.5),
    "AU": (0.03, 3.0), "SG": (0.02, 1.5), "NG": (0.015, 1.5), "RU": (0.02, 4.0),
    "CN": (0.02, 5.0), "ZA": (0.015, 1.5),
}  # fmt: skip
COUNTRY_CODES: tuple[str, ...] = tuple(COUNTRIES)
COUNTRY_SHARE = np.array([_COUNTRY_PROFILE[c][0] for c in COUNTRY_CODES])
COUNTRY_SHARE /= COUNTRY_SHARE.sum()
COUNTRY_OFFSET_S = np.array([COUNTRIES[c].utc_offset_hours * SECONDS_PER_HOUR for c in COUNTRIES])
_CITY_SPREAD_DEG = np.array([_COUNTRY_PROFILE[c][1] for c in COUNTRY_CODES])
CITIES_PER_COUNTRY = 4

#: (name, channel, share of the channel's merchants, median amount)
CATEGORIES: tuple[tuple[str, int, float, float], ...] = (
    ("grocery", POS, 0.24, 38.0),
    ("restaurant", POS, 0.22, 27.0),
    ("fuel", POS, 0.12, 52.0),
    ("retail", POS, 0.16, 64.0),
    ("electronics", POS, 0.06, 190.0),
    ("transit", POS, 0.10, 2.9),
    ("pharmacy", POS, 0.10, 21.0),
    ("marketplace", ECOM, 0.35, 42.0),
    ("subscription", ECOM, 0.25, 9.99),
    ("fashion", ECOM, 0.18, 72.0),
    ("electronics_online", ECOM, 0.12, 230.0),
    ("travel", ECOM, 0.10, 310.0),
    ("cash", ATM, 1.0, 100.0),
)
CATEGORY_MEDIAN = np.array([median for *_, median in CATEGORIES])
#: Channel of each usual-merchant slot of a card, and how often a card returns to each slot.
USUAL_SLOT_CHANNEL = np.array([POS] * 6 + [ECOM] * 3 + [ATM])
USUAL_SLOT_SHARE = np.array([0.22, 0.15, 0.11, 0.08, 0.06, 0.04, 0.13, 0.08, 0.05, 0.08])
USUAL_SLOT_SHARE = USUAL_SLOT_SHARE / USUAL_SLOT_SHARE.sum()


class _Pool:
    """Merchants grouped by an integer key, for picking a random member of many groups at once."""

    def __init__(self, keys: np.ndarray, n_keys: int) -> None:
        self.members = np.argsort(keys, kind="stable")
        self.counts = np.bincount(keys, minlength=n_keys)
        self.starts = np.cumsum(self.counts) - self.counts

    def pick(self, rng: np.random.Generator, keys: np.ndarray) -> np.ndarray:
        """A random member per key; -1 where the group is empty."""
        counts = self.counts[keys]
        offsets = (rng.random(len(keys)) * counts).astype(np.int64)
        index = np.minimum(self.starts[keys] + offsets, len(self.members) - 1)
        return np.where(counts > 0, self.members[index], -1)


@dataclass(frozen=True)
class World:
    """Cards and merchants as parallel arrays (index i is card/merchant number i + 1)."""

    merchant_country: np.ndarray
    merchant_city: np.ndarray
    merchant_channel: np.ndarray
    merchant_category: np.ndarray
    merchant_lat: np.ndarray
    merchant_lon: np.ndarray
    card_country: np.ndarray
    card_city: np.ndarray
    card_activity: np.ndarray
    card_amount_scale: np.ndarray
    card_amount_sigma: np.ndarray
    card_peak_hour: np.ndarray
    card_hour_spread: np.ndarray
    card_usual: np.ndarray  # (cards, len(USUAL_SLOT_CHANNEL)) merchant indices
    pools: tuple[_Pool, _Pool, _Pool]  # by (country, city, channel), (country, channel), channel

    def pick_merchants(
        self,
        rng: np.random.Generator,
        channel: np.ndarray,
        country: np.ndarray,
        city: np.ndarray | None = None,
    ) -> np.ndarray:
        """Random merchants of `channel` in `city` (if given) of `country`.

        Falls back to the whole country, then to any country, when a small world has no such
        merchant, so every pick succeeds.
        """
        by_city, by_country, by_channel = self.pools
        picked = np.full(len(channel), -1, dtype=np.int64)
        if city is not None:
            picked = by_city.pick(rng, (country * CITIES_PER_COUNTRY + city) * 3 + channel)
        missing = picked < 0
        picked[missing] = by_country.pick(rng, country[missing] * 3 + channel[missing])
        missing = picked < 0
        picked[missing] = by_channel.pick(rng, channel[missing])
        return picked


def other_countries(rng: np.random.Generator, home: np.ndarray) -> np.ndarray:
    """A country different from each `home`, weighted like the population of cards."""
    drawn = rng.choice(len(COUNTRY_CODES), size=len(home), p=COUNTRY_SHARE)
    shift = rng.integers(1, len(COUNTRY_CODES), size=len(home))
    return np.where(drawn == home, (home + shift) % len(COUNTRY_CODES), drawn)


def build_world(rng: np.random.Generator, n_cards: int, n_merchants: int) -> World:
    """Cities per country, merchants in them, and cards living in them with usual merchants."""
    n_countries = len(COUNTRY_CODES)
    centroid = np.array([(COUNTRIES[c].lat, COUNTRIES[c].lon) for c in COUNTRIES])
    city_shape = (n_countries, CITIES_PER_COUNTRY)
    city_lat = centroid[:, :1] + rng.normal(0, 0.5, city_shape) * _CITY_SPREAD_DEG[:, None]
    city_lon = centroid[:, 1:] + rng.normal(0, 0.8, city_shape) * _CITY_SPREAD_DEG[:, None]

    n_atm = max(1, round(0.12 * n_merchants))
    n_ecom = max(1, round(0.33 * n_merchants))
    channel = rng.permutation(
        np.repeat([POS, ECOM, ATM], [n_merchants - n_atm - n_ecom, n_ecom, n_atm])
    )
    category = np.empty(n_merchants, dtype=np.int64)
    for code in (POS, ECOM, ATM):
        ids = [i for i, (_, ch, _, _) in enumerate(CATEGORIES) if ch == code]
        shares = np.array([CATEGORIES[i][2] for i in ids])
        category[channel == code] = rng.choice(
            ids, size=int((channel == code).sum()), p=shares / shares.sum()
        )
    m_country = rng.choice(n_countries, size=n_merchants, p=COUNTRY_SHARE)
    m_city = rng.integers(0, CITIES_PER_COUNTRY, size=n_merchants)
    m_lat = np.clip(city_lat[m_country, m_city] + rng.normal(0, 0.08, n_merchants), -89.9, 89.9)
    m_lon = (city_lon[m_country, m_city] + rng.normal(0, 0.08, n_merchants) + 180.0) % 360 - 180
    pools = (
        _Pool(
            (m_country * CITIES_PER_COUNTRY + m_city) * 3 + channel,
            n_countries * CITIES_PER_COUNTRY * 3,
        ),
        _Pool(m_country * 3 + channel, n_countries * 3),
        _Pool(channel, 3),
    )

    c_country = rng.choice(n_countries, size=n_cards, p=COUNTRY_SHARE)
    c_city = rng.integers(0, CITIES_PER_COUNTRY, size=n_cards)
    night_owl = rng.random(n_cards) < 0.08
    peak = np.where(night_owl, rng.normal(0.5, 1.5, n_cards), rng.normal(13.5, 2.5, n_cards))
    world = World(
        merchant_country=m_country,
        merchant_city=m_city,
        merchant_channel=channel,
        merchant_category=category,
        merchant_lat=m_lat,
        merchant_lon=m_lon,
        card_country=c_country,
        card_city=c_city,
        card_activity=rng.gamma(1.5, 1.0, n_cards),
        card_amount_scale=rng.lognormal(0.0, 0.45, n_cards),
        card_amount_sigma=rng.uniform(0.35, 0.8, n_cards),
        card_peak_hour=peak % 24,
        card_hour_spread=rng.uniform(2.0, 4.0, n_cards),
        card_usual=np.empty((n_cards, len(USUAL_SLOT_CHANNEL)), dtype=np.int64),
        pools=pools,
    )
    for slot, slot_channel in enumerate(USUAL_SLOT_CHANNEL):
        channels = np.full(n_cards, slot_channel)
        if slot_channel == ECOM:
            abroad = rng.random(n_cards) < 0.12
            country = np.where(abroad, other_countries(rng, c_country), c_country)
            world.card_usual[:, slot] = world.pick_merchants(rng, channels, country)
        else:
            world.card_usual[:, slot] = world.pick_merchants(rng, channels, c_country, c_city)
    return world


@dataclass(frozen=True)
class History:
    """Legitimate transactions sorted by time, for anchoring frauds in real card histories."""

    card: np.ndarray
    time: np.ndarray


class Episode(NamedTuple):
    card: np.ndarray
    merchant: np.ndarray
    time: np.ndarray
    amount: np.ndarray


_Scenario = Callable[[np.random.Generator, World, History, float, float], Episode]


def _anchor(
    rng: np.random.Generator, world: World, history: History, lo: float, hi: float
) -> tuple[int, float]:
    """A card and the time of one of its legitimate transactions in [lo, hi)."""
    first, last = np.searchsorted(history.time, [lo, hi])
    if last <= first:
        return int(rng.integers(len(world.card_country))), float(rng.uniform(lo, hi))
    row = int(rng.integers(first, last))
    return int(history.card[row]), float(history.time[row])


def _at_local_hour(t: float, offset_s: float, hour: float, lo: float, hi: float) -> float:
    """`t` moved within its local day to local `hour`, kept inside [lo, hi) where possible."""
    moved = t - (t + offset_s) % SECONDS_PER_DAY + hour * SECONDS_PER_HOUR
    for candidate in (moved, moved + SECONDS_PER_DAY, moved - SECONDS_PER_DAY):
        if lo <= candidate < hi:
            return candidate
    return t


def _burst(rng: np.random.Generator, t0: float, n: int, mean_gap_s: float) -> np.ndarray:
    return t0 + np.concatenate(([0.0], np.cumsum(rng.exponential(mean_gap_s, n - 1))))


def _stolen_card(
    rng: np.random.Generator, world: World, history: History, lo: float, hi: float
) -> Episode:
    """A spree: several larger purchases at new local shops and web shops within hours."""
    card, seen = _anchor(rng, world, history, lo, hi)
    n = min(10, 2 + int(rng.poisson(3)))
    times = _burst(rng, seen + rng.exponential(3 * SECONDS_PER_HOUR), n, 25 * 60.0)
    channel = np.where(rng.random(n) < 0.45, POS, ECOM)
    home = np.full(n, world.card_country[card])
    merchant = world.pick_merchants(rng, channel, home, np.full(n, world.card_city[card]))
    amount = world.card_amount_scale[card] * rng.lognormal(np.log(120.0), 0.9, n)
    return Episode(np.full(n, card), merchant, times, amount)


def _card_testing(
    rng: np.random.Generator, world: World, history: History, lo: float, hi: float
) -> Episode:
    """Tiny charges across many merchants, mostly web shops anywhere, sometimes then a cash-out."""
    card = int(rng.integers(len(world.card_country)))
    n = min(25, 3 + int(rng.poisson(6)))
    times = _burst(rng, rng.uniform(lo, hi), n, 90.0)
    amount = np.where(rng.random(n) < 0.3, 1.0, rng.uniform(0.5, 6.0, n))
    channel = np.where(rng.random(n) < 0.9, ECOM, POS)
    home = np.full(n, world.card_country[card])
    country = np.where(rng.random(n) < 0.5, home, other_countries(rng, home))
    merchant = world.pick_merchants(rng, channel, country)
    if rng.random() < 0.4:
        times = np.append(times, times[-1] + rng.uniform(1, 3) * SECONDS_PER_HOUR)
        amount = np.append(amount, world.card_amount_scale[card] * rng.lognormal(np.log(200), 0.6))
        merchant = np.append(merchant, world.pick_merchants(rng, np.array([ECOM]), home[:1]))
    return Episode(np.full(len(times), card), merchant, times, amount)


def _far_countries(home: int, min_km: float = 1500.0) -> np.ndarray:
    here = COUNTRIES[COUNTRY_CODES[home]]
    far = [
        i
        for i, code in enumerate(COUNTRY_CODES)
        if haversine_km(here.lat, here.lon, COUNTRIES[code].lat, COUNTRIES[code].lon) > min_km
    ]
    return np.array(far)


def _account_takeover(
    rng: np.random.Generator, world: World, history: History, lo: float, hi: float
) -> Episode:
    """Impossible travel: soon after a genuine purchase, spending starts in a far country."""
    card, seen = _anchor(rng, world, history, lo, hi)
    n = min(6, 1 + int(rng.poisson(1.5)))
    times = _burst(rng, seen + 300.0 + rng.exponential(40 * 60.0), n, 30 * 60.0)
    channel = rng.choice([ECOM, POS, ATM], size=n, p=[0.45, 0.35, 0.2])
    country = np.full(n, rng.choice(_far_countries(int(world.card_country[card]))))
    merchant = world.pick_merchants(
        rng, channel, country, np.full(n, rng.integers(CITIES_PER_COUNTRY))
    )
    scale = world.card_amount_scale[card]
    amount = np.where(
        channel == ATM,
        np.round(scale * rng.lognormal(np.log(250), 0.5, n) / 20) * 20,
        scale * rng.lognormal(np.log(150), 0.8, n),
    )
    return Episode(np.full(n, card), merchant, times, np.maximum(amount, 20.0))


def _compromised_merchant(
    rng: np.random.Generator, world: World, history: History, lo: float, hi: float
) -> Episode:
    """One merchant charges many different cards over a few days, some of them its customers."""
    channel = np.array([POS if rng.random() < 0.7 else ECOM])
    country = rng.choice(len(COUNTRY_CODES), size=1, p=COUNTRY_SHARE)
    merchant = int(world.pick_merchants(rng, channel, country)[0])
    customers = np.flatnonzero((world.card_usual == merchant).any(axis=1))
    locals_ = np.flatnonzero(world.card_country == world.merchant_country[merchant])
    n_cards = 6 + int(rng.poisson(10))
    pool = locals_ if channel[0] == POS and len(locals_) else np.arange(len(world.card_country))
    cards = rng.choice(pool, size=n_cards)
    if len(customers):
        from_customers = rng.random(n_cards) < 0.3
        cards[from_customers] = rng.choice(customers, size=int(from_customers.sum()))
    cards = np.repeat(cards, np.where(rng.random(n_cards) < 0.15, 2, 1))
    t0 = rng.uniform(lo, hi)
    times = np.sort(rng.uniform(t0, t0 + rng.uniform(2, 7) * SECONDS_PER_DAY, len(cards)))
    median = CATEGORY_MEDIAN[world.merchant_category[merchant]]
    amount = median * world.card_amount_scale[cards] * rng.lognormal(np.log(1.4), 0.6, len(cards))
    return Episode(cards, np.full(len(cards), merchant), times, amount)


def _near_offset_countries(home: int, max_hours: float = 3.0) -> np.ndarray:
    gap = np.abs(COUNTRY_OFFSET_S - COUNTRY_OFFSET_S[home]) / SECONDS_PER_HOUR
    return np.flatnonzero((gap <= max_hours) & (np.arange(len(COUNTRY_CODES)) != home))


def _cross_border_night(
    rng: np.random.Generator, world: World, history: History, lo: float, hi: float
) -> Episode:
    """Web purchases from a neighbouring time zone's shops while the cardholder sleeps."""
    card = int(rng.integers(len(world.card_country)))
    home = int(world.card_country[card])
    t0 = _at_local_hour(rng.uniform(lo, hi), COUNTRY_OFFSET_S[home], rng.uniform(0, 5), lo, hi)
    n = 1 + int(rng.random() < 0.35) + int(rng.random() < 0.1)
    times = _burst(rng, t0, n, 20 * 60.0)
    country = rng.choice(_near_offset_countries(home), size=n)
    merchant = world.pick_merchants(rng, np.full(n, ECOM), country)
    amount = world.card_amount_scale[card] * rng.lognormal(np.log(130), 0.8, n)
    return Episode(np.full(n, card), merchant, times, amount)


def _novel(
    rng: np.random.Generator, world: World, history: History, lo: float, hi: float
) -> Episode:
    """After the drift only: rapid, large, non-round withdrawals at several home ATMs at night."""
    card = int(rng.integers(len(world.card_country)))
    home = int(world.card_country[card])
    t0 = _at_local_hour(rng.uniform(lo, hi), COUNTRY_OFFSET_S[home], rng.uniform(1, 5), lo, hi)
    n = min(6, 2 + int(rng.poisson(1.5)))
    times = _burst(rng, t0, n, 6 * 60.0)
    merchant = world.pick_merchants(
        rng, np.full(n, ATM), np.full(n, home), np.full(n, world.card_city[card])
    )
    return Episode(np.full(n, card), merchant, times, rng.uniform(380.0, 990.0, n))


_SCENARIO_FUNCTIONS: tuple[_Scenario, ...] = (
    _stolen_card,
    _card_testing,
    _account_takeover,
    _compromised_merchant,
    _cross_border_night,
    _novel,
)
#: Share of fraud transactions per scenario (novel: its share after the drift point).
_SCENARIO_SHARE = np.array([0.24, 0.22, 0.16, 0.22, 0.16])
NOVEL_SHARE_AFTER_DRIFT = 0.3


def plan_frauds(
    rng: np.random.Generator,
    world: World,
    history: History,
    n_frauds: int,
    span: tuple[float, float, float],
) -> tuple[Episode, np.ndarray]:
    """Exactly `n_frauds` fraud transactions inside (start, drift, end) and their scenario codes.

    `novel` only happens after the drift point and takes `NOVEL_SHARE_AFTER_DRIFT` of the
    frauds there; the other scenarios thin out after it so the fraud rate stays level.
    """
    start, drift, end = span
    after = (end - drift) / (end - start)
    n_novel = round(n_frauds * after * NOVEL_SHARE_AFTER_DRIFT)
    budgets = np.floor((n_frauds - n_novel) * _SCENARIO_SHARE).astype(np.int64)
    budgets[: n_frauds - n_novel - int(budgets.sum())] += 1
    budgets = np.append(budgets, n_novel)
    before_weight = drift - start
    p_before = before_weight / (before_weight + (end - drift) * (1 - NOVEL_SHARE_AFTER_DRIFT))
    parts: list[Episode] = []
    codes: list[np.ndarray] = []
    for code, (scenario, budget) in enumerate(zip(_SCENARIO_FUNCTIONS, budgets, strict=True)):
        made = attempts = 0
        while made < budget:
            attempts += 1
            if attempts > 100 + 20 * budget:
                raise ValueError(
                    f"could not place {budget} {SCENARIOS[code]} frauds in the time span; "
                    "use more days or a later drift point"
                )
            is_novel = scenario is _novel
            lo, hi = (drift, end) if is_novel or rng.random() >= p_before else (start, drift)
            episode = scenario(rng, world, history, lo, hi)
            inside = (episode.time >= (drift if is_novel else start)) & (episode.time < end)
            keep = np.flatnonzero(inside)[: budget - made]
            parts.append(Episode(*(column[keep] for column in episode)))
            codes.append(np.full(len(keep), code))
            made += len(keep)
    columns = [
        np.concatenate([getattr(p, f) for p in parts] or [np.empty(0)]) for f in Episode._fields
    ]
    scenario_codes = np.concatenate(codes or [np.empty(0, dtype=np.int64)])
    return Episode(*columns), scenario_codes
