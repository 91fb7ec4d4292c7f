"""`make demo`: the nightly DAG end to end on embedded defaults, with a readable report at the end.

A SQLite warehouse gets a day of orders (most paid, some unknown to Juspay, a few with bad values);
the bundled sandbox answers with about 20 ms latency and some transient faults; `airflow dags test`
runs the nightly DAG in a throw-away AIRFLOW_HOME; the report comes from the task's XCom.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path

from airflow_provider_juspay.sync.report import RunReport
from airflow_provider_juspay.testing.warehouse import seed_warehouse

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".demo"
DAG_ID = "juspay_nightly_sync"
DAY = date(2026, 11, 26)
ROWS = 3000
API_KEY = "sk_demo_not_a_real_key_42"
MERCHANT_ID = "demo_merchant"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sandbox(port: int, orders_file: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "airflow_provider_juspay.testing.sandbox", "--port", str(port),
            "--api-key", API_KEY, "--merchant-id", MERCHANT_ID, "--orders-file", str(orders_file),
            "--latency-ms", "20", "--error-rate", "0.02", "--drop-rate", "0.005", "--seed", "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening" not in line:
        proc.kill()
        sys.exit(f"the sandbox did not start: {line!r}")
    print(line.strip())
    return proc


def sandbox_state(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__sandbox/state", timeout=10) as response:
        return json.load(response)


def task_report(home: Path, dag_id: str, task_id: str) -> dict | None:
    """The report a task pushed in its latest run (return value, or ``report`` when it failed)."""
    with closing(sqlite3.connect(home / "airflow.db")) as db:
        row = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key IN ('return_value', 'report') "
            "ORDER BY timestamp DESC LIMIT 1",
            (dag_id, task_id),
        ).fetchone()
    if row is None:
        return None
    value = json.loads(row[0]) if isinstance(row[0], (str, bytes)) else row[0]
    return json.loads(value) if isinstance(value, str) else value


def airflow_dags_test(env: dict, dag_id: str, logical_date: str, log_name: str) -> tuple[int, float]:
    """Run `airflow dags test`, its log to a file; the exit code and seconds taken."""
    print(f"\n$ airflow dags test {dag_id} {logical_date}    (log: {WORK / log_name})")
    started = time.monotonic()
    with open(WORK / log_name, "w") as log:
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", dag_id, logical_date],
            env=env,
            stdout=log,
            stderr=log,
        )
    return done.returncode, time.monotonic() - started


def show(home: Path, dag_id: str, task_id: str, code: int, elapsed: float) -> None:
    report = task_report(home, dag_id, task_id)
    print(RunReport.from_dict(report).format() if report else "No report was pushed; see the log.")
    print(f"DAG run {'succeeded' if code == 0 else 'FAILED'} in {elapsed:.1f}s (with Airflow start-up).")


def show_run_history(warehouse: Path) -> None:
    """The run history the pushes wrote beside their ledger (docs/ledger.md, "The run history")."""
    columns = ("dag_id", "task_id", "state", "sent", "skipped", "rejected", "invalid", "rows_read")
    with closing(sqlite3.connect(warehouse)) as db:
        runs = db.execute(f"SELECT {', '.join(columns)} FROM juspay_sync_runs ORDER BY started_at").fetchall()
    widths = (22, 18, 9, 6, 8, 9, 8, 10)
    print(f"\nThe run history (juspay_sync_runs in {warehouse.name}):")
    for row in [columns, *runs]:
        cells = [
            str(v).ljust(w) if i < 3 else str(v).rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  " + "".join(cells))


def write_juspay_page(warehouse: Path) -> Path:
    """The Juspay page as Airflow's UI draws it (docs/syncs.md), from the same ledger, as a file: the
    demo has no API server, so no login and every DAG is shown."""
    from airflow_provider_juspay.sync.ledger.views import LedgerViews
    from airflow_provider_juspay.ui.render import PageData, render_page

    with closing(sqlite3.connect(warehouse)) as db:
        views = LedgerViews(db, "juspay_fulfilment_ledger")
        now = views.now()
        dags = {DAG_ID, "juspay_retry_failed"}
        held_total, held = views.held_keys(dags, now)
        data = PageData(
            now=now, ledgers=[f"warehouse:{warehouse.name}"], runs=views.recent_runs(dags, now),
            days=views.outcomes_per_day(dags, now), reasons=views.top_failures(dags, now),
            held_total=held_total, held=held,
        )  # fmt: skip
    page = WORK / "juspay-page.html"
    page.write_text(render_page(data))
    return page


def sandbox_post(port: int, what: str, payload: dict) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/__sandbox/{what}", data=json.dumps(payload).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    home = WORK / "airflow_home"
    home.mkdir(parents=True)
    with closing(sqlite3.connect(WORK / "warehouse.db")) as db:
        seeded = seed_warehouse(db, DAY, ROWS)
    orders_file = WORK / "juspay_orders.json"
    orders_file.write_text(json.dumps({order_id: "NOT_FOUND" for order_id in seeded.unknown_ids}))
    print(
        f"Warehouse {WORK / 'warehouse.db'}: {seeded.total} fulfilments on {DAY} "
        f"({seeded.good} paid, {seeded.unknown} unknown to Juspay, {seeded.bad} with bad values)"
    )
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_JUSPAY_DEFAULT": json.dumps(
            {
                "conn_type": "juspay",
                "login": MERCHANT_ID,
                "password": API_KEY,
                "host": f"http://127.0.0.1:{port}",
            }
        ),
        "AIRFLOW_CONN_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(WORK / "warehouse.db")}),
    }
    sandbox = start_sandbox(port, orders_file)
    try:
        print(f"Preparing a throw-away Airflow home in {home} ...")
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )
        # Day D by hand, as docs/howto/nightly.md says: a manual run covers the last whole interval before
        # its logical date, and at D+1 noon it sits on no date the schedule or a backfill would use.
        next_day = (DAY + timedelta(days=1)).isoformat()
        logical_date = f"{next_day}T12:00:00+00:00"

        print(f"\n1. The nightly sync of {DAY}.")
        code, elapsed = airflow_dags_test(env, DAG_ID, logical_date, "nightly_1.log")
        show(home, DAG_ID, "push_fulfilments", code, elapsed)
        state = sandbox_state(port)
        print(
            f"The sandbox received {state['requests']} requests "
            f"(answers by HTTP status: {state['statuses']}), "
            f"accepted {state['accepted']} commands, {state['doubles']} of them twice."
        )

        print("\n2. The same night again (a rerun, or a backfill): the ledger skips what was delivered.")
        code, elapsed = airflow_dags_test(env, DAG_ID, logical_date, "nightly_2.log")
        show(home, DAG_ID, "push_fulfilments", code, elapsed)

        print("\n3. By morning the unknown orders were paid; the hourly retry sends only the failed keys.")
        sandbox_post(port, "orders", {order_id: "CHARGED" for order_id in seeded.unknown_ids})
        code, elapsed = airflow_dags_test(
            env, "juspay_retry_failed", f"{next_day}T18:00:00+00:00", "retry.log"
        )
        show(home, "juspay_retry_failed", "retry_failed", code, elapsed)

        state = sandbox_state(port)
        print(
            f"\nIn all, the sandbox accepted {state['accepted']} commands "
            f"for {seeded.good + seeded.unknown} valid orders, {state['doubles']} of them twice; "
            f"{seeded.bad} rows with bad values were never sent."
        )
        show_run_history(WORK / "warehouse.db")
        page = write_juspay_page(WORK / "warehouse.db")
        print(
            f"\nThe Juspay page of these runs: {page.relative_to(REPO)} (open it in a browser). "
            "In Airflow 3.1+ it is Browse > Juspay syncs, with a Juspay tab on each DAG run, once the "
            "API server has AIRFLOW__JUSPAY__LEDGER_CONN_ID=warehouse (docs/syncs.md)."
        )
        sys.exit(code)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


if __name__ == "__main__":
    main()
