"""Every failure of a run, written as it happens: JSON Lines or CSV, one row per failed order.

The report keeps the first failures; this keeps all of them, with memory flat however many there are.
A failure is what the report counts as one (rejected, failed, invalid, not attempted).
"""

from __future__ import annotations

import csv
import json
from typing import IO

from airflow_provider_juspay.fulfilment import FulfilmentResult
from airflow_provider_juspay.sync.report import counts_as_failure

__all__ = ["EXPORT_COLUMNS", "EXPORT_FORMATS", "FailureExport", "export_format"]

EXPORT_COLUMNS = (
    "order_id",
    "command",
    "fulfillment_id",
    "outcome",
    "error_code",
    "message",
    "attempts",
    "http_status",
    "position",
)
EXPORT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def export_format(name: str) -> str:
    """``jsonl`` or ``csv``, from the name's suffix."""
    lowered = name.lower()
    for suffix, known in EXPORT_FORMATS.items():
        if lowered.endswith(suffix):
            return known
    raise ValueError(f"failures_path must end .jsonl or .csv (the format), got {name!r}")


class FailureExport:
    """Writes the failures among the results it is given to ``stream`` (text), as they come.

    :param file_format: ``jsonl`` or ``csv`` (with a header line).
    :param dry_run: in a dry run the rows that would be sent are not failures, and are not written.
    """

    def __init__(self, stream: IO[str], file_format: str, *, dry_run: bool = False) -> None:
        if file_format not in ("jsonl", "csv"):
            raise ValueError(f"export format must be jsonl or csv, got {file_format!r}")
        self.rows = 0
        self._stream = stream
        self._dry_run = dry_run
        self._csv = csv.writer(stream, lineterminator="\n") if file_format == "csv" else None
        if self._csv is not None:
            self._csv.writerow(EXPORT_COLUMNS)

    def add(self, result: FulfilmentResult) -> None:
        """Write ``result`` when it is a failure."""
        if not counts_as_failure(result.outcome, dry_run=self._dry_run):
            return
        values = (
            result.order_id,
            result.command,
            result.fulfillment_id,
            result.outcome.value,
            result.error_code,
            result.message,
            result.attempts,
            result.http_status,
            result.position,
        )
        if self._csv is not None:
            self._csv.writerow(["" if v is None else v for v in values])
        else:
            # ensure_ascii: a row's text may hold anything; the file stays 7-bit and one line per row
            self._stream.write(json.dumps(dict(zip(EXPORT_COLUMNS, values, strict=True))) + "\n")
        self.rows += 1
