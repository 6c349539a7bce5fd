"""Stream files: transactions and their labels on disk, read and written in one place.

A stream file holds transactions as JSONL, CSV (a header row with the contract's columns) or
Parquet (when the name ends in .parquet; needs pyarrow), and its labels live beside it as
`<stem>.labels.jsonl`. Every record read is validated against the contract of
`fraudstream.features.transaction`, a txn_id is read once and a label only for a
transaction read. Given a `RejectedRecords` (stream/sim/rejected.py), readers set aside
each record that does not fit, with the reason, and go on; without one (`--strict` on the
command line), the first raises `InvalidTransaction` "file:line: why". Nothing a file
holds (truncated JSON, bytes that are not UTF-8, NaN, a CSV field past the csv module's
limit) raises anything else; a file with no transaction at all raises
`InvalidTransaction` too. Writing keeps JSONL compact and in the given order, so the same
stream always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
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
from fraudstream.stream.sim.rejected import RejectedRecords

__all__ = [
    "ContractParser",
    "Unreadable",
    "accepted_records",
    "csv_rows",
    "json_line",
    "labels_path_for",
    "parquet_rows",
    "read_labels",
    "read_mixed_jsonl",
    "read_stream_file",
    "read_transactions",
    "write_stream",
]


def labels_path_for(path: Path) -> Path:
    """Where the labels of the transactions file `path` live: `<stem>.labels.jsonl` beside it."""
    return path.with_name(f"{path.stem}.labels.jsonl")


def json_line(record: dict[str, Any]) -> str:
    """One record as a compact JSON line, as stream and labels files hold them."""
    return json.dumps(record, separators=(",", ":")) + "\n"


def write_stream(stream: SyntheticStream, path: Path) -> Path:
    """Write transactions to `path` (JSONL, or Parquet for *.parquet) and labels beside it.

    Returns the labels path. Parquet needs pyarrow (`pip install '.[parquet]'`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        _write_parquet(stream.transactions, path)
    else:
        with path.open("w", encoding="utf-8", newline="\n") as out:
            out.writelines(json_line(t.to_dict()) for t in stream.transactions)
    labels_path = labels_path_for(path)
    with labels_path.open("w", encoding="utf-8", newline="\n") as out:
        out.writelines(json_line(label.to_dict()) for label in stream.labels)
    return labels_path


_Record = TypeVar("_Record")
_STRING_FIELDS = ("txn_id", "card_id", "merchant_id", "currency", "country", "channel")
_FLOAT_FIELDS = ("amount", "event_time", "lat", "lon")
#: Rows of a Parquet file held in memory at a time.
PARQUET_BATCH_ROWS = 65_536


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


@dataclass(frozen=True)
class Unreadable:
    """A record the file's format kept from being read at all (a CSV field past the size
    limit, say): rejected with `error` like a record that breaks the contract."""

    error: str


class ContractParser:
    """Parses the records of one read against the contract, and what it takes for records
    to fit together: each txn_id once, each transaction labelled once, and a label only for
    a transaction accepted (one of `known`, when given; otherwise any). Each method takes
    the record's line (or row) number, to say where the first of two duplicates is."""

    def __init__(self, known: Container[str] | None = None) -> None:
        self.txn_ids: dict[str, int] = {}
        self.labelled: dict[str, int] = {}
        self.known = known

    def transaction(self, number: int, record: Any) -> Transaction:
        return self.unique(number, parse_transaction(record))

    def unique(self, number: int, txn: Transaction) -> Transaction:
        """`txn`, read at `number`, unless an earlier record had its txn_id."""
        first = self.txn_ids.setdefault(txn.txn_id, number)
        if first != number:
            raise InvalidTransaction(f"duplicate txn_id {txn.txn_id!r}: the one at line "
                                     f"{first} is kept")  # fmt: skip
        return txn

    def label(self, number: int, record: Any) -> Label:
        label = parse_label(record)
        if self.known is not None and label.txn_id not in self.known:
            raise InvalidTransaction(
                f"label for txn_id {label.txn_id!r}, which no accepted transaction has"
            )
        first = self.labelled.setdefault(label.txn_id, number)
        if first != number:
            raise InvalidTransaction(f"duplicate label for txn_id {label.txn_id!r}: the one "
                                     f"at line {first} is kept")  # fmt: skip
        return label

    def transaction_or_label(self, number: int, line: bytes) -> Transaction | Label:
        """A record with `is_fraud` is a label, anything else a transaction."""
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise InvalidTransaction(f"not valid JSON: {error}") from None
        if isinstance(record, dict) and "is_fraud" in record:
            return self.label(number, record)
        return self.transaction(number, line)


def accepted_records(
    records: Iterable[tuple[int, Any]],
    path: Path,
    parse: Callable[[int, Any], _Record],
    rejects: RejectedRecords | None,
) -> Iterator[_Record]:
    """`parse(number, record)` of each (line or row number, raw record) of `path`, as they
    come; a record that breaks the contract (`InvalidTransaction`) goes to `rejects`, or
    without one raises `InvalidTransaction` "path:line: why"."""
    for number, record in records:
        try:
            if isinstance(record, Unreadable):
                raise InvalidTransaction(record.error)
            yield parse(number, record)
        except InvalidTransaction as error:
            if rejects is None:
                raise InvalidTransaction(f"{path}:{number}: {error}") from None
            rejects.reject(path, number, "" if isinstance(record, Unreadable) else record,
                           str(error))  # fmt: skip


def _csv_record(row: dict[str | None, Any]) -> dict[str | None, Any]:
    """CSV cells are text: numbers become floats, empty coordinates absent."""
    record = dict(row)
    for name in _FLOAT_FIELDS:
        cell = row.get(name)
        if cell in (None, ""):
            record.pop(name, None)
            continue
        with contextlib.suppress(ValueError, TypeError):  # else parse_transaction names it
            record[name] = float(cell)
    return record


def csv_rows(
    source: Iterable[str], delimiter: str = ","
) -> Iterator[tuple[int, dict[str | None, Any] | Unreadable]]:
    """(line where the row ends, row by header) of CSV text; a row the csv module cannot
    read (a field past its size limit) as `Unreadable`. Cells beyond the header are under
    None, missing ones None."""
    reader = csv.DictReader(source, delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            # DictReader updates its line_num only after a row reads; its reader's is current.
            yield reader.reader.line_num, Unreadable(f"not readable as CSV: {error}")
            continue
        yield reader.line_num, row


def parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number, row as a dict) of a Parquet file, a batch at a time: a large file is
    never all in memory. A file pyarrow cannot read raises `InvalidTransaction`."""
    pa = _pyarrow()
    number = 0
    try:
        for batch in pa.parquet.ParquetFile(path).iter_batches(PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except (pa.ArrowException, OSError) as error:
        where = f"after row {number}" if number else "at its start"
        raise InvalidTransaction(f"{path} is not readable as Parquet {where}: {error}") from None


def _records_of(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or row number, raw record) of a stream file, by its suffix."""
    if path.suffix == ".parquet":
        yield from parquet_rows(path)
    elif path.suffix == ".csv":
        # Bytes that are not UTF-8 survive as lone surrogates, which the contract rejects.
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as source:
            for number, row in csv_rows(source):
                yield number, row if isinstance(row, Unreadable) else _csv_record(row)
    else:
        with path.open("rb") as source:
            yield from _numbered_lines(source)


def read_transactions(path: Path, rejects: RejectedRecords | None = None) -> list[Transaction]:
    """Transactions from JSONL, CSV (header row with the contract's columns) or Parquet.

    Every record is validated, and a txn_id accepted once. A record that does not fit goes
    to `rejects`; without it, the first raises `InvalidTransaction` "file:line: why". A
    file with no transaction that fits raises `InvalidTransaction` either way.
    """
    parse = ContractParser().transaction
    transactions = list(accepted_records(_records_of(path), path, parse, rejects))
    if not transactions:
        raise InvalidTransaction(_nothing_read(path, rejects))
    return transactions


def _nothing_read(path: Path, rejects: RejectedRecords | None) -> str:
    if rejects is not None and rejects.count:
        return f"{path} holds no transaction that satisfies the contract; {rejects.summary()}"
    return f"{path} holds no transaction (is it empty?)"


def _numbered_lines(source: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of each non-blank line."""
    return ((n, line) for n, line in enumerate(source, 1) if line.strip())


def read_labels(
    path: Path,
    rejects: RejectedRecords | None = None,
    known_txn_ids: Container[str] | None = None,
) -> list[Label]:
    """Labels from a JSONL file such as the one `write_stream` puts at `labels_path_for`;
    with `known_txn_ids`, a label for another txn_id is rejected. Errors as
    `read_transactions`'."""
    with path.open("rb") as source:
        parse = ContractParser(known_txn_ids).label
        return list(accepted_records(_numbered_lines(source), path, parse, rejects))


def read_stream_file(
    path: Path, rejects: RejectedRecords | None = None, labels_path: Path | None = None
) -> tuple[list[Transaction], list[Label]]:
    """Transactions from JSONL, CSV or Parquet, and their labels: from `labels_path` when
    given, else from the labels file beside `path` (or none); errors as
    `read_transactions`'.

    A missing labels file beside `path` is not an error: a real feed may come without truth.
    """
    transactions = read_transactions(path, rejects)
    if labels_path is None:
        labels_path = labels_path_for(path)
        if not labels_path.exists():
            return transactions, []
    return transactions, read_labels(labels_path, rejects, {txn.txn_id for txn in transactions})


def read_mixed_jsonl(
    path: Path, rejects: RejectedRecords | None = None
) -> tuple[list[Transaction], list[Label]]:
    """Transactions and labels from one JSONL file, a record with `is_fraud` being a label
    (an export that interleaves the two topics), each label after its transaction; errors
    as `read_transactions`'."""
    parser = ContractParser()
    parser.known = parser.txn_ids
    with path.open("rb") as source:
        records = list(accepted_records(_numbered_lines(source), path,
                                        parser.transaction_or_label, rejects))  # fmt: skip
    transactions = [record for record in records if isinstance(record, Transaction)]
    if not transactions:
        raise InvalidTransaction(_nothing_read(path, rejects))
    return transactions, [record for record in records if isinstance(record, Label)]
