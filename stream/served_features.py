"""Whether a registry version scores the features this FraudStream computes.

A version is trained on one feature list (its `features.json`) and one label delay D (the
`label_delay_days` of its metadata, the end of the merchant risk windows). Rows computed
with another list or another D are garbage to it, yet of a shape it would still score, so
everything that feeds a version rows (the worker, evaluate, the rules backtest) asks
`trained_label_delay_s` first, and `ensure_trained_model` retrains a registry whose live
version fails it.
"""

from __future__ import annotations

from pathlib import Path

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.geo import SECONDS_PER_DAY
from fraudstream.models.registry import LoadedModels, RegistryError

#: The metadata key training records D under, in days like FRAUDSTREAM_LABEL_DELAY_DAYS.
LABEL_DELAY_KEY = "label_delay_days"


class IncompatibleModel(RegistryError):
    """A version trained on other features than this FraudStream computes: retrain it."""


def trained_label_delay_s(models: LoadedModels, registry: Path) -> float:
    """The label delay, in seconds, `models` (a version of `registry`) was trained with.

    Raises `IncompatibleModel`, saying what to do, when the version was trained on another
    feature list (a registry made before a feature changed) or records no label delay.
    """
    folder = registry / models.version
    retrain = (
        "; retrain it (`fraudstream train`; `fraudstream demo` retrains an outdated "
        "registry by itself) or make a compatible version live"
    )
    if models.feature_names != FEATURE_NAMES:
        gone = sorted(set(models.feature_names) - set(FEATURE_NAMES))
        new = sorted(set(FEATURE_NAMES) - set(models.feature_names))
        raise IncompatibleModel(
            f"model {folder} was trained on other features than this FraudStream computes "
            f"(no longer computed: {', '.join(gone) or 'none'}; not known to it: "
            f"{', '.join(new) or 'none, but in another order'}){retrain}"
        )
    days = models.metadata.get(LABEL_DELAY_KEY)
    if not isinstance(days, int | float) or isinstance(days, bool) or days < 0:
        raise IncompatibleModel(
            f"{folder}/metadata.json records no label delay ({LABEL_DELAY_KEY}: {days!r}), "
            f"so the merchant risk features it was trained on are unknown{retrain}"
        )
    return float(days) * SECONDS_PER_DAY
