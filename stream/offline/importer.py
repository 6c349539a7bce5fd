"""Bring your own data: someone's CSV or Parquet turned into a stream file and its labels.

`fraudstream import --map card_id=CardNo,merchant_id=Shop,amount=Amt,event_time=When ...`
names, for each contract field, the source column that holds it. Each row becomes one
transaction of the contract (features/transaction.py), written as a JSONL stream file that
every offline command reads; when `is_fraud` is mapped, its labels go beside it in
`<stem>.labels.jsonl`, as `fraudstream generate` writes them. What the conversion does:

- ids (`txn_id`, `card_id`, `merchant_id`) become text: `1234` and `1234.0` give "1234";
  without a `txn_id` column a row's id is `<source stem>-<line or row number>`;
- amounts become numbers (0.00 is a transaction; negative ones are refused);
- times become epoch seconds: `auto` reads ISO 8601 or epoch seconds, `iso`, `epoch` and
  `epoch_ms` only those, anything with a `%` is a `strptime` format; times without a zone
  are UTC, and Parquet timestamp and date columns are read as they are;
- `currency`, `country` and `channel` take `ImportOptions`' defaults (USD, US, pos) where
  unmapped or empty, upper-cased (lower-cased for the channel);
- `is_fraud` reads 1/0, true/false, t/f, yes/no, y/n (any case); an empty cell leaves the
  row unlabelled; `scenario` defaults to "imported" for a fraud and "legit" otherwise,
  `label_time` to the event time plus `label_delay_days` (chargebacks arrive late, and a
  retrain with `--since` must not know a label before it could have arrived).

A row that cannot be converted or breaks the contract goes to the `RejectedRecords` with
why, like the readers'. Rows are read and written one at a time (Parquet a batch at a
time), in the source's order; the readers sort by event time. The output appears only
when the import finishes: a failed one leaves no half file behind.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from fraudstream.features.definitions import DEFAULT_LABEL_DELAY_DAYS
from fraudstream.features.geo import SECONDS_PER_DAY
from fraudstream.features.transaction import (
    MAX_EVENT_TIME,
    MIN_EVENT_TIME,
    InvalidTransaction,
    Label,
    Transaction,
    parse_label,
    parse_transaction,
)
from fraudstream.stream.sim.rejected import RejectedRecords
from fraudstream.stream.sim.streamfile import (
    ContractParser,
    Unreadable,
    accepted_records,
    csv_rows,
    json_line,
    labels_path_for,
    parquet_rows,
)

REQUIRED_FIELDS = ("card_id", "merchant_id", "amount", "event_time")
OPTIONAL_FIELDS = ("txn_id", "currency", "country", "channel", "lat", "lon",
                   "is_fraud", "scenario", "label_time")  # fmt: skip
TIME_FORMATS = ("auto", "iso", "epoch", "epoch_ms")
FRAUD_FLAGS = {"1": True, "1.0": True, "true": True, "t": True, "yes": True, "y": True,
               "0": False, "0.0": False, "false": False, "f": False, "no": False,
               "n": False}  # fmt: skip


class ImportRefused(ValueError):
    """An import that cannot start (a mapping, format or output that cannot work); the
    message says what to change."""


@dataclass(frozen=True)
class ImportOptions:
    """How to read the source: `columns` maps contract fields to source columns."""

    columns: Mapping[str, str]
    time_format: str = "auto"
    label_delay_days: float = DEFAULT_LABEL_DELAY_DAYS
    currency: str = "USD"
    country: str = "US"
    channel: str = "pos"
    delimiter: str = ","
    encoding: str = "utf-8-sig"


@dataclass(frozen=True)
class ImportReport:
    source: Path
    out: Path
    labels: Path | None
    transactions: int
    labelled: int
    frauds: int
    seconds: float = field(compare=False)

    def summary(self) -> str:
        labels = (f" and {self.labelled:,} labels ({self.frauds:,} frauds) to {self.labels}"
                  if self.labels is not None else " (no is_fraud column mapped: no labels)")
        noun = "transaction" if self.transactions == 1 else "transactions"
        return (f"imported {self.transactions:,} {noun} from {self.source} to "
                f"{self.out}{labels} in {self.seconds:.1f}s")  # fmt: skip


def parse_column_map(text: str) -> dict[str, str]:
    """`card_id=CardNo,merchant_id=Shop,...` as {field: column}; raises `ImportRefused`
    for an unknown field, a field given twice or a required one missing."""
    columns: dict[str, str] = {}
    for part in (piece.strip() for piece in text.split(",")):
        contract_field, equals, column = part.partition("=")
        contract_field, column = contract_field.strip(), column.strip()
        if not equals or not contract_field or not column:
            raise ImportRefused(f"{part!r} is not FIELD=COLUMN")
        if contract_field not in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS):
            raise ImportRefused(f"{contract_field!r} is not a field of the contract; "
                                f"give some of {', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)}")
        if contract_field in columns:
            raise ImportRefused(f"{contract_field!r} is mapped twice")
        columns[contract_field] = column
    missing = [name for name in REQUIRED_FIELDS if name not in columns]
    if missing:
        raise ImportRefused(f"map {', '.join(missing)} too (required: "
                            f"{', '.join(REQUIRED_FIELDS)})")  # fmt: skip
    if ("lat" in columns) != ("lon" in columns):
        raise ImportRefused("map lat and lon together, or neither")
    return columns


def _refuse_unworkable(source: Path, out: Path, options: ImportOptions) -> None:
    if source.suffix not in (".csv", ".parquet"):
        raise ImportRefused(f"{source}: give a .csv or .parquet file")
    if out.suffix != ".jsonl":
        raise ImportRefused(f"--out {out}: the stream file is JSONL, name it *.jsonl")
    if options.time_format not in TIME_FORMATS and "%" not in options.time_format:
        raise ImportRefused(f"--time-format {options.time_format!r}: give one of "
                            f"{', '.join(TIME_FORMATS)} or a strptime format such as "
                            "'%d/%m/%Y %H:%M'")  # fmt: skip
    if not math.isfinite(options.label_delay_days) or options.label_delay_days < 0:
        raise ImportRefused("--label-delay-days must be a number of days >= 0")
    if len(options.delimiter) != 1:
        raise ImportRefused(f"--delimiter {options.delimiter!r}: give one character")
    try:
        codecs.lookup(options.encoding)
    except LookupError:
        raise ImportRefused(f"--encoding {options.encoding!r} is not an encoding Python "
                            "knows (utf-8, latin-1, cp1252, ...)") from None  # fmt: skip


def _source_rows(source: Path, options: ImportOptions) -> Iterator[tuple[int, Any]]:
    """(line or row number, row by column) of the source; first checks the mapped columns
    are there (`ImportRefused` naming the missing and the present ones)."""
    wanted = list(dict.fromkeys(options.columns.values()))
    if source.suffix == ".parquet":
        yield from _checked(parquet_rows(source), wanted, source)
        return
    with source.open(encoding=options.encoding, errors="surrogateescape", newline="") as text:
        yield from _checked(csv_rows(text, options.delimiter), wanted, source)


def _checked(
    rows: Iterator[tuple[int, Any]], wanted: list[str], source: Path
) -> Iterator[tuple[int, Any]]:
    """`rows`, once the first readable one shows every wanted column."""
    checked = False
    for number, row in rows:
        if not checked and not isinstance(row, Unreadable):
            absent = [column for column in wanted if column not in row]
            if absent:
                present = ", ".join(str(name) for name in row if name is not None)
                raise ImportRefused(f"{source} has no column {', '.join(map(repr, absent))}; "
                                    f"its columns: {present}")  # fmt: skip
            checked = True
        yield number, row


class _Row:
    """One source row's cells by contract field, each converted or refused with why."""

    def __init__(self, row: Mapping[str | None, Any], options: ImportOptions) -> None:
        self.row = row
        self.options = options

    def cell(self, name: str) -> Any:
        """The cell mapped to `name`, stripped; None when unmapped or empty."""
        column = self.options.columns.get(name)
        value = None if column is None else self.row.get(column)
        if isinstance(value, str):
            value = value.strip()
            if not value.isascii() and not _encodable(value):
                raise self.refused(name, f"holds bytes that are not {self.options.encoding}: "
                                         "give --encoding (latin-1, cp1252, ...)")  # fmt: skip
        return None if value == "" else value

    def refused(self, name: str, why: str) -> InvalidTransaction:
        return InvalidTransaction(f"column {self.options.columns.get(name)!r} ({name}): {why}")

    def text(self, name: str, default: str | None = None) -> Any:
        """Ids and codes as text (`1234.0` is "1234"); None is left for the contract."""
        value = self.cell(name)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return value if isinstance(value, str) else str(value)

    def number(self, name: str) -> float | None:
        """A number cell (text, integer, float or decimal) as a float; NaN, infinities and
        out-of-range values are left for the contract to name."""
        value = self.cell(name)
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise self.refused(name, f"{value!r} is not a number") from None

    def seconds(self, name: str) -> float | None:
        value = self.cell(name)
        if value is None:
            return None
        try:
            seconds = epoch_seconds(value, self.options.time_format)
        except (TypeError, ValueError, OverflowError) as error:
            why = f"{value!r} is not a time in --time-format {self.options.time_format!r}"
            raise self.refused(name, f"{why} ({error})") from None
        if seconds > MAX_EVENT_TIME and MIN_EVENT_TIME <= seconds / 1000 <= MAX_EVENT_TIME:
            raise self.refused(name, f"{value!r} looks like epoch milliseconds: give "
                                     "--time-format epoch_ms")  # fmt: skip
        return seconds

    def fraud_flag(self) -> bool | None:
        value = self.cell("is_fraud")
        if value is None or isinstance(value, bool):
            return value
        flag = FRAUD_FLAGS.get(str(value).lower())
        if isinstance(value, int | float | Decimal) and value in (0, 1):
            flag = bool(value)
        if flag is None:
            raise self.refused("is_fraud", f"{value!r} is not a fraud flag (1/0, true/false, "
                                           "yes/no)")  # fmt: skip
        return flag


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: a byte the encoding could not decode
        return False
    return True


