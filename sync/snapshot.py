"""The snapshot export, streamed: JSON Lines or Parquet, a chunk of golden records at a time.

``snapshot_stream`` opens one read transaction (REPEATABLE READ on PostgreSQL), reads the
high-water mark, and yields it first; then the body, chunk by chunk, read with keyset
pagination inside that same transaction, so the records are consistent with the mark and
memory stays flat whatever the domain's size.  The transaction ends when the stream is
exhausted or closed (a client that hangs up).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import orjson
from django.db import connection, transaction

from sync.selectors import high_water_seq, snapshot_rows

ROW_GROUP = 10_000  # golden records per Parquet row group (and per JSON Lines write)


def _repeatable_read() -> None:
    # Only the first statement of a transaction may set it; inside a caller's transaction
    # (tests) that transaction's own isolation applies.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def snapshot_stream(
    *, domain: str, fmt: str, mask: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> Iterator[int | bytes]:
    """Yield the snapshot's sequence number, then the body in chunks (``fmt``: jsonl or
    parquet), each row passed through ``mask`` when given (an export is masked like every
    other read).  Iterate it to the end, or close it."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            _repeatable_read()
        seq = high_water_seq()
        yield seq
        rows = snapshot_rows(domain=domain)
        if mask is not None:
            rows = (mask(row) for row in rows)
        if fmt == "parquet":
            yield from _parquet_chunks(rows, seq)
        else:
            while chunk := list(islice(rows, ROW_GROUP)):
                yield b"".join(orjson.dumps(row) + b"\n" for row in chunk)


class _Sink(io.RawIOBase):
    """A write-only file that hands over what was written since the last ``drain``, and
    reports the total written as its position (Parquet's footer offsets need it)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.written

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _parquet_chunks(rows: Iterator[dict[str, Any]], seq: int) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("version", pa.int64()),
            ("attributes", pa.string()),
            ("xref", pa.string()),
            ("updated_at", pa.string()),
        ],
        metadata={"aurum.seq": str(seq)},
    )
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema)
    try:
        while chunk := list(islice(rows, ROW_GROUP)):
            table = pa.table(
                {
                    "id": [r["id"] for r in chunk],
                    "version": [r["version"] for r in chunk],
                    "attributes": [orjson.dumps(r["attributes"]).decode() for r in chunk],
                    "xref": [orjson.dumps(r["xref"]).decode() for r in chunk],
                    "updated_at": [r["updated_at"] for r in chunk],
                },
                schema=schema,
            )
            writer.write_table(table)
            yield sink.drain()
    finally:
        writer.close()
    yield sink.drain()
