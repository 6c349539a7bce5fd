"""Geography the features need: local time per country and great-circle distance.

Local time uses one fixed UTC offset per country (no daylight saving): enough to tell a
3 a.m. purchase from a 3 p.m. one, and identical offline and online.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86_400.0
EARTH_RADIUS_KM = 6371.0088
#: 1970-01-01 was a Thursday; weekday 0 is Monday.
EPOCH_WEEKDAY = 3
#: Local night is 00:00 up to this hour; the weekend starts on this weekday (Saturday).
NIGHT_END_HOUR = 6
FIRST_WEEKEND_DAY = 5


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    currency: str
    utc_offset_hours: float
    lat: float
    lon: float


COUNTRIES: dict[str, Country] = {
    c.code: c
    for c in (
        Country("US", "USD", -5.0, 39.8, -98.6),
        Country("GB", "GBP", 0.0, 52.4, -1.5),
        Country("DE", "EUR", 1.0, 51.2, 10.4),
        Country("FR", "EUR", 1.0, 46.6, 2.4),
        Country("ES", "EUR", 1.0, 40.4, -3.7),
        Country("IT", "EUR", 1.0, 42.8, 12.6),
        Country("NL", "EUR", 1.0, 52.2, 5.3),
        Country("CA", "CAD", -5.0, 45.4, -75.7),
        Country("BR", "BRL", -3.0, -15.8, -47.9),
        Country("MX", "MXN", -6.0, 19.4, -99.1),
        Country("IN", "INR", 5.5, 20.6, 78.9),
        Country("JP", "JPY", 9.0, 35.7, 139.7),
        Country("AU", "AUD", 10.0, -33.9, 151.2),
        Country("SG", "SGD", 8.0, 1.35, 103.8),
        Country("NG", "NGN", 1.0, 9.1, 7.5),
        Country("RU", "RUB", 3.0, 55.8, 37.6),
        Country("CN", "CNY", 8.0, 39.9, 116.4),
        Country("ZA", "ZAR", 2.0, -26.2, 28.0),
    )
}


def utc_offset_seconds(country: str) -> float:
    """The fixed offset of `country`; unknown countries are treated as UTC."""
    known = COUNTRIES.get(country)
    return known.utc_offset_hours * SECONDS_PER_HOUR if known else 0.0


def local_hour_and_weekday(event_time: float, country: str) -> tuple[int, int]:
    """Local hour (0..23) and weekday (0 = Monday .. 6 = Sunday) of an epoch time."""
    local = event_time + utc_offset_seconds(country)
    hour = int(local // SECONDS_PER_HOUR) % 24
    weekday = (int(local // SECONDS_PER_DAY) + EPOCH_WEEKDAY) % 7
    return hour, weekday


def is_night(hour: int) -> bool:
    """Local 00:00-06:00."""
    return hour < NIGHT_END_HOUR


def is_weekend(weekday: int) -> bool:
    return weekday >= FIRST_WEEKEND_DAY


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
