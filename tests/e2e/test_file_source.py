"""Files as a source and the failure export, in real DAG runs: local files, and S3 through moto."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest

from tests.helpers import API_KEY, conn_json, run_dag

pytestmark = pytest.mark.e2e


def write_day(folder, *, good: int = 40, unknown: int = 8, bad: int = 4) -> dict[str, int]:
    """Two CSV files and a gzipped JSON Lines file of one day, plus a marker file that is not read."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"order": f"F-{i:04d}", "status": "SUCCESS"} for i in range(good)]
    rows += [{"order": f"UNKNOWN-{i}", "status": "SUCCESS"} for i in range(unknown)]  # the sandbox knows none
    rows += [{"order": f"BAD-{i}", "status": "DELIVERED"} for i in range(bad)]  # not a status
    thirds = [rows[0::3], rows[1::3], rows[2::3]]
    for name, part in (("a.csv", thirds[0]), ("b.csv", thirds[1])):
        with open(folder / name, "w", newline="") as f:
            writer = csv.DictWriter(f, ["order", "status", "note"])
            writer.writeheader()
            writer.writerows({**r, "note": "not sent"} for r in part)
    with gzip.open(folder / "c.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in thirds[2])
    (folder / "_SUCCESS").write_text("")
    return {"good": good, "unknown": unknown, "bad": bad, "total": len(rows)}


def test_a_days_folder_is_pushed_and_every_failure_is_exported_with_its_file_and_line(
    airflow_db, sandbox, juspay_conn, tmp_path
):
    day = write_day(tmp_path / "drop" / "2026-11-26")
    export = tmp_path / "out" / "failures.jsonl"
    export.parent.mkdir()
    run = run_dag(
        "juspay_test_files",
        {"path": f"file://{tmp_path}/drop/2026-11-26", "failures_path": f"file://{export}"},
    )
    assert run.task_states["push"] == "success"
    report = run.xcom[("push", "return_value")]
    assert report["total"] == day["total"]
    assert report["counts"]["sent"] == day["good"] == len(sandbox.accepted) and sandbox.doubles() == {}
    assert (report["counts"]["rejected"], report["counts"]["invalid"]) == (day["unknown"], day["bad"])

    # The report lists 3 failures; the export holds all 12, each with where its row was read.
    assert len(report["failures"]) == 3
    assert report["failures_export"] == {"path": f"file://{export}", "rows": day["unknown"] + day["bad"]}
    exported = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(exported) == day["unknown"] + day["bad"]
    by_order = {e["order_id"]: e for e in exported}
    assert by_order["UNKNOWN-0"]["outcome"] == "rejected" and by_order["UNKNOWN-0"]["http_status"] == 400
    for e in exported:
        file, _, line = e["position"].rpartition(" line ")
        assert file.startswith(f"file://{tmp_path}/drop/2026-11-26/") and int(line) >= 1
    bad = next(e for e in exported if e["outcome"] == "invalid")
    assert bad["message"].startswith(bad["position"] + ": ") and "fulfillment_status" in bad["message"]
    assert API_KEY not in export.read_text()


def test_a_glob_with_a_ledger_reruns_safely_and_csv_export_works(
    airflow_db, sandbox, juspay_conn, tmp_path, monkeypatch
):
    day = write_day(tmp_path / "drop" / "2026-11-26")
    monkeypatch.setenv(
        "AIRFLOW_CONN_LEDGER", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "l.db")})
    )
    conf = {
        "path": f"{tmp_path}/drop/*/*.csv",  # a plain path is a local file; only the two CSVs match
        "failures_path": f"{tmp_path}/failures.csv",
        "ledger_conn_id": "ledger",
    }
    first = run_dag("juspay_test_files", conf)
    sent_first = first.xcom[("push", "return_value")]["counts"]["sent"]
    assert 0 < sent_first < day["good"]  # two of the three files
    again = run_dag("juspay_test_files", conf).xcom[("push", "return_value")]
    assert again["counts"]["sent"] == 0 and again["counts"]["skipped"] == sent_first
    assert len(sandbox.accepted) == sent_first and sandbox.doubles() == {}
    with open(tmp_path / "failures.csv", newline="") as f:
        exported = list(csv.DictReader(f))
    assert len(exported) == again["failure_count"] and all(".csv line " in e["position"] for e in exported)


