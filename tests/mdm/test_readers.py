import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdm.readers import FileFormatError, detect_format, open_rows


def rows_of(path, fmt, **kw):
    rows, _ = open_rows(path, fmt, **kw)
    return list(rows)


def test_csv_rows_carry_their_line_numbers(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('id,name\n1,Ann\n2,"Lee,\nJr"\n\n3,Bo,extra\n4,Cy\n')

    rows = rows_of(path, "csv")

    assert [(r.line, r.data) for r in rows if r.data] == [
        (2, {"id": "1", "name": "Ann"}),
        (4, {"id": "2", "name": "Lee,\nJr"}),
        (7, {"id": "4", "name": "Cy"}),
    ]
    bad = [r for r in rows if r.data is None]
    assert [(r.line, r.error) for r in bad] == [(6, "the row has 3 fields but the header has 2")]


def test_csv_with_other_delimiter_and_bom(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("\ufeffKUNNR;NAME1\n10;Müller\n".encode())

    rows = rows_of(path, "csv", delimiter=";")

    assert rows[0].data == {"KUNNR": "10", "NAME1": "Müller"}


def test_csv_without_header_is_refused(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")

    with pytest.raises(FileFormatError, match="needs a header row"):
        rows_of(path, "csv")


def test_jsonl_bad_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n{"id": \n\n[1,2]\n{"id": 3}\n')

    rows = rows_of(path, "jsonl")

    assert [(r.line, r.data) for r in rows] == [
        (1, {"id": 1}),
        (2, None),
        (4, None),
        (5, {"id": 3}),
    ]
    assert rows[1].error.startswith("not valid JSON")
    assert rows[2].error == "each line must hold one JSON object"


def test_json_array_is_streamed_item_by_item(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(orjson.dumps([{"id": 1, "n": {"a": 1.5}}, 7, {"id": 2}]))

    rows = rows_of(path, "json")

    assert [(r.line, r.data) for r in rows] == [
        (1, {"id": 1, "n": {"a": 1.5}}),
        (2, None),
        (3, {"id": 2}),
    ]


def test_json_that_is_not_an_array_is_refused(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"id": 1}')

    with pytest.raises(FileFormatError, match="array of objects"):
        rows_of(path, "json")


def test_parquet_rows_are_json_safe(tmp_path):
    import datetime
    import decimal

    path = tmp_path / "a.parquet"
    table = pa.table(
        {
            "id": ["a", "b"],
            "price": pa.array([decimal.Decimal("1.50"), None], pa.decimal128(6, 2)),
            "day": [datetime.date(2024, 1, 2), None],
        }
    )
    pq.write_table(table, path)

    rows = rows_of(path, "parquet")

    assert [(r.line, r.data) for r in rows] == [
        (1, {"id": "a", "price": "1.50", "day": "2024-01-02"}),
        (2, {"id": "b", "price": None, "day": None}),
    ]


def test_format_is_detected_from_the_extension(tmp_path):
    assert detect_format(tmp_path / "x.ndjson") == "jsonl"
    assert detect_format(tmp_path / "x.PARQUET") == "parquet"
    with pytest.raises(FileFormatError, match="pass --format"):
        detect_format(tmp_path / "x.xlsx")
