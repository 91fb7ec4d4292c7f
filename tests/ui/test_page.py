"""The Juspay page and run tab from the user's side: the nightly example runs under `airflow dags test`,
then Airflow's own API app (with the provider's plugin mounted by its entry point) serves the page to
users logged in by cookie or Bearer token. Anonymous callers get nothing; a user who may not read a DAG
sees none of its runs; rows' text is escaped; no key or password is shown."""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from datetime import timedelta
from html import escape

import pytest

from tests.helpers import API_KEY, DAY, MERCHANT_ID, airflow_dags_test

pytestmark = pytest.mark.e2e

DAG = "juspay_nightly_sync"
LEDGER_PASSWORD = "ledger-pass-9f3c"


@pytest.fixture
def nightly(airflow_db, sandbox, make_warehouse, monkeypatch):
    """The nightly example run twice by hand (sent, then skipped), its ledger in the warehouse file."""
    path, seeded = make_warehouse(120)
    day_by_hand = f"{DAY + timedelta(days=1)}T12:00:00+00:00"
    for _ in range(2):
        done = airflow_dags_test(DAG, sandbox, day_by_hand)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return path, seeded


@pytest.fixture
def airflow_api(airflow_db, monkeypatch):
    """Airflow's API app as its api-server builds it, with per-DAG rights; tokens of alice and bob."""
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.ui.auth.PerDagAuthManager")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "alice:viewer,bob:viewer")
    # a second ledger that cannot be read (nothing listens there): named on the page, its error not
    monkeypatch.setenv("AIRFLOW__JUSPAY__LEDGER_CONN_ID", "warehouse, gone_ledger")
    monkeypatch.setenv(
        "AIRFLOW_CONN_GONE_LEDGER", f"postgresql://juspay:{LEDGER_PASSWORD}@127.0.0.1:1/ledger"
    )
    from airflow.api_fastapi.app import create_app, get_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    purge_cached_app()
    app = create_app(apps="core")
    tokens = {
        name: get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=name, role="viewer"))
        for name in ("alice", "bob")
    }
    with TestClient(app) as client:
        yield client, tokens
    purge_cached_app()


def cookie(token: str) -> dict[str, str]:
    """The UI's session cookie, as the browser sends it."""
    return {"Cookie": f"_token={token}"}


