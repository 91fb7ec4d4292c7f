"""No row can crash a run: thousands of generated rows of any shape, with and without a ledger."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings

from airflow_provider_juspay.fulfilment import RECORD_FIELDS, FulfilmentRecord
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.ledger import Ledger, RunInfo
from airflow_provider_juspay.sync.report import ReportBuilder
from airflow_provider_juspay.sync.settings import PushSettings
from tests.helpers import MERCHANT_ID
from tests.hostile import is_valid, rows

DELIVERED_HERE = {"sent", "already_fulfilled", "skipped", "held_elsewhere"}
_tries = itertools.count(1)


def check_run(batch, report, sandbox) -> None:
    """The invariants of any run: one outcome per row, named invalid rows, valid rows delivered."""
    assert report["total"] == len(batch) and sum(report["counts"].values()) == len(batch)
    good = sum(is_valid(row) for row in batch)
    assert sum(report["counts"][o] for o in DELIVERED_HERE) == good, report["counts"]
    assert report["counts"]["invalid"] == len(batch) - good
    for failure in report["failures"]:
        assert failure["outcome"] == "invalid", failure
        message = failure["message"]
        assert message.startswith("row "), message
        assert any(name in message for name in RECORD_FIELDS) or "not a mapping" in message, message
    assert sandbox.format_violations == [], "every request obeyed the documented format"
    assert all(status < 500 for status in sandbox.status_counts)


HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.mark.parametrize("with_ledger", [False, True], ids=["no-ledger", "ledger"])
@HYPOTHESIS
@given(batch=rows)
def test_any_rows_end_in_one_outcome_each(batch, with_ledger, ledger_db, ledger_client, sandbox):
    ledger = None
    if with_ledger:
        ledger = Ledger(ledger_db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run", "push", next(_tries)))
        ledger.ensure_table()
    control = RunControl()
    report = push(
        batch,
        report=ReportBuilder(max_failures_listed=1000),
        make_record=FulfilmentRecord.from_mapping,
        client=ledger_client,
        settings=PushSettings(max_concurrency=8),
        ledger=ledger,
        control=control,
    ).report.to_dict()
    check_run(batch, report, sandbox)
    assert report["counts"]["failed"] == report["counts"]["rejected"] == 0
    if ledger is not None:
        assert "in_flight" not in set(ledger.states().values())


def test_hostile_order_ids_arrive_as_one_segment_or_are_invalid(ledger_client, sandbox):
    hostile = ["/", "?", "#", "%", "%2F", "a/b", "../x", "...", "a b", "ünï✓", "-", "X" * 128]
    refused = [".", "..", "\x00", "\x85", "\u2028", "\ud800", "X" * 129, " padded", ""]
    batch = [
        {"order_id": order_id, "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        for order_id in hostile + refused
    ]
    control = RunControl()
    report = push(
        batch,
        report=ReportBuilder(),
        make_record=FulfilmentRecord.from_mapping,
        client=ledger_client,
        control=control,
    ).report.to_dict()
    assert report["counts"]["sent"] == len(hostile) and report["counts"]["invalid"] == len(refused)
    assert {order_id for order_id, _ in sandbox.accepted} == set(hostile), "each arrived as itself"
    assert all(r.raw_path.count("/") == 3 for r in sandbox.requests), "one path segment each"