def test_a_missing_path_fails_before_sending_and_names_it(airflow_db, sandbox, juspay_conn, tmp_path):
    run = run_dag("juspay_test_files", {"path": f"file://{tmp_path}/nothing/here/*.csv"})
    assert run.task_states["push"] == "failed"
    assert sandbox.requests == []


def test_a_corrupt_file_is_named_the_others_are_delivered_and_the_export_is_complete(
    airflow_db, sandbox, juspay_conn, tmp_path
):
    day = write_day(tmp_path / "d")
    packed = (tmp_path / "d" / "c.jsonl.gz").read_bytes()
    (tmp_path / "d" / "c.jsonl.gz").write_bytes(packed[: len(packed) // 2])  # cut in the middle
    (tmp_path / "d" / "d.jsonl").write_bytes(b'{"order": "D-1", "status": "SUCCESS"}\n{oops\n')
    run = run_dag(
        "juspay_test_files", {"path": str(tmp_path / "d"), "failures_path": str(tmp_path / "f.jsonl")}
    )
    assert run.task_states["push"] == "failed"
    report = run.xcom[("push", "report")]
    assert len(report["unread"]) == 1 and "c.jsonl.gz: cannot be read" in report["unread"][0]
    sent = {r.order_id for r in sandbox.requests if r.status == 200}
    assert "D-1" in sent and report["counts"]["sent"] == len(sent) and sandbox.doubles() == {}
    exported = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert len(exported) == report["failure_count"] == report["failures_export"]["rows"]
    assert any(e["position"].endswith("d.jsonl line 2") for e in exported)
    assert day["good"] > report["counts"]["sent"]


def test_the_failures_of_a_sql_source_can_be_exported_too(
    airflow_db, sandbox, juspay_conn, warehouse, tmp_path
):
    run = run_dag(
        "juspay_test_sql_export",
        {"sql": "SELECT * FROM fulfilments ORDER BY id", "failures_path": str(tmp_path / "f.csv")},
    )
    report = run.xcom[("push", "return_value")]
    with open(tmp_path / "f.csv", newline="") as f:
        exported = list(csv.DictReader(f))
    assert len(exported) == warehouse.unknown + warehouse.bad == report["failures_export"]["rows"]
    assert {e["position"].split(" ")[0] for e in exported} == {"row"}


def test_a_run_without_failures_leaves_no_export_file_and_says_so(
    airflow_db, sandbox, juspay_conn, warehouse, tmp_path, capfd
):
    export = tmp_path / "f.csv"
    export.write_text("order_id\nSTALE-1\n")  # an earlier run's failures at the same path
    good = (
        "SELECT * FROM fulfilments WHERE order_id LIKE 'ORD-%' AND LENGTH(fulfillment_data) < 100 "
        "AND fulfillment_status = 'SUCCESS' AND fulfillment_command <> 'SHIP' AND fulfillment_time LIKE '20%'"
    )
    run = run_dag("juspay_test_sql_export", {"sql": good, "failures_path": str(export)})
    report = run.xcom[("push", "return_value")]
    out = capfd.readouterr().out
    assert report["failure_count"] == 0 and report["counts"]["sent"] > 0, report
    assert not export.exists(), "no empty file, and no earlier run's failures left under this run's path"
    assert report["failures_export"] is None and f"No failures: nothing written to {export}" in out
    assert "failures written to" not in out and "0 failures" not in out


@pytest.fixture
def s3(monkeypatch):
    """An S3-compatible server on loopback (moto) and an Airflow ``aws`` connection to it."""
    pytest.importorskip("moto", reason="the test extra installs moto")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_S3_DROP",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="drops")
    yield client
    server.stop()


def test_files_on_s3_are_pushed_and_the_export_lands_on_s3(airflow_db, sandbox, juspay_conn, s3, tmp_path):
    day = write_day(tmp_path / "local")
    for path in sorted((tmp_path / "local").iterdir()):
        s3.put_object(Bucket="drops", Key=f"fulfilments/2026-11-26/{path.name}", Body=path.read_bytes())
    run = run_dag(
        "juspay_test_files",
        {
            "path": "s3://s3_drop@drops/fulfilments/2026-11-26/",
            "failures_path": "s3://s3_drop@drops/failures/2026-11-26.jsonl",
        },
    )
    assert run.task_states["push"] == "success"
    report = run.xcom[("push", "return_value")]
    assert report["counts"]["sent"] == day["good"] == len(sandbox.accepted)
    body = s3.get_object(Bucket="drops", Key="failures/2026-11-26.jsonl")["Body"].read()
    exported = [json.loads(line) for line in io.BytesIO(body).read().decode().splitlines()]
    assert len(exported) == day["unknown"] + day["bad"]
    assert all(e["position"].startswith("s3://s3_drop@drops/fulfilments/2026-11-26/") for e in exported)


def test_the_courier_csv_example_pushes_the_days_drop_and_writes_its_failures(
    airflow_db, sandbox, warehouse, tmp_path
):
    from datetime import timedelta

    from tests.helpers import DAY, airflow_dags_test

    day = tmp_path / "drops" / DAY.isoformat()
    day.mkdir(parents=True)
    (day / "courier-1.csv").write_text(
        "order_ref,awb,delivered_at,result,driver\n"
        "CSV-1,AWB-1,2026-11-26T10:00:00Z,SUCCESS,Ravi\n"
        "CSV-2,AWB-2,2026-11-26T11:00:00Z,SUCCESS,Ravi\n"
        "UNKNOWN-3,AWB-3,2026-11-26T12:00:00Z,SUCCESS,Asha\n"
        "CSV-4,AWB-4,yesterday,SUCCESS,Asha\n"
    )
    # The run of the 27th at 06:00 covers [26th 06:00, 27th 06:00): data_interval_start | ds is the 26th.
    run_at = f"{(DAY + timedelta(days=1)).isoformat()}T06:00:00+00:00"
    conf = json.dumps({"drop": f"file://{tmp_path}/drops"})
    done = airflow_dags_test("juspay_courier_csv_drop", sandbox, run_at, "--conf", conf)
    # 2 failures of 4 rows is over the example's 5%: the task fails, and says where the list is.
    assert "failures written to" in done.stdout + done.stderr
    sent = {(r.order_id, r.form.get("fulfillment_id")) for r in sandbox.requests if r.status == 200}
    assert sent == {("CSV-1", "AWB-1"), ("CSV-2", "AWB-2")}
    with open(day / "failures" / "juspay_failures.csv", newline="") as f:
        failures = {row["order_id"]: row for row in csv.DictReader(f)}
    assert set(failures) == {"UNKNOWN-3", "CSV-4"}
    assert failures["CSV-4"]["position"].endswith("courier-1.csv line 5")
    assert failures["UNKNOWN-3"]["outcome"] == "rejected"


def test_a_dry_run_over_files_sends_nothing_and_exports_only_the_invalid_rows(
    airflow_db, sandbox, juspay_conn, tmp_path
):
    day = write_day(tmp_path / "d")
    run = run_dag(
        "juspay_test_files_dry_run", {"path": str(tmp_path / "d"), "failures_path": str(tmp_path / "f.jsonl")}
    )
    report = run.xcom[("push", "return_value")]
    assert run.task_states["push"] == "success" and sandbox.requests == []
    assert report["dry_run"] and report["counts"]["not_attempted"] == day["good"] + day["unknown"]
    exported = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [e["outcome"] for e in exported] == ["invalid"] * day["bad"]


def test_a_run_stopped_by_a_refused_key_still_writes_every_row_to_the_export(
    airflow_db, sandbox, tmp_path, monkeypatch
):
    day = write_day(tmp_path / "d")
    wrong = json.loads(conn_json(sandbox.base_url))
    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", json.dumps({**wrong, "password": "not-the-key"}))
    run = run_dag(
        "juspay_test_files", {"path": str(tmp_path / "d"), "failures_path": str(tmp_path / "f.csv")}
    )
    assert run.task_states["push"] == "failed"
    report = run.xcom[("push", "report")]
    assert report["stopped"]["error_code"] == "UNAUTHORIZED"
    with open(tmp_path / "f.csv", newline="") as f:
        exported = list(csv.DictReader(f))
    # Every row read ended a failure (one refused, the rest not attempted, the bad ones invalid): all written.
    assert len(exported) == report["total"] == day["total"] == report["failures_export"]["rows"]
    assert {e["outcome"] for e in exported} == {"failed", "not_attempted", "invalid"}
    assert "not-the-key" not in (tmp_path / "f.csv").read_text()
