"""The landing page's five minutes, run as a reader types them (tests/docs/quickstart.py takes them from
docs/index.md): a fresh AIRFLOW_HOME and ``airflow db migrate``, the DAG file saved in its DAGs folder,
the sandbox, the connection, ``airflow dags test`` twice; Juspay holds each refund once."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.docs.quickstart import check, run_quickstart
from tests.helpers import API_KEY

pytestmark = pytest.mark.e2e


def why(output: str) -> str:
    """What a failed quickstart said: its error and report lines (Airflow's startup noise left out),
    then its end."""
    telling = re.compile(r"ERROR|Traceback|Error\b|STOPPED|RUN AGAIN|^\s+(sent|failed|not_attempted)\s")
    said = [line for line in output.splitlines() if telling.search(line)]
    return "\n".join(said[-80:]) + "\n...\n" + output[-3000:]


def test_the_quickstart_runs_and_juspay_holds_every_refund_once(tmp_path):
    code, output = run_quickstart(Path(sys.executable).parent, tmp_path)
    assert code == 0, why(output)
    assert check(output) == [], output[-4000:]
    assert API_KEY not in output


def test_the_check_catches_a_second_refund():
    """The oracle: a second run that sent again (200 sent twice) is a failure."""
    twice = "sent  200\nstate=success\nRUN AGAIN\nsent  200\nstate=success\n"
    assert check(twice) == ["the second run's report does not say 200 already_fulfilled"]
