"""Hand-made decision records for report and metrics tests: state only what a test is about.

Every other field gets a plain default, so a test that checks latency does not have to
invent features, and the record still satisfies the contract (stream/contract.py).
"""

from __future__ import annotations

from typing import Any

from fraudstream.stream.contract import Decision


def a_decision(txn_id: str = "t1", **fields: Any) -> Decision:
    """A `Decision` for `txn_id` with the given fields and neutral defaults for the rest."""
    defaults: dict[str, Any] = {
        "card_id": "c1",
        "event_time": 0.0,
        "decision": "approve",
        "score": 0.0,
        "model_scores": {},
        "fallbacks": {},
        "threshold_version": "v1",
        "model_version": "v1",
        "reasons": (),
        "latency_ms": {"end_to_end": 0.0},
        "degraded": False,
        "features": (),
    }
    return Decision(txn_id=txn_id, **(defaults | fields))
