"""Streaming readers for source exports: CSV, JSON (array), JSON Lines and Parquet.

Each yields ``SourceRow`` items one at a time, so memory stays bounded whatever the file size,
and each row knows its line (CSV, JSON Lines), item (JSON) or row (Parquet) number.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import orjson
import pyarrow.parquet as pq

FORMATS = ("csv", "json", "jsonl", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class FileFormatError(ValueError):
    """The file cannot be read at all (unknown format, no header, not JSON...)."""


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One row of an export.  ``data`` is None when the row itself could not be parsed."""

    line: int
    data: dict[str, Any] | None
    error: str | None = None
    text: str | None = None


def detect_format(path: Path, hint: str | None = None) -> str:
    if hint:
        if hint not in FORMATS:
            raise FileFormatError(f"unknown format {hint!r}; expected one of {', '.join(FORMATS)}")
        return hint
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise FileFormatError(
            f"cannot tell the format of {path.name} from its extension; "
            f"pass --format ({', '.join(FORMATS)})"
        )
    return fmt


def line_label(file_format: str) -> str:
    return {"csv": "line", "jsonl": "line", "json": "item", "parquet": "row"}[file_format]


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


class Progress:
    """Position in the file, for progress bars: bytes for text formats, rows for Parquet."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.position = 0


def open_rows(
    path: Path, file_format: str, *, delimiter: str = ",", encoding: str = "utf-8"
) -> tuple[Iterator[SourceRow], Progress]:
    """Open an export and return its rows and a progress gauge."""
    if not path.exists():
        raise FileFormatError(f"file not found: {path}")
    if file_format == "parquet":
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise FileFormatError(f"{path.name} is not a readable Parquet file: {exc}") from exc
        progress = Progress(pf.metadata.num_rows)
        return _parquet_rows(pf, progress), progress
    progress = Progress(path.stat().st_size)
    if file_format == "csv":
        return _csv_rows(path, delimiter, encoding, progress), progress
    if file_format == "jsonl":
        return _jsonl_rows(path, progress), progress
    if file_format == "json":
        return _json_rows(path, progress), progress
    raise FileFormatError(f"unknown format {file_format!r}")


def _csv_rows(path: Path, delimiter: str, encoding: str, progress: Progress) -> Iterator[SourceRow]:
    raw = path.open("rb")
    try:
        text = _TextWithPosition(raw, encoding)
        reader = csv.reader(text, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise FileFormatError(
                f"{path.name} is empty: a CSV export needs a header row"
            ) from None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise FileFormatError(f"{path.name} line 1: cannot read the header: {exc}") from exc
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            dupes = sorted({h for h in header if header.count(h) > 1})
            raise FileFormatError(f"{path.name} line 1: duplicate column(s) {dupes}")
        width = len(header)
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except (UnicodeDecodeError, csv.Error) as exc:
                progress.position = raw.tell()
                yield SourceRow(reader.line_num, None, f"cannot parse the row: {exc}")
                continue
            progress.position = raw.tell()
            if not values:
                continue  # a blank line
            if len(values) != width:
                yield SourceRow(
                    reader.line_num,
                    None,
                    f"the row has {len(values)} fields but the header has {width}",
                    delimiter.join(values),
                )
                continue
            yield SourceRow(reader.line_num, dict(zip(header, values, strict=True)))
    finally:
        raw.close()


class _TextWithPosition:
    """Decode a binary file line by line (so ``raw.tell()`` follows the reader)."""

    def __init__(self, raw: BinaryIO, encoding: str) -> None:
        self.raw = raw
        self.encoding = encoding

    def __iter__(self) -> _TextWithPosition:
        return self

    def __next__(self) -> str:
        line = self.raw.readline()
        if not line:
            raise StopIteration
        return line.decode(self.encoding)


def _jsonl_rows(path: Path, progress: Progress) -> Iterator[SourceRow]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            progress.position += len(line)
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                text = line.decode("utf-8", errors="replace").rstrip("\n")
                yield SourceRow(number, None, f"not valid JSON: {exc}", text)
                continue
            if not isinstance(data, dict):
                yield SourceRow(number, None, "each line must hold one JSON object", None)
                continue
            yield SourceRow(number, data)


def _json_rows(path: Path, progress: Progress) -> Iterator[SourceRow]:
    with path.open("rb") as fh:
        first = fh.read(64).lstrip()
        fh.seek(0)
        if not first.startswith(b"["):
            raise FileFormatError(
                f"{path.name}: a JSON export must be an array of objects "
                "(use .jsonl for one object per line)"
            )
        items = ijson.items(fh, "item", use_float=True)
        number = 0
        try:
            for item in items:
                number += 1
                progress.position = fh.tell()
                if not isinstance(item, dict):
                    yield SourceRow(number, None, "each item must be a JSON object")
                    continue
                yield SourceRow(number, _json_safe(item))
        except ijson.JSONError as exc:
            yield SourceRow(number + 1, None, f"the JSON is broken after item {number}: {exc}")


def _parquet_rows(pf: pq.ParquetFile, progress: Progress) -> Iterator[SourceRow]:
    number = 0
    for batch in pf.iter_batches(batch_size=10_000):
        for item in batch.to_pylist():
            number += 1
            progress.position = number
            yield SourceRow(number, {str(k): _json_safe(v) for k, v in item.items()})
