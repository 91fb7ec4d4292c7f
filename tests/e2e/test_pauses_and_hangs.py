"""Exactly once through pauses and hangs (issue 23), with real processes: a run stopped (SIGSTOP) past its
lease while another takes over, a heartbeat connection that hangs, a main connection that hangs. The
sandbox counts every POST per key and who sent it (``User-Agent: juspay-run/<name>``)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e

LEASE_S = 4.0


class StallingProxy:
    """A TCP proxy on loopback to a database; ``stall()`` stops passing bytes and keeps the sockets
    open, as a network that drops packets without a reset does."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stalled = threading.Event()
        self._done = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self.stalled.set()

    def release(self) -> None:
        self.stalled.clear()

    def close(self) -> None:
        self._done.set()
        self.server.close()

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        with a, b:
            while not self._done.is_set():
                if self.stalled.is_set():
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)


def postgres_uri(port: int | None = None) -> str:
    uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    if not uri:
        pytest.skip("no PostgreSQL: set JUSPAY_TEST_POSTGRES_URI (.ci/run does)")
    if port is None:
        return uri
    host_port = uri.split("@", 1)[1].split("/", 1)[0]
    return uri.replace(host_port, f"127.0.0.1:{port}")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_target(request, tmp_path):
    """Where the workers keep the ledger: a SQLite file, or the PostgreSQL of .ci/run (table emptied)."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    return fresh_postgres()


def fresh_postgres() -> str:
    import psycopg2

    uri = postgres_uri()
    with closing(psycopg2.connect(uri)) as db, db.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS juspay_fulfilment_ledger")
        db.commit()
    return uri


def connect(target: str):
    if target.startswith("postgresql://"):
        import psycopg2

        return psycopg2.connect(target, connect_timeout=5)
    return sqlite3.connect(target, timeout=30)


def states(target: str) -> dict[str, int]:
    try:
        with closing(connect(target)) as db:
            cursor = db.cursor()
            cursor.execute("SELECT state, COUNT(*) FROM juspay_fulfilment_ledger GROUP BY state")
            found = {state: n for state, n in cursor.fetchall()}
            db.commit()
            return found
    except Exception:  # not created yet
        return {}


def in_flight(target: str) -> set[tuple[str, str]]:
    with closing(connect(target)) as db:
        cursor = db.cursor()
        cursor.execute("SELECT order_id, command FROM juspay_fulfilment_ledger WHERE state = 'in_flight'")
        found = {tuple(row) for row in cursor.fetchall()}
        db.commit()
        return found


def worker(sandbox, ledger: str, name: str, *extra: str, rows: int = 600, lease: float = LEASE_S):
    command = [
        sys.executable, "-m", "bench.ledger_worker", "--sandbox", sandbox.base_url, "--ledger", ledger,
        "--rows", str(rows), "--lease", str(lease), "--name", name, "--run-id", f"run-{name}", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy()
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, dict, str]:
    output, _ = process.communicate(timeout=timeout)
    reports = [line[len("REPORT ") :] for line in output.splitlines() if line.startswith("REPORT ")]
    return process.returncode, (json.loads(reports[-1]) if reports else {}), output


def wait_for(condition, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def posts_by(sandbox, name: str, after: float = 0.0) -> list[str]:
    agent = f"juspay-run/{name}"
    return [
        r.order_id or ""
        for r in list(sandbox.requests)
        if r.method == "POST" and r.headers.get("User-Agent") == agent and r.at > after
    ]


def test_a_run_paused_past_its_lease_sends_nothing_after_another_took_its_keys_over(sandbox, ledger_target):
    """Run A is stopped (SIGSTOP: a VM stall, swapping, a long GC) for 1.5 leases with keys claimed and
    not sent; B takes them over and sends them. Resumed, A sends nothing more and does not end green."""
    sandbox.configure(latency=0.05)
    a = worker(sandbox, ledger_target, "A")
    wait_for(lambda: states(ledger_target).get("sent", 0) >= 40, what="A to deliver some rows")
    os.kill(a.pid, signal.SIGSTOP)
    paused = time.monotonic()
    time.sleep(0.2)  # what A had on the wire is answered now (and not read)
    on_the_wire = in_flight(ledger_target)
    b = worker(sandbox, ledger_target, "B")
    code_b, report_b, output_b = finish(b)
    time.sleep(max(0.0, paused + 1.5 * LEASE_S - time.monotonic()))
    resumed = time.monotonic()
    os.kill(a.pid, signal.SIGCONT)
    code_a, _report_a, output_a = finish(a)

    assert code_b == 0 and report_b["counts"]["held_elsewhere"] == 0, output_b[-3000:]
    assert posts_by(sandbox, "A", after=resumed) == [], "resumed, A sent nothing: B had its keys"
    assert code_a != 0, f"A lost its lease and is not green: {output_a[-3000:]}"
    assert "LEASE_LOST" in output_a or "taken over" in output_a or "not renewed" in output_a, output_a[-2000:]
    assert len(sandbox.accepted) == 600, "every row delivered"
    assert set(sandbox.repeats()) <= {(o, c) for o, c in on_the_wire}, "repeats: only what was on the wire"
    # The only repeats: A's requests on the wire at the pause, or answered within the outcome writes'
    # delay (2 s) before it and not yet written; B sent them again once A's lease had passed.
    first_posts = [
        min(r.at for r in sandbox.requests if (r.order_id, r.form.get("fulfillment_command")) == key)
        for key in sandbox.repeats()
    ]
    assert all(paused - 2.5 < at < paused + 1 for at in first_posts), (paused, first_posts)
    assert states(ledger_target).get("in_flight", 0) == 0


def test_a_run_paused_past_its_lease_whose_keys_nobody_took_renews_and_ends_green(sandbox, tmp_path):
    """Resumed, the run sends nothing before a renewal; the database confirms it still holds its keys, so
    it carries on: every row once, no repeat."""
    ledger = str(tmp_path / "ledger.db")
    sandbox.configure(latency=0.05)
    a = worker(sandbox, ledger, "A")
    wait_for(lambda: states(ledger).get("sent", 0) >= 40, what="A to deliver some rows")
    os.kill(a.pid, signal.SIGSTOP)
    time.sleep(1.5 * LEASE_S)
    os.kill(a.pid, signal.SIGCONT)
    code_a, report_a, output_a = finish(a)
    assert code_a == 0 and report_a["counts"]["sent"] == 600, output_a[-3000:]
    assert len(sandbox.accepted) == 600 and sandbox.repeats() == {}


def test_a_heartbeat_connection_that_hangs_stops_its_run_before_another_takes_the_keys(sandbox):
    """The heartbeat's connection goes through a proxy that stalls: renewals hang. The run stops sending
    before its lease ends, is not green, and the next run delivers the rest once."""
    uri = fresh_postgres()
    proxy = StallingProxy(int(uri.rsplit(":", 1)[1].split("/")[0]))
    try:
        sandbox.configure(latency=0.2)  # slow: A holds its claimed keys longer than a lease
        a = worker(sandbox, uri, "A", "--heartbeat-ledger", postgres_uri(proxy.port))
        wait_for(lambda: states(uri).get("sent", 0) >= 40, what="A to deliver some rows")
        proxy.stall()
        stalled = time.monotonic()
        code_a, report_a, output_a = finish(a)
        took = time.monotonic() - stalled
        stopped = report_a.get("stopped") or {}
        assert code_a == 1 and stopped.get("error_code") == "LEASE_LOST", output_a[-3000:]
        assert took < LEASE_S + 15, f"A stopped {took:.1f}s after its heartbeat hung"
        last_post_by_a = max(r.at for r in sandbox.requests if r.headers.get("User-Agent") == "juspay-run/A")
        assert last_post_by_a < stalled + LEASE_S, "nothing sent past the lease the database confirmed"
        on_the_wire = in_flight(uri)
        sandbox.configure(latency=0.0)
        b = worker(sandbox, uri, "B")
        code_b, _report_b, output_b = finish(b)
        assert code_b == 0, output_b[-3000:]
        assert len(sandbox.accepted) == 600 and set(sandbox.repeats()) <= on_the_wire
    finally:
        proxy.close()


def test_a_run_whose_main_connection_hangs_lets_its_lease_lapse_and_another_delivers(sandbox):
    """The run's own connection hangs (its heartbeat's does not): with no progress for a lease it stops
    renewing, so another run delivers its rows instead of counting them held_elsewhere forever."""
    uri = fresh_postgres()
    proxy = StallingProxy(int(uri.rsplit(":", 1)[1].split("/")[0]))
    try:
        sandbox.configure(latency=0.05)
        a = worker(sandbox, postgres_uri(proxy.port), "A", "--heartbeat-ledger", uri)
        wait_for(lambda: states(uri).get("sent", 0) >= 40, what="A to deliver some rows")
        proxy.stall()
        stalled = time.monotonic()
        time.sleep(0.5)
        held_by_a = in_flight(uri)
        assert held_by_a, "A holds keys it can no longer write"
        time.sleep(LEASE_S)  # A renews no more: its last answers are a lease old
        b = worker(sandbox, uri, "B")
        code_b, report_b, output_b = finish(b)
        assert code_b == 0 and report_b["counts"]["held_elsewhere"] == 0, output_b[-3000:]
        assert len(sandbox.accepted) == 600, "every row delivered, those A held included"
        assert set(sandbox.repeats()) <= held_by_a
        assert a.poll() is None, "A is still hung"
        assert posts_by(sandbox, "A", after=stalled + LEASE_S) == [], "A sent nothing past its lease"
        proxy.release()
        code_a, _report_a, output_a = finish(a)
        assert code_a != 0, f"A is not green: {output_a[-3000:]}"
        assert posts_by(sandbox, "A", after=stalled + LEASE_S) == [], "nor once its connection came back"
        assert set(sandbox.repeats()) <= held_by_a
    finally:
        proxy.close()
