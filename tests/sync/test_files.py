"""Rows from files (CSV, JSON Lines, Parquet, gzip) and the failure export, without Airflow."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Outcome
from airflow_provider_juspay.sync.export import EXPORT_COLUMNS, FailureExport, export_format
from airflow_provider_juspay.sync.files import (
    MAX_LINE_BYTES,
    CsvOptions,
    SourceFileError,
    file_format_of,
    read_file,
    read_files,
)
from airflow_provider_juspay.sync.records import BrokenRow, SourceRow, validate_rows


def rows_of(data: bytes, name: str, fmt: str | None = None, **options) -> list:
    return list(
        read_file(io.BytesIO(data), name, fmt or file_format_of(name), csv_options=CsvOptions(**options))
    )


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("A.CSV.GZ", "csv"),
        ("day.tsv", "csv"),
        ("x.jsonl", "jsonl"),
        ("x.ndjson.gz", "jsonl"),
        ("s3://b/k/part-0.parquet", "parquet"),
    ],
)
def test_the_format_comes_from_the_suffix(name, fmt):
    assert file_format_of(name) == fmt


def test_an_unknown_suffix_asks_for_file_format_and_a_wrong_format_is_refused():
    with pytest.raises(SourceFileError, match=r"orders\.json: cannot tell the format.*file_format="):
        file_format_of("orders.json")
    with pytest.raises(ValueError, match="file_format must be one of csv, jsonl, parquet"):
        file_format_of("a.csv", "xlsx")


def test_csv_rows_know_their_line_and_empty_cells_are_missing():
    data = (
        b"order_id,fulfillment_status,fulfillment_data\n"
        b'A-1,SUCCESS,\n\n"A-2",FAILURE,"two\nlines"\nA-3,SUCCESS,x\n'
    )
    rows = rows_of(data, "day.csv")
    assert [r.position for r in rows] == ["day.csv line 2", "day.csv line 4", "day.csv line 6"]
    assert rows[0] == {"order_id": "A-1", "fulfillment_status": "SUCCESS", "fulfillment_data": None}
    assert rows[1]["fulfillment_data"] == "two\nlines"


def test_a_csv_row_of_the_wrong_width_is_broken_and_the_next_rows_are_read():
    rows = rows_of(b"order_id,fulfillment_status\nA-1,SUCCESS,extra\nA-2\nA-3,SUCCESS\n", "d.csv")
    assert [type(r) for r in rows] == [BrokenRow, BrokenRow, SourceRow]
    assert rows[0].position == "d.csv line 2" and "3 fields where the header names 2" in rows[0].reason
    assert rows[2]["order_id"] == "A-3"


def test_csv_options_delimiter_named_columns_bom_and_tsv():
    assert rows_of(b"A-1;SUCCESS\n", "x.csv", delimiter=";", header=("order_id", "fulfillment_status")) == [
        {"order_id": "A-1", "fulfillment_status": "SUCCESS"}
    ]
    assert rows_of("\ufefforder_id\nA-1\n".encode(), "bom.csv")[0] == {"order_id": "A-1"}
    assert rows_of(b"order_id\tcmd\nA-1\tX\n", "x.tsv")[0] == {"order_id": "A-1", "cmd": "X"}
    with pytest.raises(ValueError, match="give the column names"):
        CsvOptions(header=False)
    with pytest.raises(ValueError, match="one character"):
        CsvOptions(delimiter=";;")


def test_bytes_that_are_not_utf8_make_their_row_invalid_not_the_file():
    data = (
        b"order_id,fulfillment_status,fulfillment_command\nA-\xff1,SUCCESS,NO_ACTION\nA-2,SUCCESS,NO_ACTION\n"
    )
    items = list(validate_rows(rows_of(data, "x.csv"), FulfilmentRecord.from_mapping))
    assert isinstance(items[0], FulfilmentResult) and items[0].outcome is Outcome.INVALID
    assert items[0].message.startswith("x.csv line 2: ")
    assert isinstance(items[1], FulfilmentRecord) and items[1].position == "x.csv line 3"


def test_jsonl_broken_lines_are_invalid_rows_with_their_line():
    lines = [
        b'{"order_id": "A-1"}',
        b"",
        b"{not json",
        b"[1, 2]",
        b'{"order_id": "A-\xff"}',
        b"[" * 100_000,
        b'{"order_id": "A-2"}',
    ]
    rows = rows_of(b"\n".join(lines) + b"\n", "x.jsonl")
    assert [(type(r).__name__, r.position) for r in rows] == [
        ("SourceRow", "x.jsonl line 1"),
        ("BrokenRow", "x.jsonl line 3"),
        ("BrokenRow", "x.jsonl line 4"),
        ("BrokenRow", "x.jsonl line 5"),
        ("BrokenRow", "x.jsonl line 6"),
        ("SourceRow", "x.jsonl line 7"),
    ]
    assert "not JSON" in rows[1].reason and "a JSON object per line" in rows[2].reason
    assert "not UTF-8" in rows[3].reason


def test_a_line_longer_than_the_cap_is_one_broken_row():
    data = b'{"order_id": "A-1", "x": "' + b"y" * (MAX_LINE_BYTES * 2) + b'"}\n{"order_id": "A-2"}\n'
    rows = rows_of(data, "big.jsonl")
    assert [type(r) for r in rows] == [BrokenRow, SourceRow]
    assert rows[1].position == "big.jsonl line 2"


def test_gzip_is_unpacked_and_a_truncated_gzip_names_the_file():
    packed = gzip.compress(b'{"order_id": "A-1"}\n' * 1000)
    assert len(rows_of(packed, "x.jsonl.gz")) == 1000
    with pytest.raises(SourceFileError, match=r"x\.jsonl\.gz: cannot be read"):
        rows_of(packed[: len(packed) // 2], "x.jsonl.gz")


def test_parquet_rows_in_batches_with_their_row_number():
    pa = pytest.importorskip("pyarrow")  # the test extra installs it; the skip only guards a bare install
    import pyarrow.parquet as pq

    table = pa.table({"order_id": [f"P-{i}" for i in range(2500)], "fulfillment_status": ["SUCCESS"] * 2500})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=700)
    rows = rows_of(sink.getvalue(), "x.parquet")
    assert len(rows) == 2500 and rows[2499] == {"order_id": "P-2499", "fulfillment_status": "SUCCESS"}
    assert rows[2499].position == "x.parquet row 2500"
    with pytest.raises(SourceFileError, match=r"x\.parquet: not a Parquet file"):
        rows_of(b"PAR1 but not really", "x.parquet")


def test_read_files_names_a_broken_file_and_reads_the_next():
    errors: list[str] = []

    def opener(data: bytes):
        return lambda: io.BytesIO(data)

    def missing():
        raise FileNotFoundError("gone")

    files = [
        ("a.csv", opener(b"order_id\nA-1\n")),
        ("b.jsonl.gz", opener(b"not gzip")),
        ("c.csv", missing),
        ("d.json", opener(b"{}")),
        ("e.jsonl", opener(b'{"order_id": "E-1"}\n')),
    ]
    rows = list(read_files(files, on_error=errors.append))
    assert [r["order_id"] for r in rows] == ["A-1", "E-1"]
    assert [e.split(":")[0] for e in errors] == ["b.jsonl.gz", "c.csv", "d.json"]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.sampled_from(["x.csv", "x.jsonl", "x.csv.gz", "x.tsv"]))
def test_any_bytes_give_rows_or_one_file_error_never_anything_else(data, name):
    """Whatever a file holds, reading it yields rows and broken rows, or fails naming the file."""
    try:
        rows = rows_of(data, name)
    except SourceFileError as exc:
        assert str(exc).startswith(name)
        return
    for row in rows:
        assert isinstance(row, (SourceRow, BrokenRow)) and row.position.startswith(f"{name} line ")
    items = list(validate_rows(rows, FulfilmentRecord.from_mapping))
    assert len(items) == len(rows)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_export_holds_every_failure_and_nothing_else(fmt):
    results = [
        FulfilmentResult("A-1", Outcome.SENT, position="d.csv line 2"),
        FulfilmentResult(
            "A-2", Outcome.REJECTED, 400, "NOT_FOUND", "no such order", 1, "NO_ACTION", None, "d.csv line 3"
        ),
        FulfilmentResult(None, Outcome.INVALID, message="bad \u2028 \ud800", position="d.csv line 4"),
        FulfilmentResult("A-4", Outcome.SKIPPED),
        FulfilmentResult("A-5", Outcome.HELD_ELSEWHERE),
        FulfilmentResult("A-6", Outcome.NOT_ATTEMPTED, message="not sent: the run stopped"),
    ]  # fmt: skip
    buffer = io.StringIO()
    export = FailureExport(buffer, fmt)
    for result in results:
        export.add(result)
    assert export.rows == 3
    text = buffer.getvalue()
    if fmt == "csv":
        read = list(csv.DictReader(io.StringIO(text)))
        assert tuple(read[0]) == EXPORT_COLUMNS
    else:
        read = [json.loads(line) for line in text.splitlines()]
    assert [r["order_id"] or None for r in read] == ["A-2", None, "A-6"]
    assert read[0]["position"] == "d.csv line 3" and str(read[0]["http_status"]) == "400"


def test_a_dry_run_exports_only_invalid_rows_and_the_suffix_chooses_the_format():
    buffer = io.StringIO()
    export = FailureExport(buffer, "jsonl", dry_run=True)
    export.add(FulfilmentResult("A-1", Outcome.NOT_ATTEMPTED, message="dry run"))
    export.add(FulfilmentResult("A-2", Outcome.INVALID, message="bad"))
    assert export.rows == 1 and json.loads(buffer.getvalue())["order_id"] == "A-2"
    assert export_format("s3://b/failures.CSV") == "csv" and export_format("f.ndjson") == "jsonl"
    with pytest.raises(ValueError, match=r"must end \.jsonl or \.csv"):
        export_format("failures.parquet")
