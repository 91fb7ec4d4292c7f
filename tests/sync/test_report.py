"""The report's shape: every outcome named, counts summing to total, failures capped."""

from __future__ import annotations

import json
import logging
import time

import pytest

from airflow_provider_juspay.fulfilment import FulfilmentResult, Outcome
from airflow_provider_juspay.sync.control import Stop
from airflow_provider_juspay.sync.report import ReportBuilder, RunReport


def test_report_counts_every_outcome_and_sums_to_total():
    builder = ReportBuilder(max_failures_listed=2)
    for i, outcome in enumerate([Outcome.SENT] * 5 + [Outcome.REJECTED] * 3 + [Outcome.INVALID]):
        builder.add(
            FulfilmentResult(order_id=str(i), outcome=outcome, error_code="X" if outcome.is_failure else None)
        )
    report = builder.finish()
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data["counts"]) == {o.value for o in Outcome}
    assert sum(data["counts"].values()) == data["total"] == 9
    assert data["errors"] == {"X": 4}
    assert len(data["failures"]) == 2, "capped"
    assert data["failure_count"] == 4 and report.failure_ratio == 4 / 9
    assert RunReport.from_dict(data) == report, "the JSON form reads back as the same report"
    assert "rejected" in report.format()


def test_progress_lines_come_at_the_interval_with_an_eta(caplog):
    ticks = iter([0.0] + [i * 3.0 for i in range(1, 100)])
    builder = ReportBuilder(
        total=10, log=logging.getLogger("t"), progress_every=10, clock=lambda: next(ticks)
    )
    with caplog.at_level(logging.INFO, logger="t"):
        for i in range(8):
            builder.add(FulfilmentResult(order_id=str(i), outcome=Outcome.SENT))
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("/10 records done" in line and "ETA" in line for line in lines)
    assert len(lines) < 8, "not one line per record"


def test_empty_run_has_a_zero_ratio():
    assert ReportBuilder().finish().failure_ratio == 0.0


def test_a_stalled_run_still_logs_progress(caplog):
    builder = ReportBuilder(total=5, log=logging.getLogger("stall"), progress_every=0.02)
    builder.add(FulfilmentResult(order_id="1", outcome=Outcome.SENT))
    with caplog.at_level(logging.INFO, logger="stall"), builder.heartbeat():
        deadline = time.monotonic() + 5
        while "waiting for answers" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)  # no result arrives: only the heartbeat can log
    assert "1/5 records done (sent 1)" in caplog.text and "waiting for answers" in caplog.text


def report_of(*outcomes: Outcome, dry_run: bool = False, stop=None) -> RunReport:
    builder = ReportBuilder(dry_run=dry_run)
    for i, outcome in enumerate(outcomes):
        builder.add(FulfilmentResult(order_id=str(i), outcome=outcome, error_code="CODE"))
    return builder.finish(stop=stop)


def test_undelivered_rows_make_a_run_undone_whatever_else_happened():
    assert report_of(Outcome.SENT, Outcome.SENT).undone() is None
    assert "1 records failed" in report_of(Outcome.SENT, Outcome.FAILED).undone()
    assert "1 were not attempted" in report_of(Outcome.SENT, Outcome.NOT_ATTEMPTED).undone()
    assert report_of(Outcome.NOT_ATTEMPTED, dry_run=True).undone() is None, "a dry run sends nothing"
    stopped = report_of(Outcome.NOT_ATTEMPTED, stop=Stop("CIRCUIT_OPEN", "Juspay kept failing"))
    assert "CIRCUIT_OPEN" in stopped.undone() and stopped.stopped["error_code"] == "CIRCUIT_OPEN"
    held = report_of(Outcome.HELD_ELSEWHERE, Outcome.SKIPPED, Outcome.REJECTED)
    assert held.undone() is None and held.nothing_done() is None, "another run holds them"
    lenient = report_of(Outcome.SENT, Outcome.FAILED)
    assert lenient.verdict(max_failure_ratio=1.0) is not None, "undelivered rows fail whatever the limits"


def test_a_run_that_did_nothing_at_all_is_named():
    assert "refused every one of the 2" in report_of(Outcome.REJECTED, Outcome.REJECTED).nothing_done()
    assert "2 records was invalid" in report_of(Outcome.INVALID, Outcome.INVALID).nothing_done()
    assert report_of(Outcome.REJECTED, Outcome.SENT).nothing_done() is None
    assert report_of(Outcome.REJECTED, Outcome.SKIPPED).nothing_done() is None, "Juspay holds the rest"
    refused = report_of(Outcome.REJECTED, Outcome.REJECTED)
    assert refused.verdict() is not None and refused.verdict(max_failure_ratio=1.0) is None, "a limit rules"


def test_not_attempted_rows_are_listed_with_their_cause_but_not_in_a_dry_run():
    real = report_of(Outcome.NOT_ATTEMPTED)
    assert real.errors == {"CODE": 1} and len(real.failures) == 1 and real.failure_count == 1
    dry = report_of(Outcome.NOT_ATTEMPTED, dry_run=True)
    assert dry.errors == {} and dry.failures == [] and dry.failure_count == 0


def test_limits_are_checked_each_when_given():
    report = report_of(Outcome.SENT, Outcome.SENT, Outcome.SENT, Outcome.REJECTED)
    assert report.verdict(max_failures=1) is None and "max_failures=0" in report.verdict(max_failures=0)
    assert report.verdict(max_failure_ratio=0.25) is None
    assert "max_failure_ratio=20.0%" in report.verdict(max_failure_ratio=0.2)


