"""Stream files: JSONL, CSV and Parquet round trips, labels beside them, errors that locate,
and hostile files read forgivingly: every bad record set aside with why, the rest read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.features.transaction import InvalidTransaction
from fraudstream.stream.sim.generator import GeneratorConfig, SyntheticStream, generate_stream
from fraudstream.stream.sim.rejected import MAX_RECORD_CHARS, RejectedRecords
from fraudstream.stream.sim.streamfile import (
    labels_path_for,
    read_labels,
    read_mixed_jsonl,
    read_stream_file,
    read_transactions,
    write_stream,
)

SMALL = GeneratorConfig(transactions=5_000, seed=3)
A_RECORD = {"txn_id": "t1", "card_id": "c1", "merchant_id": "m1", "amount": 0.0,
            "currency": "EUR", "country": "FR", "channel": "pos", "event_time": 1.7e9}  # fmt: skip


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
    with pytest.raises(InvalidTransaction, match=r"bad\.jsonl:2: field 'channel'"):
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
    with pytest.raises(InvalidTransaction, match=r"mixed\.jsonl:7: field 'is_fraud'"):
        read_mixed_jsonl(path)


#: Lines a careless export holds: near-valid records with one field changed to anything.
LINES = st.builds(
    lambda name, value: json.dumps({**A_RECORD, name: value}, default=str).encode(),
    st.sampled_from([*A_RECORD, "is_fraud"]),
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
) | st.binary(max_size=40)


def _line(record: dict[str, object]) -> bytes:
    return json.dumps(record).encode()


def _raw(record: dict[str, object], field: str, literal: bytes) -> bytes:
    """`record` as JSON with `field`'s value replaced by a raw literal."""
    return _line({**record, field: "MARKER"}).replace(b'"MARKER"', literal)


def _hostile_lines(small: SyntheticStream) -> list[tuple[bytes, str]]:
    """(line, what its rejection must say) for each kind of record a careless export holds."""
    good = small.transactions[0].to_dict()
    without_card = {name: value for name, value in good.items() if name != "card_id"}
    return [
        (_line(good)[:-9], "not valid JSON"),  # truncated
        (_line({**good, "txn_id": "w", "amount": "12.50"}), "'amount' must be a number"),
        (_line({**without_card, "txn_id": "m"}), "'card_id' must be a non-empty string, got None"),
        (_raw({**good, "txn_id": "nan"}, "amount", b"NaN"), "not valid JSON"),
        (_raw({**good, "txn_id": "inf"}, "amount", b"Infinity"), "not valid JSON"),
        (_raw({**good, "txn_id": "big"}, "amount", b"1e400"), "number is infinity"),
        (_raw({**good, "txn_id": "huge"}, "amount", b"9" * 30), "'amount' must be in"),
        (_raw({**good, "txn_id": "bytes"}, "card_id", b'"\xff\xfe"'), "not valid UTF-8"),
        (_line({**good, "amount": 3.0}), "duplicate txn_id 't00000001': the one at line 1 is kept"),
        (b"[1, 2]", "expected a JSON object"),
    ]


def test_a_hostile_file_costs_only_its_bad_records_each_set_aside_with_file_line_and_why(
    small: SyntheticStream, tmp_path: Path
) -> None:
    path = tmp_path / "export.jsonl"
    good = small.transactions[:3]
    hostile = _hostile_lines(small)
    lines = [_line(good[0].to_dict()), b"", *(line for line, _ in hostile),
             *(_line(t.to_dict()) for t in good[1:])]  # fmt: skip
    path.write_bytes(b"\n".join(lines) + b"\n")
    with RejectedRecords(tmp_path / "export.rejected.jsonl") as rejects:
        assert read_transactions(path, rejects) == good
    assert rejects.count == len(hostile)
    rejected = [json.loads(line) for line in rejects.path.read_text().splitlines()]
    for number, ((line, why), rejection) in enumerate(zip(hostile, rejected, strict=True), 3):
        assert (rejection["file"], rejection["line"]) == (str(path), number)
        assert why in rejection["error"]
        assert rejection["record"] == line.decode("utf-8", errors="backslashreplace")
    assert rejects.summary().startswith(f"skipped {len(hostile)} records that break")


def test_strict_stops_at_the_first_bad_record_with_file_and_line(
    small: SyntheticStream, tmp_path: Path
) -> None:
    path = tmp_path / "export.jsonl"
    first_bad, why = _hostile_lines(small)[1]
    path.write_bytes(_line(small.transactions[0].to_dict()) + b"\n\n" + first_bad + b"\n")
    strict = RejectedRecords(tmp_path / "never.jsonl", strict=True)
    with pytest.raises(InvalidTransaction, match=f"^{path}:3: field {why[:9]}"):
        read_transactions(path, strict)
    assert not strict.path.exists()