def epoch_seconds(value: Any, time_format: str) -> float:
    """A time cell as epoch seconds: a datetime or date (naive is UTC), a number (epoch
    seconds, or milliseconds for `epoch_ms`), or text in `time_format` (see the module)."""
    if isinstance(value, datetime.datetime):
        return _utc(value).timestamp()
    if isinstance(value, datetime.date):
        return _utc(datetime.datetime.combine(value, datetime.time())).timestamp()
    if isinstance(value, bool):
        raise TypeError("a boolean is not a time")
    if isinstance(value, int | float | Decimal):
        if time_format not in ("auto", "epoch", "epoch_ms"):
            raise TypeError("a number, not text")
        return float(value) / (1000.0 if time_format == "epoch_ms" else 1.0)
    text = str(value)
    if time_format == "auto":
        try:
            return float(text)
        except ValueError:
            return _utc(datetime.datetime.fromisoformat(text)).timestamp()
    if time_format in ("epoch", "epoch_ms"):
        return float(text) / (1000.0 if time_format == "epoch_ms" else 1.0)
    if time_format == "iso":
        return _utc(datetime.datetime.fromisoformat(text)).timestamp()
    return _utc(datetime.datetime.strptime(text, time_format)).timestamp()


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _contract_record(row: _Row, txn_id: str) -> dict[str, Any]:
    """The transaction contract's fields of one source row (validated afterwards)."""
    options = row.options
    record: dict[str, Any] = {
        "txn_id": row.text("txn_id", txn_id),
        "card_id": row.text("card_id"),
        "merchant_id": row.text("merchant_id"),
        "amount": row.number("amount"),
        "currency": str(row.text("currency", options.currency)).upper(),
        "country": str(row.text("country", options.country)).upper(),
        "channel": str(row.text("channel", options.channel)).lower(),
        "event_time": row.seconds("event_time"),
    }
    lat, lon = row.number("lat"), row.number("lon")
    if lat is not None or lon is not None:
        record["lat"], record["lon"] = lat, lon
    return record


