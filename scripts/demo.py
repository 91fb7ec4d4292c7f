"""`make demo`: the bundled sandbox, a throw-away Airflow home, `airflow dags test`, a readable report."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".demo"
DAG_ID = "juspay_fulfil_from_upstream"
API_KEY = "sk_demo_not_a_real_key_42"
MERCHANT_ID = "demo_merchant"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sandbox(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "airflow_provider_juspay.testing.sandbox",
            "--port", str(port), "--api-key", API_KEY, "--merchant-id", MERCHANT_ID, "--latency-ms", "20",
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


def sandbox_get(port: int, what: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__sandbox/{what}", timeout=10) as response:
        return json.load(response)


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    home = WORK / "airflow_home"
    home.mkdir(parents=True)
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
    }
    sandbox = start_sandbox(port)
    try:
        print(f"Preparing a throw-away Airflow home in {home} ...")
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )
        print(f"Running `airflow dags test {DAG_ID}` (task log in {WORK / 'dag_test.log'}) ...")
        started = time.monotonic()
        with open(WORK / "dag_test.log", "w") as log:
            done = subprocess.run(
                [sys.executable, "-m", "airflow", "dags", "test", DAG_ID], env=env, stdout=log, stderr=log
            )
        elapsed = time.monotonic() - started
        requests = sandbox_get(port, "requests?last=50")
        print(f"\nWhat Juspay (the sandbox) received and answered, in {elapsed:.1f}s:")
        print(f"  {'order id':<12} {'command':<18} {'status':<8} {'time':<20} answer")
        for r in requests:
            form = r["form"]
            print(
                f"  {r['order_id']:<12} {form.get('fulfillment_command', ''):<18} "
                f"{form.get('fulfillment_status', ''):<8} {form.get('fulfillment_time', '-'):<20} "
                f"HTTP {r['status']}"
            )
        print(f"\nSandbox totals: {sandbox_get(port, 'state')}")
        print("DAG run:", "success" if done.returncode == 0 else f"FAILED (see {WORK / 'dag_test.log'})")
        sys.exit(done.returncode)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


if __name__ == "__main__":
    main()
