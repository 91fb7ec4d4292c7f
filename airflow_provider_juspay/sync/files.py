"""Rows from files: CSV, JSON Lines and Parquet (gzip too), streamed, each row knowing its file and line.

Airflow-free: it reads open binary streams; finding and opening the files (``ObjectStoragePath``, any
fsspec scheme) is the operator's job. A row that cannot be read is a
:class:`~airflow_provider_juspay.sync.records.BrokenRow` (it ends ``invalid``); a file that cannot be
read any further raises :class:`~airflow_provider_juspay.errors.SourceFileError`, naming the file and
the line, and :func:`read_files` goes on with the next file.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any

from airflow_provider_juspay.errors import SourceFileError
from airflow_provider_juspay.sync.records import BrokenRow, SourceRow

__all__ = [
    "FORMATS",
    "CsvOptions",
    "SourceFileError",
    "file_format_of",
    "read_file",
    "read_files",
]

FORMATS = ("csv", "jsonl", "parquet")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: Longest JSON line read (1 MiB): a longer one is a broken row, never a worker out of memory.
MAX_LINE_BYTES = 1 << 20
#: Longest CSV field (the csv module's own limit is 128 KiB; free text may hold 10,000 characters).
MAX_CSV_FIELD = 1 << 20
#: Rows per Parquet batch.
PARQUET_BATCH_ROWS = 1000


@dataclass(frozen=True, kw_only=True)
class CsvOptions:
    """How CSV files are read.

    :param delimiter: one character, default ``,`` (``\\t`` for ``.tsv`` files when not given).
    :param header: True (default): the first line names the columns; or the column names, for files
        without a header line.
    :param encoding: default ``utf-8-sig`` (UTF-8, with or without a byte-order mark). Bytes that are
        not text in it reach the record check as such and make their row ``invalid``, never the run.
    :param quotechar: default ``"``.

    Empty cells are missing values (None), as a warehouse export means them.
    """

    delimiter: str | None = None
    header: bool | tuple[str, ...] = True
    encoding: str = "utf-8-sig"
    quotechar: str = '"'

    def __post_init__(self) -> None:
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(f"CSV delimiter must be one character, got {self.delimiter!r}")
        if len(self.quotechar) != 1:
            raise ValueError(f"CSV quotechar must be one character, got {self.quotechar!r}")
        if not isinstance(self.header, bool):
            names = tuple(self.header)
            if not names or len(set(names)) != len(names):
                raise ValueError(f"CSV header must be True, False or distinct column names, got {names!r}")
            object.__setattr__(self, "header", names)
        elif self.header is False:
            raise ValueError("CSV without a header line: give the column names, header=('order_id', ...)")
        codecs.lookup(self.encoding)  # LookupError names an unknown encoding at parse time


def file_format_of(name: str, file_format: str | None = None) -> str:
    """The format of a file: ``file_format`` when given, else from its suffix (``.csv``, ``.jsonl``,
    ``.parquet``, any of them ``.gz``)."""
    if file_format is not None:
        if file_format not in FORMATS:
            raise ValueError(f"file_format must be one of {', '.join(FORMATS)}, got {file_format!r}")
        return file_format
    lowered = name.lower().removesuffix(".gz")
    for suffix, known in _SUFFIXES.items():
        if lowered.endswith(suffix):
            return known
    raise SourceFileError(
        f"{name}: cannot tell the format from the name; give file_format= ({', '.join(FORMATS)})"
    )


def read_file(
    stream: IO[bytes], name: str, file_format: str, *, csv_options: CsvOptions | None = None
) -> Iterator[SourceRow | BrokenRow]:
    """The rows of one open file, streamed; gzip is unpacked when the name ends ``.gz``."""
    if name.lower().endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
    try:
        if file_format == "csv":
            yield from _csv_rows(stream, name, csv_options or CsvOptions())
        elif file_format == "jsonl":
            yield from _jsonl_rows(stream, name)
        elif file_format == "parquet":
            yield from _parquet_rows(stream, name)
        else:
            raise SourceFileError(f"{name}: unknown file format {file_format!r}")
    except SourceFileError:
        raise
    except (OSError, EOFError, zlib.error, ValueError) as exc:  # truncated gzip, a dropped connection
        raise SourceFileError(f"{name}: cannot be read ({type(exc).__name__}: {exc})") from exc


def read_files(
    files: Iterable[tuple[str, Callable[[], AbstractContextManager[IO[bytes]]]]],
    *,
    file_format: str | None = None,
    csv_options: CsvOptions | None = None,
    on_error: Callable[[str], None],
) -> Iterator[SourceRow | BrokenRow]:
    """The rows of several files, one file after another; a file that fails is named to ``on_error``
    and the next file is read (rows read before the failure keep their outcomes).

    :param files: ``(name, open)`` pairs in reading order; ``open()`` gives a binary stream.
    """
    for name, opener in files:
        try:
            this_format = file_format_of(name, file_format)
            with opener() as stream:
                yield from read_file(stream, name, this_format, csv_options=csv_options)
        except SourceFileError as exc:
            on_error(str(exc))
        except Exception as exc:  # permissions, a vanished object: the file is named, the run goes on
            on_error(f"{name}: cannot be read ({type(exc).__name__}: {exc})")


def _csv_rows(stream: IO[bytes], name: str, options: CsvOptions) -> Iterator[SourceRow | BrokenRow]:
    text = io.TextIOWrapper(stream, encoding=options.encoding, errors="surrogateescape", newline="")
    delimiter = options.delimiter or ("\t" if name.lower().removesuffix(".gz").endswith(".tsv") else ",")
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD))
    reader = csv.reader(text, delimiter=delimiter, quotechar=options.quotechar, strict=False)
    if options.header is True:
        try:
            columns = next(reader)
        except StopIteration:
            return  # an empty file has no rows
        except csv.Error as exc:
            raise SourceFileError(f"{name} line 1: the header cannot be read ({exc})") from exc
        if not columns or len(set(columns)) != len(columns):
            raise SourceFileError(f"{name} line 1: the header must name distinct columns, got {columns!r}")
    else:
        columns = list(options.header)  # type: ignore[arg-type]
    width = len(columns)
    line = reader.line_num
    while True:
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = reader.line_num
            yield BrokenRow(f"{name} line {start}", f"not CSV the reader can parse ({exc})")
            continue
        line = reader.line_num
        where = f"{name} line {start}"
        if not cells:
            continue  # a blank line
        if len(cells) != width:
            yield BrokenRow(where, f"{len(cells)} fields where the header names {width}")
            continue
        yield SourceRow({c: (v if v != "" else None) for c, v in zip(columns, cells, strict=True)}, where)


def _jsonl_rows(stream: IO[bytes], name: str) -> Iterator[SourceRow | BrokenRow]:
    buffered: Any = stream if isinstance(stream, io.BufferedIOBase) else io.BufferedReader(stream)  # type: ignore[arg-type,type-var]
    number = 0
    while True:
        raw = buffered.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        where = f"{name} line {number}"
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line, a chunk at a time
                raw = buffered.readline(MAX_LINE_BYTES)
            yield BrokenRow(where, f"a line longer than {MAX_LINE_BYTES} bytes")
            continue
        if not raw.strip():
            continue
        try:
            value: Any = json.loads(raw)
        except UnicodeDecodeError as exc:
            yield BrokenRow(where, f"not UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than Python's stack
            yield BrokenRow(where, f"not JSON ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        if not isinstance(value, dict):
            yield BrokenRow(where, f"a JSON object per line is expected, got {type(value).__name__}")
            continue
        yield SourceRow(value, where)


def _parquet_rows(stream: IO[bytes], name: str) -> Iterator[SourceRow | BrokenRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SourceFileError(
            f"{name}: reading Parquet needs pyarrow: pip install 'airflow-provider-juspay[parquet]'"
        ) from None
    import pyarrow

    try:
        parquet = pq.ParquetFile(stream)
    except (pyarrow.ArrowException, OSError) as exc:
        raise SourceFileError(f"{name}: not a Parquet file pyarrow can read ({exc})") from exc
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for values in batch.to_pylist():
                number += 1
                yield SourceRow(values, f"{name} row {number}")
    except (pyarrow.ArrowException, OSError) as exc:
        raise SourceFileError(f"{name} after row {number}: cannot be read ({exc})") from exc
