"""The record files of a demo run folder, written by the demo and read by `explain`.

Beside its summary, a run folder keeps what is needed to walk through any one decision
after the services are gone: every decision as read from the topic (`DECISIONS_FILE`,
duplicates included, in arrival order), the transactions replayed (`TRANSACTIONS_FILE`, a
stream file with its labels beside it: stream/sim/streamfile.py) and the threshold
versions published during the run (`THRESHOLD_HISTORY_FILE`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from fraudstream.stream.contract import Decision

DECISIONS_FILE = "decisions.jsonl"
TRANSACTIONS_FILE = "transactions.jsonl"
THRESHOLD_HISTORY_FILE = "threshold_history.json"


def write_decisions(path: Path, decisions: Iterable[Decision]) -> None:
    """One decision per line, each the JSON object the `decisions` topic carried."""
    path.write_bytes(b"".join(decision.to_json_bytes() + b"\n" for decision in decisions))


def read_decision_records(path: Path) -> list[dict[str, Any]]:
    """The decision records of `write_decisions`, as JSON objects."""
    with path.open("rb") as source:
        return [orjson.loads(line) for line in source if line.strip()]


def write_threshold_history(path: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """The threshold versions published during the run, oldest first."""
    path.write_text(json.dumps(list(history), indent=2) + "\n", encoding="utf-8")


def read_threshold_history(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text(encoding="utf-8")))
