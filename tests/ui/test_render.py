"""The page's HTML on its own (no Airflow): how a run that ended badly reads, the chart's bars, links."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow_provider_juspay.sync.ledger.runs import OUTCOME_COLUMNS
from airflow_provider_juspay.sync.ledger.views import DayCounts, SyncRun
from airflow_provider_juspay.ui.chart import outcomes_chart
from airflow_provider_juspay.ui.render import PageData, duration, render_page

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=timezone.utc)


def sync_run(**changes) -> SyncRun:
    values = dict(
        claim_id="c1", merchant_id="m", dag_id="nightly", run_id="scheduled__2026-03-03T00:00:00+00:00",
        task_id="push", map_index=2, try_number=1, started_at=NOW - timedelta(minutes=5),
        last_seen_at=NOW - timedelta(minutes=4), ended_at=None, lease_s=60.0, state="running",
        stop_reason=None, counts=dict.fromkeys(OUTCOME_COLUMNS, 0), rows_read=0, records_per_s=0.0,
        peak_concurrency=None, final_concurrency=None, throttled=None, error=None, failures_export=None,
        failures=[],
        now=NOW,
    )  # fmt: skip
    values.update(changes)
    return SyncRun(**values)


def test_a_run_whose_heartbeat_stopped_reads_killed_with_what_that_means():
    dead = sync_run()
    alive = sync_run(claim_id="c2", last_seen_at=NOW - timedelta(seconds=5))
    stopped = sync_run(
        claim_id="c3", state="stopped", stop_reason="UNAUTHORIZED", ended_at=NOW, error="refused"
    )
    html = render_page(PageData(now=NOW, ledgers=["l"], runs=[dead, alive, stopped]), airflow_base="/base/")
    assert dead.killed and not alive.killed and not stopped.killed
    states = [html.count(f'class="state s-{state}"') for state in ("killed", "running", "stopped")]
    assert states == [1, 1, 1]
    assert "No heartbeat since 2026-03-04 11:56:00: the process died or is paused" in html
    assert "stopped: UNAUTHORIZED. refused" in html
    assert (
        'href="/base/dags/nightly/runs/scheduled__2026-03-03T00%3A00%3A00%2B00%3A00/tasks/push/mapped/2"'
        in html
    )
    assert dead.duration_s == 60.0 and stopped.duration_s == 300.0, "a dead run lasted until it was last seen"


def test_bars_are_scaled_to_the_busiest_day_and_stack_by_outcome_group():
    days = [DayCounts("2026-03-03", {"sent": 50, "rejected": 50}), DayCounts("2026-03-04", {"sent": 200}),
            DayCounts("2026-03-05", {})]  # fmt: skip
    chart = outcomes_chart(days, height=228)  # a plot of 228 - 16 - 28 = 184 px
    quiet, busy, empty = chart.bars
    assert chart.peak == 200 and busy.segments[0].height == 184.0 and empty.segments == ()
    assert [(s.label, s.height) for s in quiet.segments] == [("delivered", 46.0), ("failed", 46.0)]
    assert quiet.segments[1].y + quiet.segments[1].height == quiet.segments[0].y, "stacked, no gap"


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (0.44, 42, 185, 7260)] == ["0.4s", "42s", "3m 05s", "2h 01m"]


def test_the_plugin_mounts_the_app_where_its_views_point():
    from airflow_provider_juspay.plugins import juspay as plugin
    from airflow_provider_juspay.ui import app

    assert plugin.URL_PREFIX == app.URL_PREFIX == "/juspay"
    hrefs = [view["href"] for view in plugin.JuspayPlugin.external_views]
    assert all(href.startswith(app.URL_PREFIX.lstrip("/") + "/") for href in hrefs), hrefs
