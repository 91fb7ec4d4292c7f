"""A push's figures reach Airflow's own metrics: a real StatsD client (as the deployment configures it in
[metrics]) sends them to a UDP socket on loopback, where the test reads them."""

from __future__ import annotations

import socket

import pytest

from tests.helpers import run_dag

pytestmark = pytest.mark.e2e


@pytest.fixture
def statsd_server(monkeypatch):
    """A StatsD server on loopback (a UDP socket), and Airflow's metrics pointed at it."""
    stats = pytest.importorskip("airflow.sdk.observability.stats", reason="Stats in the Task SDK (3.3)")
    stats_utils = pytest.importorskip("airflow.sdk.observability.metrics.stats_utils")

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.2)
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(server.getsockname()[1]))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    # What the task runner does at the start of every task process (Airflow 3.3's way; older minors
    # set Stats up otherwise, and this test skips there: the newest leg runs it).
    try:
        stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    except (TypeError, AttributeError) as exc:
        server.close()
        pytest.skip(f"this Airflow sets up Stats otherwise ({exc})")
    yield server
    monkeypatch.delenv("AIRFLOW__METRICS__STATSD_ON")
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    server.close()


def received(server: socket.socket) -> dict[str, str]:
    """``name -> value|type`` of every packet waiting (the last value per name)."""
    found = {}
    while True:
        try:
            packet = server.recv(65536).decode()
        except TimeoutError:
            return found
        for line in packet.splitlines():
            name, _, value = line.partition(":")
            found[name] = value


def test_a_push_sends_its_rows_by_outcome_retries_duration_and_concurrency(
    airflow_db, sandbox, juspay_conn, statsd_server
):
    records = [
        {"order_id": f"M-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        for i in range(7)
    ] + [{"order_id": "UNKNOWN-1", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}]
    sandbox.script("error", 1)  # one 503, retried
    run = run_dag("juspay_test_setup", {"records": records})
    assert run.task_states["push"] == "failed", "the unknown order fails the run (no limit given)"
    metrics = received(statsd_server)
    assert metrics.get("airflow.juspay.push.rows.sent") == "7|c", metrics
    assert metrics.get("airflow.juspay.push.rows.rejected") == "1|c"
    assert metrics.get("airflow.juspay.push.retries.SERVICE_UNAVAILABLE") == "1|c"
    posts = [r for r in sandbox.requests if r.method == "POST"]
    assert metrics.get("airflow.juspay.push.requests") == f"{len(posts)}|c" == "9|c", "8 rows, one retried"
    assert metrics.get("airflow.juspay.push.server_errors") == "1|c", "the scripted 503"
    assert metrics["airflow.juspay.push.duration"].endswith("|ms")
    assert metrics["airflow.juspay.push.concurrency.peak"].endswith("|g")
    assert "airflow.juspay.push.rows.failed" not in metrics, "outcomes no row ended in are not sent"
