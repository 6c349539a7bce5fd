"""Keyed pseudonyms for card and merchant ids, so no card number is stored or sent in clear.

The worker replaces a transaction's `card_id` and `merchant_id` with their pseudonyms right
after parsing it: Redis keys and values, decisions (and their topic key), metrics and logs
only ever see pseudonyms. A pseudonym is the first 128 bits of HMAC-SHA256(key,
"<kind>:<id>"), base64url without padding (22 characters): stable for one key, so windows,
merchant counts and the last-score fallback work on pseudonyms exactly as on raw ids
(features use ids for equality and distinct counts only), and collision-free in practice
(birthday bound 2^64).

Why keyed: card numbers are enumerable. A 16-digit number with a known 6-digit issuer
prefix and its Luhn check digit leaves 10^9 candidates, about a second of one GPU's
SHA-256 time, so a plain (even salted, if the salt sits beside it) hash of a card number
is reversed by trying them all. Without the key a pseudonym reveals nothing; with it
anyone can recompute a card's pseudonym, so the key is a secret like a database password.
The kind ("card", "merchant") is hashed in, so a card and a merchant that share an id do
not share a pseudonym.

Example:
    >>> ids = IdPseudonyms("an example key, never use it: 0123456789")
    >>> ids.card("c00042")
    'tiiIMPPH5OgLmJ8Le3nK2w'
    >>> ids.card("c00042") == ids.card("c00042") != ids.merchant("c00042")
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import fields
from operator import attrgetter

from fraudstream.features.transaction import SECRET_FIELDS, Transaction

#: Shortest key accepted, in characters: 32 hex digits are 128 bits of secret.
MIN_KEY_CHARS = 32
#: Bytes of the HMAC kept in a pseudonym (128 bits: 22 base64url characters).
PSEUDONYM_BYTES = 16
#: Pseudonyms remembered per instance before the memo starts afresh: a few MB at most.
MEMO_MAX_IDS = 65_536
#: The transaction fields that hold ids, and the kind each id's pseudonym is made for.
_KINDS = {name: name.removesuffix("_id") for name in SECRET_FIELDS}
_FIELD_NAMES = [field.name for field in fields(Transaction)]
_TRANSACTION_FIELDS = attrgetter(*_FIELD_NAMES)
_CARD_AT, _MERCHANT_AT = _FIELD_NAMES.index("card_id"), _FIELD_NAMES.index("merchant_id")


def new_id_hash_key() -> str:
    """A fresh random key (256 bits, URL-safe text), for a run whose ids live only as long."""
    return secrets.token_urlsafe(32)


class IdPseudonyms:
    """Pseudonyms under one secret key; pure and cheap.

    An HMAC costs ~2 us, a third of a transaction's whole pseudonymising, and cards and
    merchants come back again and again, so each id's pseudonym is remembered (up to
    `MEMO_MAX_IDS`, then the memo starts afresh). The memo holds nothing the key does not
    already give: whoever reads this process's memory can read the key too.
    """

    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(
                f"an id hash key needs at least {MIN_KEY_CHARS} characters, got {len(key)}"
            )
        self._mac = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)
        self._memo: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return "IdPseudonyms(<key hidden>)"

    def _pseudonym(self, kind: str, value: str) -> str:
        known = self._memo.get((kind, value))
        if known is not None:
            return known
        mac = self._mac.copy()  # the key's inner and outer pads are hashed once, not per id
        mac.update(f"{kind}:{value}".encode())
        pseudonym = base64.urlsafe_b64encode(mac.digest()[:PSEUDONYM_BYTES]).rstrip(b"=").decode()
        if len(self._memo) >= MEMO_MAX_IDS:
            self._memo.clear()
        self._memo[kind, value] = pseudonym
        return pseudonym

    def card(self, card_id: str) -> str:
        """The pseudonym of a card id (a valid transaction's ids are UTF-8 encodable)."""
        return self._pseudonym("card", card_id)

    def merchant(self, merchant_id: str) -> str:
        return self._pseudonym("merchant", merchant_id)

    def of_field(self, name: str, value: str) -> str:
        """The pseudonym of a `card_id` or `merchant_id` value (ValueError for any other)."""
        kind = _KINDS.get(name)
        if kind is None:
            raise ValueError(f"{name!r} is not a pseudonymised field; {sorted(_KINDS)} are")
        return self._pseudonym(kind, value)

    def record_digest(self, record: bytes) -> str:
        """HMAC-SHA256 of a whole raw record, hex: who holds the key can match a record to
        it; no one else can test guesses of a card number in the record against it."""
        mac = self._mac.copy()
        mac.update(b"record:")
        mac.update(record)
        return mac.hexdigest()

    def transaction(self, txn: Transaction) -> Transaction:
        """`txn` with its card and merchant ids replaced by their pseudonyms.

        Built from its fields in one C call (`attrgetter`): `dataclasses.replace` cost half
        of pseudonymising a transaction."""
        values = list(_TRANSACTION_FIELDS(txn))
        values[_CARD_AT] = self.card(txn.card_id)
        values[_MERCHANT_AT] = self.merchant(txn.merchant_id)
        return Transaction(*values)
