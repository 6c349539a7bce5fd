"""Stream files: transactions and their labels on disk, read and written in one place.

A stream file holds transactions as JSONL, CSV (a header row with the contract's columns) or
Parquet (when the name ends in .parquet; needs pyarrow), and its labels live beside it as
`<stem>.labels.jsonl`. Every record read is validated against the contract of
`fraudstream.features.transaction`; the first bad one raises `InvalidTransaction` naming
the file, the record number and the field. Writing keeps JSONL compact and in the given
order, so the same stream always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

from fraudstream.features.transaction import (
    InvalidTransaction,
    Label,
    Transaction,
    parse_label,
    parse_transaction,
)
from fraudstream.stream.sim.generator import SyntheticStream

__all__ = [
    "labels_path_for",
    "read_labels",
    "read_mixed_jsonl",
    "read_stream_file",
    "read_transactions",
    "write_stream",
]


def labels_path_for(path: Path) -> Path:
    """Where the labels of the transactions file `path` live: `<stem>.labels.jsonl` beside it."""
    return path.with_name(f"{path.stem}.labels.jsonl")


def _json_lines(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, separators=(",", ":")) + "\n"


def write_stream(stream: SyntheticStream, path: Path) -> Path:
    """Write transactions to `path` (JSONL, or Parquet for *.parquet) and labels beside it.

    Returns the labels path. Parquet needs pyarrow (`pip install '.[parquet]'`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        _write_parquet(stream.transactions, path)
    else:
        with path.open("w", encoding="utf-8", newline="\n") as out:
            out.writelines(_json_lines(t.to_dict() for t in stream.transactions))
    labels_path = labels_path_for(path)
    with labels_path.open("w", encoding="utf-8", newline="\n") as out:
        out.writelines(_json_lines(label.to_dict() for label in stream.labels))
    return labels_path


_Record = TypeVar("_Record")
_STRING_FIELDS = ("txn_id", "card_id", "merchant_id", "currency", "country", "channel")
_FLOAT_FIELDS = ("amount", "event_time", "lat", "lon")


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as error:
        raise RuntimeError(
            "Parquet files need pyarrow: pip install 'fraudstream[parquet]'"
        ) from error
    return pyarrow


def _write_parquet(transactions: list[Transaction], path: Path) -> None:
    pa = _pyarrow()
    schema = pa.schema(
        [(name, pa.string()) for name in _STRING_FIELDS]
        + [(name, pa.float64()) for name in _FLOAT_FIELDS]
    )
    columns = {
        name: [getattr(t, name) for t in transactions] for name in (*_STRING_FIELDS, *_FLOAT_FIELDS)
    }
    pa.parquet.write_table(pa.table(columns, schema=schema), path)


def _parsed(
    records: Iterable[tuple[int, Any]], path: Path, parse: Callable[[Any], _Record]
) -> list[_Record]:
    parsed: list[_Record] = []
    for number, record in records:
        try:
            parsed.append(parse(record))
        except InvalidTransaction as error:
            raise InvalidTransaction(f"{path}, record {number}: {error}") from None
    return parsed


def _csv_record(row: dict[str, str]) -> dict[str, Any]:
    """CSV cells are text: numbers become floats, empty coordinates absent."""
    record: dict[str, Any] = dict(row)
    for name in _FLOAT_FIELDS:
        cell = row.get(name)
        if cell in (None, ""):
            record.pop(name, None)
            continue
        with contextlib.suppress(ValueError):  # else parse_transaction names the field
            record[name] = float(cell)
    return record


def read_transactions(path: Path) -> list[Transaction]:
    """Transactions from JSONL, CSV (header row with the contract's columns) or Parquet.

    Every record is validated; the first bad one raises `InvalidTransaction` naming the
    file, the record number and the field.
    """
    if path.suffix == ".parquet":
        rows = _pyarrow().parquet.read_table(path).to_pylist()
        return _parsed(enumerate(rows, 1), path, parse_transaction)
    with path.open(encoding="utf-8", newline="") as source:
        if path.suffix == ".csv":
            records = (_csv_record(row) for row in csv.DictReader(source))
            return _parsed(enumerate(records, 1), path, parse_transaction)
        return _parsed(_numbered_lines(source), path, parse_transaction)


def _numbered_lines(source: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(line number, line) of each non-blank line."""
    return ((n, line) for n, line in enumerate(source, 1) if line.strip())


def read_labels(path: Path) -> list[Label]:
    """Labels from a JSONL file such as the one `write_stream` puts at `labels_path_for`."""
    with path.open(encoding="utf-8") as source:
        return _parsed(_numbered_lines(source), path, parse_label)


def read_stream_file(path: Path) -> tuple[list[Transaction], list[Label]]:
    """Transactions from JSONL, CSV or Parquet, and the labels file beside it (or none).

    A missing labels file is not an error: a real feed may come without truth.
    """
    labels_path = labels_path_for(path)
    labels = read_labels(labels_path) if labels_path.exists() else []
    return read_transactions(path), labels


def _transaction_or_label(line: str) -> Transaction | Label:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise InvalidTransaction(f"not valid JSON: {error}") from None
    if isinstance(record, dict) and "is_fraud" in record:
        return parse_label(record)
    return parse_transaction(line)


def read_mixed_jsonl(path: Path) -> tuple[list[Transaction], list[Label]]:
    """Transactions and labels from one JSONL file, a record with `is_fraud` being a label
    (an export that interleaves the two topics); errors as `read_transactions`'."""
    with path.open(encoding="utf-8") as source:
        records = _parsed(_numbered_lines(source), path, _transaction_or_label)
    transactions = [record for record in records if isinstance(record, Transaction)]
    return transactions, [record for record in records if isinstance(record, Label)]