def _row_label(row: _Row, txn: Transaction, delay_days: float) -> Label | None:
    """The label of a row whose fraud flag is set, else None."""
    is_fraud = row.fraud_flag()
    if is_fraud is None:
        return None
    label_time = row.seconds("label_time")
    if label_time is None:
        label_time = txn.event_time + delay_days * SECONDS_PER_DAY
    return parse_label({
        "txn_id": txn.txn_id,
        "is_fraud": is_fraud,
        "scenario": row.text("scenario", "imported" if is_fraud else "legit"),
        "label_time": label_time,
    })  # fmt: skip


@dataclass
class _Written:
    transactions: int = 0
    labelled: int = 0
    frauds: int = 0


def import_transactions(
    source: Path, out: Path, options: ImportOptions, rejects: RejectedRecords
) -> ImportReport:
    """Convert `source` (CSV or Parquet) into the stream file `out` and, when `is_fraud` is
    mapped, its labels beside it; rows that cannot be converted go to `rejects`.

    Raises `ImportRefused` before reading when the mapping, a format or `out` cannot work,
    and `InvalidTransaction` when no row converts (or, strict, at the first that does not).
    """
    _refuse_unworkable(source, out, options)
    started = time.perf_counter()
    labels = labels_path_for(out) if "is_fraud" in options.columns else None
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = {path: path.with_name(f".{path.name}.importing") for path in (out, labels) if path}
    try:
        with contextlib.ExitStack() as files:
            txn_out = files.enter_context(_writing(partial[out]))
            label_out = files.enter_context(_writing(partial[labels])) if labels else None
            written = _convert(source, options, rejects, txn_out, label_out)
        if not written.transactions:
            raise InvalidTransaction(f"{source}: no row could be imported; {rejects.summary()}"
                                     if rejects.count else f"{source} holds no rows")  # fmt: skip
        for path, temporary in partial.items():
            temporary.replace(path)
    finally:
        for temporary in partial.values():
            temporary.unlink(missing_ok=True)
    if labels is None:  # a labels file of an earlier import would be read as this one's
        labels_path_for(out).unlink(missing_ok=True)
    return ImportReport(source, out, labels, written.transactions, written.labelled,
                        written.frauds, time.perf_counter() - started)  # fmt: skip


def _writing(path: Path) -> IO[str]:
    return path.open("w", encoding="utf-8", newline="\n")


def _convert(
    source: Path,
    options: ImportOptions,
    rejects: RejectedRecords,
    txn_out: IO[str],
    label_out: IO[str] | None,
) -> _Written:
    written = _Written()
    parser = ContractParser()

    def converted(number: int, cells: Mapping[str | None, Any]) -> tuple[Transaction, Label | None]:
        row = _Row(cells, options)
        txn = parse_transaction(_contract_record(row, f"{source.stem}-{number}"))
        label = _row_label(row, txn, options.label_delay_days)
        return parser.unique(number, txn), label  # only a row kept claims its txn_id

    rows = _source_rows(source, options)
    for txn, label in accepted_records(rows, source, converted, rejects):
        txn_out.write(json_line(txn.to_dict()))
        written.transactions += 1
        if label is not None and label_out is not None:
            label_out.write(json_line(label.to_dict()))
            written.labelled += 1
            written.frauds += label.is_fraud
    return written
