import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.models.drift import DriftMonitor, ScoreReference, psi, psi_of_shares


def fraud_like_scores(seed: int, n: int = 20_000, shift: float = 0.0) -> np.ndarray:
    """Mostly low scores with a long right tail, like a fraud model's; `shift` moves them up."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.beta(1.2, 12.0, n) + shift, 0.0, 1.0)


@pytest.fixture(scope="module")
def reference() -> ScoreReference:
    return ScoreReference.fit(fraud_like_scores(seed=0))


def test_quantile_bins_hold_equal_reference_shares(reference: ScoreReference) -> None:
    assert len(reference.edges) == 9
    assert reference.shares == pytest.approx([0.1] * 10, abs=1e-3)


def test_same_distribution_has_psi_near_zero(reference: ScoreReference) -> None:
    for seed in range(1, 6):
        assert psi(reference, fraud_like_scores(seed)) < 0.02


def test_clearly_shifted_distribution_has_large_psi(reference: ScoreReference) -> None:
    assert psi(reference, fraud_like_scores(seed=1, shift=0.1)) > 0.25
    assert psi(reference, np.random.default_rng(1).uniform(0, 1, 20_000)) > 0.25


def test_psi_grows_with_the_size_of_the_shift(reference: ScoreReference) -> None:
    values = [psi(reference, fraud_like_scores(7, shift=s)) for s in (0, 0.01, 0.03, 0.06, 0.1)]
    assert values == sorted(values)
    assert values[0] < 0.02 < values[-1]


def test_order_and_container_of_scores_do_not_matter(reference: ScoreReference) -> None:
    scores = fraud_like_scores(3, n=2000, shift=0.02)
    shuffled = np.random.default_rng(4).permutation(scores)
    assert psi(reference, shuffled) == pytest.approx(psi(reference, scores))
    assert psi(reference, scores.tolist()) == pytest.approx(psi(reference, scores))


@settings(max_examples=200)
@given(
    st.lists(st.integers(0, 50), min_size=2, max_size=12).flatmap(
        lambda first: st.tuples(
            st.just(first), st.lists(st.integers(0, 50), min_size=len(first), max_size=len(first))
        )
    )
)
def test_psi_of_shares_is_symmetric_and_non_negative(counts: tuple[list[int], list[int]]) -> None:
    first, second = (np.asarray(c, dtype=float) / max(sum(c), 1) for c in counts)
    forward, backward = psi_of_shares(first, second), psi_of_shares(second, first)
    assert forward == pytest.approx(backward)
    assert forward >= 0.0
    assert psi_of_shares(first, first) == 0.0


def test_empty_bins_give_a_finite_psi(reference: ScoreReference) -> None:
    value = psi(reference, np.full(500, 0.999))  # every score in the top bin
    assert np.isfinite(value) and value > 1.0


def test_ties_merge_bins_instead_of_failing() -> None:
    scores = np.concatenate([np.zeros(7000), np.linspace(0.01, 1, 3000)])
    reference = ScoreReference.fit(scores)
    assert len(reference.edges) < 9
    assert sum(reference.shares) == pytest.approx(1.0)
    assert psi(reference, scores) == pytest.approx(0.0)


def test_reference_round_trips_through_json(reference: ScoreReference) -> None:
    restored = ScoreReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert restored == reference


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        ScoreReference.fit([0.1, float("nan")])
    with pytest.raises(ValueError, match="no scores"):
        ScoreReference.fit([])
    with pytest.raises(ValueError, match="shares"):
        ScoreReference((0.5,), (1.0,))


def test_monitor_waits_for_enough_scores_then_follows_the_window(
    reference: ScoreReference,
) -> None:
    monitor = DriftMonitor(reference, window=5000, min_scores=500)
    monitor.observe(fraud_like_scores(1, n=499))
    assert monitor.value() is None
    monitor.observe(fraud_like_scores(2, n=4501))
    steady = monitor.value()
    assert steady is not None and steady < 0.02
    monitor.observe(fraud_like_scores(3, n=5000, shift=0.1))  # the window now holds only these
    assert len(monitor) == 5000
    shifted = monitor.value()
    assert shifted == pytest.approx(psi(reference, fraud_like_scores(3, n=5000, shift=0.1)))
    assert shifted is not None and shifted > 0.25
