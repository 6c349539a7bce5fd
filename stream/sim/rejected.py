"""Records that break the contract, set aside with why instead of stopping a whole read.

A published dataset with 42 zero amounts in 1.75 million rows should cost 42 rows, not the
dataset: offline readers hand each record they cannot accept to a `RejectedRecords`,
which writes it to a JSONL file and counts it, and they go on. One line per record:

    {"file": "data/stream.jsonl", "line": 129591, "error": "field 'amount' ...",
     "record": "<the record as read>"}

`line` is the line of a JSONL or CSV file (where the row ends) or the row number of a
Parquet file, from 1; `record` is the raw line as text (bytes that are not UTF-8 shown as
`\\xNN` escapes), or a CSV or Parquet row as JSON text, at most `MAX_RECORD_CHARS`
characters. The file holds the data's own ids in clear, as the data does: it goes where
the data is, never to a topic. With `strict`, the first record raises `InvalidTransaction`
"file:line: why" instead, and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from fraudstream.features.transaction import InvalidTransaction

#: Longest raw record kept in a rejection, in characters (a megabyte line is not copied).
MAX_RECORD_CHARS = 65_536


def rejected_path_for(path: Path) -> Path:
    """Where the rejected records of `path` go: `<stem>.rejected.jsonl` beside it."""
    return path.with_name(f"{path.stem}.rejected.jsonl")


def record_text(record: Any) -> str:
    """A raw record as text for a rejection: a line decoded (invalid UTF-8 escaped), a row
    as JSON (values JSON cannot hold, such as dates or bytes, as their str)."""
    if isinstance(record, bytes):
        text = record.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
    elif isinstance(record, str):
        text = record.rstrip("\r\n")
    else:
        text = json.dumps(record, default=str)
    return text if len(text) <= MAX_RECORD_CHARS else text[:MAX_RECORD_CHARS]


class RejectedRecords:
    """Counts and writes the records a read could not accept, or raises on the first.

    Use as a context manager: the file is created at the first rejection (a read without
    any leaves no file) and closed on leaving.
    """

    def __init__(self, path: Path, *, strict: bool = False) -> None:
        self.path = path
        self.strict = strict
        self.count = 0
        self._out: IO[str] | None = None

    def reject(self, source: Path, line: int, record: Any, error: str) -> None:
        """Set aside `record`, read at `source`:`line`, for `error`; strict, raise instead."""
        if self.strict:
            raise InvalidTransaction(f"{source}:{line}: {error}")
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("w", encoding="utf-8", newline="\n")
        rejection = {"file": str(source), "line": line, "error": error,
                     "record": record_text(record)}  # fmt: skip
        self._out.write(json.dumps(rejection) + "\n")
        self.count += 1

    def summary(self) -> str:
        """One line for the user: how many were skipped and where they are; "" for none."""
        if not self.count:
            return ""
        records = "record that breaks" if self.count == 1 else "records that break"
        return (f"skipped {self.count:,} {records} the contract; each is in "
                f"{self.path} with the reason (--strict stops at the first instead)")  # fmt: skip

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self) -> RejectedRecords:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
