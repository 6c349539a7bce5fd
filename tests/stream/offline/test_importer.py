"""`fraudstream import`: a foreign CSV or Parquet export (integer ids, ISO times, zero
amounts, bad rows) becomes a stream file the normal reader reads, with its labels beside."""

from __future__ import annotations

import csv
import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from fraudstream.features.transaction import InvalidTransaction, Label, Transaction
from fraudstream.models.registry import list_versions
from fraudstream.stream.cli import main
from fraudstream.stream.offline.importer import (
    ImportOptions,
    ImportRefused,
    epoch_seconds,
    import_transactions,
    parse_column_map,
)
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.sim.rejected import RejectedRecords
from fraudstream.stream.sim.streamfile import labels_path_for, read_stream_file

FOREIGN_CSV = Path(__file__).parent / "fixtures" / "foreign_card_export.csv"
FOREIGN_MAP = ("txn_id=TransactionID,card_id=CardNumber,merchant_id=MerchantID,amount=Amount,"
               "event_time=TransactionTime,currency=Currency,country=Country,channel=Channel,"
               "is_fraud=IsFraud")  # fmt: skip
OPTIONS = ImportOptions(columns=parse_column_map(FOREIGN_MAP))
DAY = 86_400.0


def at(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


# What the fixture's six good rows must become (its five other rows are refused).
EXPECTED = [
    Transaction("1001", "4000123412341234", "77", 25.5, "EUR", "FR", "pos",
                at("2026-01-05T10:15:00+00:00")),
    Transaction("1002", "4000123412341234", "78", 0.0, "EUR", "FR", "ecom",
                at("2026-01-05T09:16:30+00:00")),
    Transaction("1003", "4000999900001111", "77", 0.0, "USD", "US", "atm",
                at("2026-01-05T11:00:00+00:00")),
    Transaction("1004", "4000999900001111", "79", 120.0, "USD", "US", "pos",
                at("2026-01-06T08:00:00+00:00")),
    Transaction("1008", "4000555566667777", "81", 19.99, "EUR", "FR", "pos",
                at("2026-01-07T12:00:00+00:00")),
    Transaction("1010", "4000123412341234", "82", 45.0, "EUR", "FR", "ecom",
                at("2026-01-08T15:00:00+00:00")),
]  # fmt: skip
FRAUD = {"1001": False, "1002": True, "1003": True, "1004": False, "1010": True}
#: Refused rows by CSV line, and what their reason must say.
REFUSED = {6: "'Amount' (amount): 'n/a' is not a number",
           7: "field 'amount' must be in [0, 1e+06], got -5.0",
           8: "'TransactionTime' (event_time): 'yesterday' is not a time",
           10: "duplicate txn_id '1002': the one at line 3 is kept",
           11: "'IsFraud' (is_fraud): 'maybe' is not a fraud flag"}  # fmt: skip


def expected_labels(delay_days: float = 7.0) -> list[Label]:
    return [Label(txn.txn_id, FRAUD[txn.txn_id], "imported" if FRAUD[txn.txn_id] else "legit",
                  txn.event_time + delay_days * DAY)
            for txn in EXPECTED if txn.txn_id in FRAUD]  # fmt: skip


def rejections(path: Path) -> dict[int, dict[str, Any]]:
    return {r["line"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_a_foreign_csv_becomes_the_contract_and_its_bad_rows_are_set_aside(
    tmp_path: Path,
) -> None:
    out = tmp_path / "imported.jsonl"
    with RejectedRecords(tmp_path / "imported.rejected.jsonl") as rejects:
        report = import_transactions(FOREIGN_CSV, out, OPTIONS, rejects)
    assert (report.transactions, report.labelled, report.frauds) == (6, 5, 3)
    assert report.labels == labels_path_for(out)
    assert read_stream_file(out) == (EXPECTED, expected_labels())
    refused = rejections(rejects.path)
    assert sorted(refused) == sorted(REFUSED)
    for line, why in REFUSED.items():
        assert why in refused[line]["error"] and refused[line]["file"] == str(FOREIGN_CSV)
    assert json.loads(refused[6]["record"])["TransactionID"] == "1005"


def test_the_same_data_as_parquet_with_typed_columns_imports_alike(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    with FOREIGN_CSV.open(newline="") as source:
        rows = list(csv.DictReader(source))

    def number(cell: str) -> float | None:
        try:
            return float(cell)
        except ValueError:
            return None  # "n/a": a null amount

    def moment(cell: str) -> datetime.datetime | None:
        try:
            parsed = datetime.datetime.fromisoformat(cell)
        except ValueError:
            return None  # "yesterday": a null time
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)

    table = pa.table({
        "TransactionID": pa.array([int(r["TransactionID"]) for r in rows], pa.int64()),
        "CardNumber": pa.array([int(r["CardNumber"]) for r in rows], pa.int64()),
        "MerchantID": pa.array([int(r["MerchantID"]) for r in rows], pa.int32()),
        "Amount": pa.array([number(r["Amount"]) for r in rows], pa.float64()),
        "TransactionTime": pa.array([moment(r["TransactionTime"]) for r in rows],
                                    pa.timestamp("ms", tz="UTC")),
        **{name: pa.array([r[name] for r in rows]) for name in
           ("Currency", "Country", "Channel", "IsFraud")},
    })  # fmt: skip
    source_path = tmp_path / "export.parquet"
    pq.write_table(table, source_path)
    out = tmp_path / "imported.jsonl"
    with RejectedRecords(tmp_path / "imported.rejected.jsonl") as rejects:
        import_transactions(source_path, out, OPTIONS, rejects)
    assert read_stream_file(out) == (EXPECTED, expected_labels())
    refused = rejections(rejects.path)
    assert sorted(refused) == [line - 1 for line in sorted(REFUSED)]  # rows, not lines
    assert "'Amount' (amount)" not in refused[5]["error"]  # null: the contract names it
    assert "field 'amount' must be a number, got None" in refused[5]["error"]


def test_strict_stops_at_the_first_bad_row_and_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "imported.jsonl"
    with pytest.raises(InvalidTransaction, match=f"^{FOREIGN_CSV}:6: column 'Amount'"):
        import_transactions(FOREIGN_CSV, out, OPTIONS,
                            RejectedRecords(tmp_path / "r.jsonl", strict=True))  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_without_a_fraud_column_no_labels_and_a_stale_labels_file_is_removed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "imported.jsonl"
    labels_path_for(out).write_text("stale\n")
    columns = {name: column for name, column in OPTIONS.columns.items() if name != "is_fraud"}
    with RejectedRecords(tmp_path / "r.jsonl") as rejects:
        report = import_transactions(FOREIGN_CSV, out, ImportOptions(columns), rejects)
    assert report.labels is None and not labels_path_for(out).exists()
    assert rejects.count == 4  # the flag "maybe" no longer matters
    assert read_stream_file(out)[1] == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("card_id=a,merchant_id=b,amount=c", "map event_time too"),
        ("card_id=a,merchant_id=b,amount=c,event_time=d,cvv=e", "'cvv' is not a field"),
        ("card_id=a,card_id=b,merchant_id=b,amount=c,event_time=d", "mapped twice"),
        ("card_id=a,merchant_id=b,amount=c,event_time=d,lat=e", "lat and lon together"),
        ("card_id,merchant_id=b", "'card_id' is not FIELD=COLUMN"),
    ],
)
def test_a_map_that_cannot_work_is_refused_with_what_to_change(text: str, why: str) -> None:
    with pytest.raises(ImportRefused, match=why):
        parse_column_map(text)


def test_a_mapped_column_the_source_lacks_is_named_with_the_columns_it_has(
    tmp_path: Path,
) -> None:
    options = ImportOptions({**OPTIONS.columns, "card_id": "PAN"})
    with pytest.raises(ImportRefused, match="has no column 'PAN'; its columns: TransactionID"):
        import_transactions(FOREIGN_CSV, tmp_path / "x.jsonl", options,
                            RejectedRecords(tmp_path / "r.jsonl"))  # fmt: skip


@pytest.mark.parametrize(
    ("cell", "time_format", "expected"),
    [
        ("2026-01-05T10:15:00Z", "auto", "2026-01-05T10:15:00+00:00"),
        ("2026-01-05 10:15:00-05:00", "iso", "2026-01-05T15:15:00+00:00"),
        ("1767608100", "auto", "2026-01-05T10:15:00+00:00"),
        (1767608100, "epoch", "2026-01-05T10:15:00+00:00"),
        ("1767608100000", "epoch_ms", "2026-01-05T10:15:00+00:00"),
        ("05/01/2026 10:15", "%d/%m/%Y %H:%M", "2026-01-05T10:15:00+00:00"),
        (datetime.date(2026, 1, 5), "auto", "2026-01-05T00:00:00+00:00"),
    ],
)
def test_times_become_epoch_seconds(cell: Any, time_format: str, expected: str) -> None:
    assert epoch_seconds(cell, time_format) == at(expected)


def test_epoch_milliseconds_read_as_seconds_are_refused_with_the_format_to_give(
    tmp_path: Path,
) -> None:
    source = tmp_path / "ms.csv"
    source.write_text("card,shop,amt,when\n1,2,3.5,1767608100000\n")
    options = ImportOptions(parse_column_map("card_id=card,merchant_id=shop,amount=amt,"
                                             "event_time=when"))  # fmt: skip
    with pytest.raises(InvalidTransaction, match="looks like epoch milliseconds: give "
                                                 "--time-format epoch_ms"):  # fmt: skip
        import_transactions(source, tmp_path / "x.jsonl", options,
                            RejectedRecords(tmp_path / "r.jsonl", strict=True))  # fmt: skip


def test_cli_imports_a_foreign_export_that_then_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A generated stream written as someone else's CSV (integer ids, ISO times, some
    amounts zeroed) comes back through `fraudstream import` and `fraudstream train`."""
    stream = generate_stream(GeneratorConfig(transactions=5_000, seed=5))
    fraud = {label.txn_id: label for label in stream.labels}
    source = tmp_path / "export.csv"
    with source.open("w", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(["id", "card", "shop", "eur", "at", "fraud", "reported"])
        for i, txn in enumerate(stream.transactions):
            moment = datetime.datetime.fromtimestamp(txn.event_time, datetime.UTC)
            writer.writerow([int(txn.txn_id[1:]), int(txn.card_id[1:]), int(txn.merchant_id[1:]),
                             0.0 if i % 100 == 0 else txn.amount, moment.isoformat(),
                             int(fraud[txn.txn_id].is_fraud),
                             fraud[txn.txn_id].label_time])  # fmt: skip
    out = tmp_path / "imported.jsonl"
    assert main(["import", str(source), "--out", str(out), "--delimiter", ";", "--currency",
                 "EUR", "--map", "txn_id=id,card_id=card,merchant_id=shop,amount=eur,"
                 "event_time=at,is_fraud=fraud,label_time=reported"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith(
        f"imported 5,000 transactions from {source} to {out} and 5,000 labels "
        f"({sum(label.is_fraud for label in stream.labels):,} frauds)"
    )
    transactions, labels = read_stream_file(out)
    assert sum(txn.amount == 0.0 for txn in transactions) == 50
    assert [label.label_time for label in labels] == [label.label_time for label in stream.labels]
    registry = tmp_path / "registry"
    assert main(["train", "--data", str(out), "--registry", str(registry)]) == 0
    assert list_versions(registry) == ["v0001"]
    assert main(["import", str(source), "--out", str(out), "--map", "card_id=card,"
                 "merchant_id=shop,amount=eur,event_time=at"]) == 1  # fmt: skip
    assert "has no column" in capsys.readouterr().err  # a ';' file read with ','


def test_a_csv_in_another_encoding_is_refused_with_a_hint_and_read_when_named(
    tmp_path: Path,
) -> None:
    source = tmp_path / "latin.csv"
    source.write_bytes("card,shop,amt,when\n1,Café du Port,3.5,2026-01-05\n".encode("latin-1"))
    options = ImportOptions(parse_column_map("card_id=card,merchant_id=shop,amount=amt,"
                                             "event_time=when"))  # fmt: skip
    with pytest.raises(InvalidTransaction, match="'shop' .merchant_id.: holds bytes that are "
                                                 "not utf-8-sig: give --encoding"):  # fmt: skip
        import_transactions(source, tmp_path / "x.jsonl", options,
                            RejectedRecords(tmp_path / "r.jsonl", strict=True))  # fmt: skip
    latin = ImportOptions(options.columns, encoding="latin-1")
    import_transactions(source, tmp_path / "x.jsonl", latin, RejectedRecords(tmp_path / "r.jsonl"))
    assert read_stream_file(tmp_path / "x.jsonl")[0][0].merchant_id == "Café du Port"


def test_a_row_refused_for_its_label_does_not_claim_its_txn_id(tmp_path: Path) -> None:
    source = tmp_path / "again.csv"
    source.write_text("id,card,shop,amt,when,fraud\n5,1,2,3.5,2026-01-05,maybe\n"
                      "5,1,2,3.5,2026-01-05,0\n")  # fmt: skip
    options = ImportOptions(parse_column_map("txn_id=id,card_id=card,merchant_id=shop,"
                                             "amount=amt,event_time=when,is_fraud=fraud"))
    with RejectedRecords(tmp_path / "r.jsonl") as rejects:
        import_transactions(source, tmp_path / "x.jsonl", options, rejects)
    assert rejects.count == 1
    assert [label.is_fraud for label in read_stream_file(tmp_path / "x.jsonl")[1]] == [False]
