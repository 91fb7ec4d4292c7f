"""The landing page's five minutes, run as a reader types them: the sandbox command, the connection in
the environment, ``airflow dags test`` of the example DAG, twice; Juspay holds each refund once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.test_snippets import free_port
from tests.helpers import API_KEY, REPO

pytestmark = pytest.mark.e2e

SNIPPET = REPO / "docs" / "snippets" / "quickstart.sh"


def quickstart(port: int) -> str:
    text = SNIPPET.read_text()
    body = re.search(r"# \[START quickstart\]\n(.*?)# \[END quickstart\]", text, re.DOTALL)
    assert body, "the markers the landing page includes"
    return body.group(1).replace("8765", str(port))


def test_the_quickstart_runs_and_juspay_holds_every_refund_once(airflow_db):
    port = free_port()
    state = f"http://127.0.0.1:{port}/__sandbox/state"
    count = (
        f"import json, urllib.request; print('ACCEPTED', json.load(urllib.request.urlopen('{state}'))"
        "['accepted'])"
    )
    script = (
        "set -euo pipefail\n"
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
        + quickstart(port)
        + "echo RUN AGAIN\n"  # the page's promise: a second run sends no second refund
        + "airflow dags test juspay_bulk_from_xcom\n"
        + f'python -c "{count}"\n'
    )
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags_examples"),
        # The reader's shell finds the virtualenv's python and airflow first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "state=success" in output, output[-3000:]
    assert "ACCEPTED 200" in output, "the sandbox accepted the 200 refunds, each once, over both runs"
    first, again = output.split("RUN AGAIN")
    assert re.search(r"\bsent\s+200\b", first), "the first run's report: 200 sent"
    assert re.search(r"\balready_fulfilled\s+200\b", again), "run again: Juspay already has all 200"
    assert "sk_test_demo" not in output and API_KEY not in output, "the task log shows the API key"