def ledger_rows(path, sql):
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def cells(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_page_and_run_tab_show_what_juspay_accepted_and_rejected(nightly, airflow_api, sandbox):
    path, seeded = nightly
    client, tokens = airflow_api
    page = client.get("/juspay/", headers=cookie(tokens["alice"]))  # the UI's cookie
    assert page.status_code == 200, page.text[:500]
    text = cells(page.text)
    accepted = len(sandbox.accepted_keys())
    assert accepted == seeded.good, "the sandbox's own count"
    (first, again) = ledger_rows(
        path, "SELECT run_id, sent, skipped FROM juspay_sync_runs ORDER BY started_at"
    )
    assert (first[1], again[2]) == (accepted, accepted)
    # the recent runs, newest first: the rerun skipped every order the first run sent
    runs = re.findall(r"<tr>\s*<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>(.*?)</tr>", page.text, re.S)
    assert len(runs) == 2 and all(DAG in r for r in runs)
    assert f"{accepted:,}" in cells(runs[1]) and "success" in runs[0]
    assert "RESOURCE_NOT_FOUND" in text, "the top failure reason"
    assert f"{seeded.unknown:,}" in cells(page.text.split("Top failure reasons")[1].split("</table>")[0])
    assert "<svg" in page.text and f"delivered {accepted:,}" in page.text, "the day's bar says its counts"
    assert f"/dags/{DAG}/runs/" in page.text, "each run links to its Airflow page"

    bearer = {"Authorization": f"Bearer {tokens['alice']}"}  # what scripts and the REST API send
    tab = client.get("/juspay/run", params={"dag_id": DAG, "run_id": first[0]}, headers=bearer)
    assert tab.status_code == 200, tab.text[:500]
    assert "push_fulfilments" in tab.text and f"{accepted:,}" in cells(tab.text), "the first run sent them"
    budget = rf"budget {re.escape(sandbox.base_url.split('//')[1])}/{MERCHANT_ID}: \d+% of \d+/s, 1 task\(s\)"
    assert re.search(budget, tab.text), "the pacing cell names the merchant's budget the push drew from"
    failed_first = tab.text.split("Failed in push_fulfilments, try 1")[1].split("</table>")[0]
    assert all(escape(order) in failed_first for order in seeded.unknown_ids), "its own failures, kept"
    # the rerun sent the rejected orders again: the ledger holds their latest attempt, under the rerun
    last = client.get("/juspay/run", params={"dag_id": DAG, "run_id": again[0]}, headers=bearer)
    query = "SELECT order_id, error_code FROM juspay_fulfilment_ledger WHERE state = 'rejected'"
    rejected = dict(ledger_rows(path, query))
    assert len(rejected) == seeded.unknown > 0
    for order, code in rejected.items():
        assert re.search(rf"{re.escape(escape(order))}.*?{code}", last.text, re.S), order
    assert f"{seeded.unknown} still undelivered" in last.text
    assert "Ledger gone_ledger:juspay_fulfilment_ledger could not be read (OperationalError)" in text
    for secret in (API_KEY, LEDGER_PASSWORD, "127.0.0.1:1", "port 1"):
        assert all(secret not in r.text for r in (page, tab, last))


def test_anonymous_callers_get_nothing_and_bob_sees_no_run_of_a_dag_he_may_not_read(nightly, airflow_api):
    client, tokens = airflow_api
    run_id = ledger_rows(nightly[0], "SELECT run_id FROM juspay_sync_runs")[0][0]
    tab = {"dag_id": DAG, "run_id": run_id}
    for path, params in (("/juspay/", None), ("/juspay/run", tab)):
        anonymous = client.get(path, params=params)
        assert anonymous.status_code == 401 and DAG not in anonymous.text
        forged = client.get(path, params=params, headers={"Authorization": "Bearer not-a-token"})
        assert forged.status_code in (401, 403) and DAG not in forged.text
        assert client.post(path, params=params, headers=cookie(tokens["alice"])).status_code == 405
    bobs = client.get("/juspay/", headers=cookie(tokens["bob"]))
    assert bobs.status_code == 200 and DAG not in bobs.text and "RESOURCE_NOT_FOUND" not in bobs.text
    assert client.get("/juspay/run", params=tab, headers=cookie(tokens["bob"])).status_code == 403
    alices = client.get("/juspay/", headers=cookie(tokens["alice"]))
    assert DAG in alices.text, "the same page shows it to a user who may read it"


def test_every_value_from_a_row_is_escaped(nightly, airflow_api):
    path, _ = nightly
    client, tokens = airflow_api
    hostile = "<script>alert(1)</script>"
    with closing(sqlite3.connect(path)) as db:
        db.execute(
            "UPDATE juspay_sync_runs SET error = ?, stop_reason = ?",
            [hostile, '"><img src=x onerror=alert(2)>'],
        )
        db.execute("UPDATE juspay_fulfilment_ledger SET message = ? WHERE state = 'rejected'", [hostile])
        db.execute(
            "UPDATE juspay_sync_runs SET failures = ?",
            [json.dumps([{"order_id": hostile, "message": hostile}])],
        )
        db.commit()
    run_id = ledger_rows(path, "SELECT run_id FROM juspay_sync_runs")[0][0]
    for response in (
        client.get("/juspay/", headers=cookie(tokens["alice"])),
        client.get("/juspay/run", params={"dag_id": DAG, "run_id": run_id}, headers=cookie(tokens["alice"])),
    ):
        assert response.status_code == 200
        assert hostile not in response.text and "<img src=x" not in response.text
        assert escape(hostile) in response.text, "shown, as text"
        assert "script-src 'nonce-" in response.headers["content-security-policy"]


def test_the_page_stays_closed_when_airflow_cannot_check_the_caller(monkeypatch):
    """No auth check importable: every route answers 503, whatever the caller sends."""
    import sys

    from fastapi.testclient import TestClient

    from airflow_provider_juspay.ui.app import create_app

    monkeypatch.setitem(sys.modules, "airflow.api_fastapi.core_api.security", None)  # import fails
    client = TestClient(create_app())
    for path in ("/", "/run?dag_id=a&run_id=b"):
        response = client.get(path, headers={"Authorization": "Bearer anything"})
        assert response.status_code == 503 and "cannot check who you are" in response.text


def test_the_ledgers_come_from_the_juspay_config_section(monkeypatch):
    from airflow_provider_juspay.ui.app import ledger_sources

    monkeypatch.setenv("AIRFLOW__JUSPAY__LEDGER_CONN_ID", " warehouse , finance:analytics.ledger,")
    monkeypatch.setenv("AIRFLOW__JUSPAY__LEDGER_TABLE", "ops.juspay_ledger")
    assert ledger_sources() == [("warehouse", "ops.juspay_ledger"), ("finance", "analytics.ledger")]
    monkeypatch.delenv("AIRFLOW__JUSPAY__LEDGER_TABLE")
    assert ledger_sources()[0] == ("warehouse", "juspay_fulfilment_ledger")
    monkeypatch.delenv("AIRFLOW__JUSPAY__LEDGER_CONN_ID")
    assert ledger_sources() == []


def test_loading_the_plugin_imports_neither_the_page_nor_the_api_servers_security():
    """Workers and schedulers load plugins too: the plugin class costs them no API-server imports."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from airflow_provider_juspay.plugins.juspay import JuspayPlugin\n"
        "assert JuspayPlugin.fastapi_apps and JuspayPlugin.external_views\n"
        "heavy = [m for m in ('airflow.api_fastapi.core_api.security', 'airflow_provider_juspay.ui.app',"
        " 'fastapi') if m in sys.modules]\n"
        "print('loaded:', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded: []" in done.stdout, done.stdout


def test_a_ledger_that_stops_answering_costs_the_page_its_deadline_and_airflow_nothing(
    airflow_api, monkeypatch
):
    """A ledger database that accepts connections and never answers: the page answers 504 at its
    deadline, requests beyond its few threads are refused at once, and Airflow's own API goes on."""
    import socket
    import threading
    import time

    from airflow_provider_juspay.ui import app as page_app

    client, tokens = airflow_api
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])  # accepted, never answered
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    port = silent.getsockname()[1]
    monkeypatch.setenv("AIRFLOW__JUSPAY__LEDGER_CONN_ID", "silent_ledger")
    monkeypatch.setenv("AIRFLOW_CONN_SILENT_LEDGER", f"postgresql://juspay@127.0.0.1:{port}/ledger")
    monkeypatch.setattr(page_app, "PAGE_DEADLINE_S", 1.0)
    try:
        answers = []
        for _ in range(page_app.READ_THREADS + 1):
            began = time.monotonic()
            answer = client.get("/juspay/", headers=cookie(tokens["alice"]))
            answers.append((answer.status_code, time.monotonic() - began))
        assert [code for code, _ in answers] == [504] * page_app.READ_THREADS + [503]
        assert all(took < 5 for _, took in answers), answers
        assert answers[-1][1] < 0.5, "refused at once: every thread still waits on the silent ledger"
        began = time.monotonic()
        assert (
            client.get("/api/v2/version", headers={"Authorization": f"Bearer {tokens['alice']}"}).status_code
            == 200
        )
        assert time.monotonic() - began < 2, "Airflow's own routes are not held by the page's waits"
    finally:
        stop.set()
        for connection in held:
            connection.close()  # the waiting reads end (the driver sees the connection close)
        silent.close()
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and client.get("/juspay/", headers=cookie(tokens["alice"])).status_code == 503
    ):
        time.sleep(0.2)
    assert client.get("/juspay/", headers=cookie(tokens["alice"])).status_code == 200, "the threads came back"