def test_reports_of_mapped_shards_add_up():
    shards = [report_of(Outcome.SENT, Outcome.REJECTED), report_of(Outcome.SENT), report_of(Outcome.INVALID)]
    merged = RunReport.merge(shards)
    assert merged.total == 4 and merged.counts["sent"] == 2 and merged.failure_count == 2
    assert merged.errors == {"CODE": 2} and len(merged.failures) == 2


def test_identical_failures_read_once_with_a_count_and_the_first_ids():
    builder = ReportBuilder()
    for i in range(12):
        builder.add(
            FulfilmentResult(
                order_id=f"V-{i}",
                outcome=Outcome.INVALID,
                error_code="INVALID_RECORD",
                message=f"row {i + 1}: order V-{i}: fulfillment_status='DELIVERED': must be SUCCESS or "
                "FAILURE",
                position=f"row {i + 1}",
            )
        )
    for i in range(2):
        builder.add(
            FulfilmentResult(
                order_id=None,
                outcome=Outcome.INVALID,
                error_code="INVALID_RECORD",
                message=f"row {20 + i}: order_id=None: is required",
                position=f"row {20 + i}",
            )
        )
    builder.add(FulfilmentResult(order_id="R-1", outcome=Outcome.REJECTED, error_code="X", message="no"))
    report = builder.finish()
    table = report.format()
    assert table.count("must be SUCCESS or FAILURE") == 1
    assert (
        "12 x invalid INVALID_RECORD fulfillment_status='DELIVERED': must be SUCCESS or FAILURE "
        "(orders V-0, V-1, V-2, V-3, V-4, ...)" in table
    )
    assert "2 x invalid INVALID_RECORD order_id=None: is required (first row 20, row 21)" in table
    assert "R-1: rejected X no" in table, "a failure seen once keeps its own line"
    assert report.summary().count("DELIVERED") == 1


def test_the_report_gives_one_rate_the_runs_own():
    """The pacer's rate of the last seconds (0.0 once the run ends) sat beside the run's '(1173/s)'."""
    from airflow_provider_juspay.sync.concurrency import AdaptiveLimit
    from airflow_provider_juspay.sync.control import RunControl
    from airflow_provider_juspay.sync.pacer import Pacer

    control = RunControl(pacer=Pacer(None), limiter=AdaptiveLimit(initial=4, ceiling=8))
    builder = ReportBuilder(total=2)
    builder.pace = control
    for i in range(2):
        builder.add(FulfilmentResult(order_id=f"R-{i}", outcome=Outcome.SENT, attempts=1))
    report = builder.finish()
    assert report.pacing["mode"] == "adaptive", "the pacing comes from the run's control"
    text = report.format()
    assert len([w for w in text.split() if w.endswith("/s)") or "rate" in w]) == 1, text
    assert report.records_per_s > 0 and "rate_per_s" not in report.to_dict()["pacing"]


@pytest.mark.parametrize(
    "counts, stopped, unread, min_rows, helps",
    [
        ({"sent": 5}, None, [], None, False),
        ({"rejected": 2, "invalid": 1}, None, [], None, False),  # the same rows, the same answers
        ({"failed": 1}, None, [], None, True),
        ({"not_attempted": 3}, None, [], None, True),
        ({"sent": 5}, None, ["a.csv line 9"], None, True),
        ({"sent": 5}, None, [], 10, True),  # fewer rows than expected: maybe not loaded yet
        ({"not_attempted": 3}, "UNAUTHORIZED", [], None, False),  # fix the key first
        ({"not_attempted": 3}, "UNEXPECTED_RESPONSES", [], None, False),
        ({"not_attempted": 3}, "CIRCUIT_OPEN", [], None, True),
        ({"sent": 5}, "LEASE_LOST", [], None, True),
    ],
)
def test_retry_helps_only_where_a_retry_can_deliver_more(counts, stopped, unread, min_rows, helps):
    report = RunReport(total=sum(counts.values()), unread=unread)
    report.counts.update(counts)
    report.stopped = {"error_code": stopped, "message": "m"} if stopped else None
    assert report.retry_helps(min_rows=min_rows) is helps


def test_the_report_says_which_budget_a_run_drew_from_and_shards_add_their_shares():
    budget = {
        "key": "api.juspay.in/m1",
        "share": 0.25,
        "merchant_sent_per_s": 392.4,
        "merchant_rate": 405.0,
        "tasks": 4,
        "cuts": 1,
        "queries_per_s": 8.1,
    }
    one = RunReport(total=10, counts={"sent": 10}, pacing={"mode": "adaptive", "budget": budget})
    text = one.format()
    assert "budget api.juspay.in/m1: this run 25% of the merchant's 392/s (4 task(s) drawing" in text
    assert "pacing: mode adaptive" in text and "'key'" not in text, "the budget has its own line"
    other = RunReport(
        total=10,
        counts={"sent": 10},
        pacing={"mode": "adaptive", "budget": {**budget, "share": 0.3, "tasks": 5}},
    )
    merged = RunReport.merge([one, other]).pacing["budget"]
    assert (merged["share"], merged["tasks"], merged["cuts"]) == (0.55, 5, 2)
    fallback = RunReport(pacing={"budget": {"key": "k", "fallback": "OperationalError: gone"}}).format()
    assert "unreachable, this run paced itself (OperationalError: gone)" in fallback
