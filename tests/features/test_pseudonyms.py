"""Card and merchant id pseudonyms: keyed, stable, and invisible to the features."""

from __future__ import annotations

import base64
import doctest
import hashlib
import hmac
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudstream.features import pseudonyms
from fraudstream.features.builder import build_features
from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.pseudonyms import IdPseudonyms, new_id_hash_key
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream

KEY = "a test key that is long enough: 0123"
IDS = IdPseudonyms(KEY)


def test_a_pseudonym_is_the_first_128_bits_of_the_keyed_hmac_sha256() -> None:
    expected = hmac.new(KEY.encode(), b"card:4111111111111111", hashlib.sha256).digest()[:16]
    pseudonym = IDS.card("4111111111111111")
    assert base64.urlsafe_b64decode(pseudonym + "==") == expected
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", pseudonym)


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40))
def test_pseudonyms_are_stable_keyed_and_separate_cards_from_merchants(card_id: str) -> None:
    again = IdPseudonyms(KEY)
    other = IdPseudonyms(KEY + "!")
    assert IDS.card(card_id) == again.card(card_id)
    assert IDS.card(card_id) != other.card(card_id)
    assert IDS.card(card_id) != IDS.merchant(card_id)


def test_distinct_ids_keep_distinct_pseudonyms() -> None:
    cards = [f"{n:016d}" for n in range(4_111_111_111_100_000, 4_111_111_111_120_000)]
    assert len({IDS.card(card) for card in cards}) == len(cards)


def test_remembered_pseudonyms_equal_fresh_ones_and_the_memo_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pseudonyms, "MEMO_MAX_IDS", 50)
    ids = IdPseudonyms(KEY)
    cards = [f"card-{n % 120}" for n in range(1_000)]  # repeats, more than the memo holds
    for card in cards:
        expected = hmac.new(KEY.encode(), f"card:{card}".encode(), hashlib.sha256).digest()
        assert base64.urlsafe_b64decode(ids.card(card) + "==") == expected[:16]
        assert ids.merchant(card) != ids.card(card)  # the kind is part of what is remembered
        assert len(ids._memo) <= 50


def test_a_short_key_is_refused_and_no_key_is_ever_shown() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        IdPseudonyms("short")
    assert KEY not in repr(IDS)
    assert len(new_id_hash_key()) >= 32 and new_id_hash_key() != new_id_hash_key()


def test_of_field_and_transaction_replace_exactly_the_id_fields() -> None:
    txn = generate_stream(GeneratorConfig(transactions=100, seed=1)).transactions[0]
    hidden = IDS.transaction(txn)
    assert hidden.card_id == IDS.card(txn.card_id) == IDS.of_field("card_id", txn.card_id)
    assert hidden.merchant_id == IDS.merchant(txn.merchant_id)
    assert hidden.merchant_id == IDS.of_field("merchant_id", txn.merchant_id)
    assert {**hidden.to_dict(), "card_id": txn.card_id, "merchant_id": txn.merchant_id} == (
        txn.to_dict()
    )
    with pytest.raises(ValueError, match="not a pseudonymised field"):
        IDS.of_field("txn_id", txn.txn_id)


def test_features_on_pseudonyms_equal_features_on_raw_ids() -> None:
    """Features use ids only to compare them, so the offline path may keep raw ids."""
    stream = generate_stream(GeneratorConfig(transactions=3_000, seed=5))
    raw = build_features(stream.transactions, stream.labels)
    hidden = build_features([IDS.transaction(t) for t in stream.transactions], stream.labels)
    assert [t.txn_id for t in hidden.transactions] == [t.txn_id for t in raw.transactions]
    np.testing.assert_array_equal(hidden.features, raw.features)
    # Every id-based feature had something to compare: histories, merchants, labels.
    for name in ("distinct_merchants_30d", "is_new_merchant", "merchant_txn_count_1d",
                 "merchant_txn_count_30d_delayed", "merchant_fraud_share_30d_delayed"):  # fmt: skip
        assert raw.features[:, FEATURE_NAMES.index(name)].max() > 0, name


def test_the_record_digest_is_keyed() -> None:
    record = b'{"card_id": "4111111111111111"}'
    assert IDS.record_digest(record) == IdPseudonyms(KEY).record_digest(record)
    assert IDS.record_digest(record) != IdPseudonyms(KEY + "!").record_digest(record)
    assert IDS.record_digest(record) != hashlib.sha256(record).hexdigest()


def test_the_module_example_runs() -> None:
    assert doctest.testmod(pseudonyms).failed == 0