def test_labels_for_unknown_or_already_labelled_transactions_are_set_aside(
    small: SyntheticStream, tmp_path: Path
) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in small.transactions[:2]))
    first, second = small.labels[:2]
    stranger = {**first.to_dict(), "txn_id": "nobody"}
    labels_path_for(path).write_text("\n".join(json.dumps(record) for record in [
        first.to_dict(), stranger, first.to_dict(), {**second.to_dict(), "is_fraud": "yes"},
        second.to_dict(),
    ]) + "\n")  # fmt: skip
    with RejectedRecords(tmp_path / "rejected.jsonl") as rejects:
        assert read_stream_file(path, rejects) == (small.transactions[:2], [first, second])
    errors = [json.loads(line)["error"] for line in rejects.path.read_text().splitlines()]
    assert ["nobody" in errors[0], "duplicate label" in errors[1], "is_fraud" in errors[2]] == [
        True, True, True]  # fmt: skip


def test_a_label_before_its_transaction_in_a_mixed_file_is_set_aside(
    small: SyntheticStream, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.jsonl"
    records = [small.labels[0], *small.transactions[:2], small.labels[1]]
    path.write_text("".join(json.dumps(record.to_dict()) + "\n" for record in records))
    with RejectedRecords(tmp_path / "rejected.jsonl") as rejects:
        assert read_mixed_jsonl(path, rejects) == (small.transactions[:2], [small.labels[1]])
    assert json.loads(rejects.path.read_text())["line"] == 1


@pytest.mark.parametrize("content", [b"", b"\n\n", b"{truncated"])
def test_a_file_without_any_transaction_says_so_in_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with RejectedRecords(tmp_path / "rejected.jsonl") as rejects, pytest.raises(
        InvalidTransaction, match=f"^{path} holds no transaction"
    ):
        read_transactions(path, rejects)


def test_csv_rows_past_the_field_limit_or_not_utf8_are_set_aside(
    small: SyntheticStream, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    columns = list(small.transactions[0].to_dict())
    rows = [",".join(str(value) for value in t.to_dict().values()).encode()
            for t in small.transactions[:3]]  # fmt: skip
    too_long = rows[1].replace(b"t00000002", b"x" * 200_000)
    not_utf8 = rows[2].replace(small.transactions[2].card_id.encode(), b"c\xff")
    path.write_bytes(b"\n".join([",".join(columns).encode(), rows[0], too_long, not_utf8]) + b"\n")
    with RejectedRecords(tmp_path / "rejected.jsonl") as rejects:
        assert read_transactions(path, rejects) == small.transactions[:1]
    rejected = [json.loads(line) for line in rejects.path.read_text().splitlines()]
    assert [r["line"] for r in rejected] == [3, 4]
    assert "not readable as CSV" in rejected[0]["error"]
    assert "'card_id' must be text encodable as UTF-8" in rejected[1]["error"]
    assert len(rejected[1]["record"]) <= MAX_RECORD_CHARS


def test_parquet_rows_that_break_the_contract_are_set_aside_and_a_cut_file_is_refused(
    small: SyntheticStream, tmp_path: Path
) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "export.parquet"
    records = [t.to_dict() for t in small.transactions[:3]]
    records[1]["amount"] = float("nan")
    columns = {name: [record[name] for record in records] for name in records[0]}
    columns["card_id"] = [1, 2, 3]  # integer ids: the contract wants text
    columns["card_id"][0] = None
    pq.write_table(pa.table(columns), path)
    with RejectedRecords(tmp_path / "rejected.jsonl") as rejects, pytest.raises(
        InvalidTransaction, match="holds no transaction that satisfies the contract; skipped 3"
    ):
        read_transactions(path, rejects)
    errors = [json.loads(line)["error"] for line in rejects.path.read_text().splitlines()]
    assert ["got None" in errors[0], "'amount' must be finite" in errors[1]] == [True, True]
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(InvalidTransaction, match="is not readable as Parquet at its start"):
        read_transactions(path, RejectedRecords(tmp_path / "again.jsonl"))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    content=st.binary(max_size=400) | st.lists(LINES, max_size=6).map(b"\n".join),
    suffix=st.sampled_from([".jsonl", ".csv", ".parquet"]),
)
def test_any_bytes_in_a_stream_file_are_read_or_refused_in_one_line(
    tmp_path: Path, content: bytes, suffix: str
) -> None:
    path = tmp_path / f"any{suffix}"
    path.write_bytes(content)
    rejected = tmp_path / "any.rejected.jsonl"
    rejected.unlink(missing_ok=True)
    with RejectedRecords(rejected) as rejects:
        try:
            read_stream_file(path, rejects)
        except InvalidTransaction as error:
            assert "\n" not in str(error)
    if rejects.count:
        assert len([json.loads(line) for line in rejected.read_text().splitlines()]) == (
            rejects.count)  # fmt: skip
