"""Stream files: JSONL, CSV and Parquet round trips, labels beside them, errors that locate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fraudstream.features.transaction import InvalidTransaction
from fraudstream.stream.sim.generator import GeneratorConfig, SyntheticStream, generate_stream
from fraudstream.stream.sim.streamfile import (
    labels_path_for,
    read_labels,
    read_mixed_jsonl,
    read_stream_file,
    read_transactions,
    write_stream,
)

SMALL = GeneratorConfig(transactions=5_000, seed=3)


@pytest.fixture(scope="module")
def small() -> SyntheticStream:
    return generate_stream(SMALL)


def test_lines_are_compact_json_of_the_contract(small: SyntheticStream, tmp_path: Path) -> None:
    labels_file = write_stream(small, tmp_path / "fraudstream.stream.jsonl")
    lines = (tmp_path / "fraudstream.stream.jsonl").read_text().splitlines()
    assert lines[0] == json.dumps(small.transactions[0].to_dict(), separators=(",", ":"))
    assert labels_file.read_text().splitlines()[-1] == json.dumps(
        small.labels[-1].to_dict(), separators=(",", ":")
    )


def test_jsonl_round_trip(small: SyntheticStream, tmp_path: Path) -> None:
    path = tmp_path / "fraudstream.stream.jsonl"
    labels_file = write_stream(small, path)
    assert labels_file == labels_path_for(path) == tmp_path / "fraudstream.stream.labels.jsonl"
    assert read_transactions(path) == small.transactions
    assert read_labels(labels_file) == small.labels


def test_parquet_round_trip(small: SyntheticStream, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "fraudstream.stream.parquet"
    labels_file = write_stream(small, path)
    assert labels_file == tmp_path / "fraudstream.stream.labels.jsonl"
    assert read_transactions(path) == small.transactions
    assert read_labels(labels_file) == small.labels


def test_csv_with_contract_columns_reads_like_jsonl(small: SyntheticStream, tmp_path: Path) -> None:
    path = tmp_path / "fraudstream.stream.csv"
    columns = list(small.transactions[0].to_dict())
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(t.to_dict() for t in small.transactions)
    assert read_transactions(path) == small.transactions


def test_a_bad_record_is_reported_with_file_and_record_number(
    small: SyntheticStream, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    good = small.transactions[0].to_dict()
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "channel": "fax"}) + "\n")
    with pytest.raises(InvalidTransaction, match=r"bad\.jsonl, record 2: field 'channel'"):
        read_transactions(path)


def test_read_stream_file_finds_labels_beside_the_transactions(tmp_path: Path) -> None:
    stream = generate_stream(GeneratorConfig(transactions=200, seed=3))
    path = tmp_path / "fraudstream.stream.jsonl"
    labels_path = write_stream(stream, path)
    assert read_stream_file(path) == (stream.transactions, stream.labels)
    labels_path.unlink()
    assert read_stream_file(path) == (stream.transactions, [])


def test_a_mixed_file_splits_transactions_from_labels_and_locates_errors(
    small: SyntheticStream, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.jsonl"
    records = [*small.transactions[:3], small.labels[0], small.transactions[3], small.labels[1]]
    path.write_text("".join(json.dumps(record.to_dict()) + "\n" for record in records))
    assert read_mixed_jsonl(path) == (small.transactions[:4], small.labels[:2])
    path.write_text(path.read_text() + '{"txn_id": "x", "is_fraud": "yes"}\n{not json\n')
    with pytest.raises(InvalidTransaction, match=r"mixed\.jsonl, record 7: field 'is_fraud'"):
        read_mixed_jsonl(path)
