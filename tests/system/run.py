"""``make system-test``: the example DAGs on a real Airflow with the CeleryExecutor, driven over REST.

Starts PostgreSQL, Redis, the bundled sandbox (20 ms latency, some 503s and lost replies) and Airflow
(api-server, scheduler, dag-processor, triggerer, two Celery workers) on loopback; runs the nightly sync
on a seeded day (by backfill), reruns it (nothing reaches the sandbox), the sharded sync (shards at the
same time, on both workers), the retry-failed DAG, the XCom DAG, a deferred OrderStatusSensor and a
wrong API key; checks states, reports (XCom over REST), task logs, the asset-triggered reconcile DAG and
that the sandbox accepted every command exactly once; then a headless Chromium checks the connection
form and saves screenshots. Every process is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.testing.sandbox import Faults, Sandbox
from airflow_provider_juspay.testing.warehouse import seed_warehouse
from tests.system.deployment import REPO, Deployment, Rest, say, wait_for

API_KEY = "system_test_secret_key_0123456789"
MERCHANT_ID = "demo_merchant"
#: The day the warehouse holds, relative to the clock (two days back): the nightly sync backfills it, and
#: the hourly retry example, which reads the rows of the week before its run, finds them on any date.
DAY = (datetime.now(timezone.utc) - timedelta(days=2)).date()
#: A second day, pushed only by the sharded sync: four shards with rows to send, at once on both workers.
SHARD_DAY = DAY - timedelta(days=1)
ROWS = 2000


def conn(base_url: str, api_key: str = API_KEY) -> str:
    return json.dumps(
        {
            "conn_type": "juspay",
            "login": MERCHANT_ID,
            "password": api_key,
            "host": base_url,
            "extra": {"max_attempts": 4, "initial_wait": 0.05, "max_wait": 0.5},
        }
    )


def good_keys(warehouse_uri: str) -> set[tuple[str, str]]:
    """(order id, command) of every row of the day the record model takes and Juspay knows."""
    import psycopg2

    with psycopg2.connect(warehouse_uri) as db, db.cursor() as cursor:
        cursor.execute("SELECT * FROM fulfilments")
        columns = [c[0] for c in cursor.description]
        keys = set()
        for row in cursor.fetchall():
            try:
                record = FulfilmentRecord.from_mapping(dict(zip(columns, row, strict=True)))
            except Exception:
                continue
            keys.add((record.order_id, record.fulfillment_command))
    return keys


def run(screenshots: Path) -> None:
    started = time.monotonic()
    faults = Faults(latency=0.02, error_rate=0.02, drop_after_accept_rate=0.005)
    with Sandbox(
        api_key=API_KEY, merchant_id=MERCHANT_ID, orders={"UNPAID-7": "NEW"}, faults=faults, seed=11
    ) as sandbox:
        say(f"sandbox on {sandbox.base_url} (20 ms latency, 2% 503s, 0.5% lost replies)")
        deployment = Deployment(
            dags=[
                REPO / "dags_examples",
                REPO / "tests" / "system" / "dags",
                REPO / "bench" / "scaleout_dags",
            ],
            connections={
                "juspay_default": conn(sandbox.base_url),
                "juspay_wrong_key": conn(sandbox.base_url, api_key="not-the-key"),
            },
        )
        with deployment:
            _drive(deployment, sandbox, screenshots)
    say(f"all checks passed in {time.monotonic() - started:.0f}s")


def _drive(deployment: Deployment, sandbox: Sandbox, screenshots: Path) -> None:
    import psycopg2

    warehouse_uri = f"{deployment.pg_uri}/warehouse"
    with psycopg2.connect(warehouse_uri) as db:
        seeded = seed_warehouse(db, DAY, ROWS, placeholder="%s")
        sharded_day = seed_warehouse(db, SHARD_DAY, ROWS, placeholder="%s")
    # The second day's orders are all paid: the hourly retry below deals with the first day's refused only.
    unknown = set(seeded.unknown_ids)
    for order_id in unknown:
        sandbox.orders[order_id] = "NOT_FOUND"
    day_keys = good_keys(warehouse_uri)  # both days' valid commands, read once
    expected = {(o, c) for o, c in day_keys if o not in unknown}
    say(
        f"warehouse seeded: {seeded.total} rows of {DAY} ({seeded.good} good, {seeded.unknown} unknown, "
        f"{seeded.bad} bad), and {sharded_day.total} rows of {SHARD_DAY} for the sharded sync"
    )

    rest = Rest(deployment.api)
    names = [
        "juspay_nightly_sync",
        "juspay_reconcile",
        "juspay_sharded_sync",
        "juspay_retry_failed",
        "juspay_bulk_from_xcom",
        "juspay_system_wait_for_payment",
        "juspay_system_wrong_key",
        "juspay_system_partitioned",
    ]
    rest.wait_for_dags(names)
    say("the dag-processor parsed the example and system DAGs")

    # -- the nightly sync of the seeded day, by backfill (Airflow 3's way to sync a past day) ---------
    rest.unpause("juspay_reconcile")
    rest.unpause("juspay_nightly_sync")  # also starts the run of the latest interval (no rows): expected
    rest.call(
        "POST",
        "/backfills",
        json={
            "dag_id": "juspay_nightly_sync",
            "from_date": f"{DAY}T00:00:00Z",
            "to_date": f"{DAY}T00:00:00Z",
            "reprocess_behavior": "none",
            "max_active_runs": 1,
            "dag_run_conf": {},
        },
    )
    nightly = wait_for(
        "the backfill run of the nightly sync",
        lambda: next(
            (
                r
                for r in rest.get("/dags/juspay_nightly_sync/dagRuns", limit=50)["dag_runs"]
                if r["run_type"] == "backfill"
            ),
            None,
        ),
        120,
    )
    run_id = nightly["dag_run_id"]
    state = rest.wait_run("juspay_nightly_sync", run_id, timeout=300)
    report = rest.xcom("juspay_nightly_sync", run_id, "push_fulfilments")
    say(f"nightly sync of {DAY} (backfill {run_id}): {state}; {report['counts']}")
    assert state == "success", deployment.log_tail("scheduler")
    assert report["total"] == seeded.total
    assert report["counts"]["sent"] + report["counts"]["already_fulfilled"] == seeded.good
    assert report["counts"]["rejected"] == seeded.unknown and report["counts"]["invalid"] == seeded.bad
    log = rest.log("juspay_nightly_sync", run_id, "push_fulfilments")
    assert "Juspay fulfilment sync" in log and "outcome" in log, log[-2000:]
    assert API_KEY not in log

    # -- a rerun of the same day: the ledger skips every delivered key ----------------------------------
    before = len(sandbox.requests)
    rest.call(
        "POST",
        "/dags/juspay_nightly_sync/clearTaskInstances",
        json={
            "dag_run_id": run_id,
            "task_ids": ["push_fulfilments", "check_failures"],
            "dry_run": False,
            "only_failed": False,
            "reset_dag_runs": True,
        },
    )
    wait_for(
        "the cleared run to start again",
        lambda: (
            rest.get(f"/dags/juspay_nightly_sync/dagRuns/{run_id}")["state"] in ("queued", "running")
            or len(sandbox.requests) > before
        ),
        60,
        every=0.5,
    )
    state = rest.wait_run("juspay_nightly_sync", run_id, timeout=300)
    again = rest.xcom("juspay_nightly_sync", run_id, "push_fulfilments")
    # The ledger resends only what Juspay refused (the orders it did not know); nothing delivered goes again.
    reached = [r for r in sandbox.requests[before:] if r.method == "POST"]
    delivered_again = [r.order_id for r in reached if r.order_id not in seeded.unknown_ids]
    say(f"rerun of {DAY}: {state}; skipped {again['counts']['skipped']}, {len(reached)} sent (the refused)")
    assert state == "success" and again["counts"]["skipped"] == seeded.good
    assert delivered_again == [], f"{len(delivered_again)} delivered keys sent again on a rerun"
    assert {r.order_id for r in reached} == set(seeded.unknown_ids)

    # -- the reconcile DAG ran on the asset event and read the push's counts --------------------------
    def reconciled() -> dict | None:
        for r in rest.get("/dags/juspay_reconcile/dagRuns", limit=50)["dag_runs"]:
            if r["state"] == "success":
                summary = rest.xcom("juspay_reconcile", r["dag_run_id"], "reconcile")
                if any(p.endswith(run_id) for p in summary["pushes"]):
                    return summary
        return None

    summary = wait_for(
        "a reconcile run triggered by the nightly push's asset event", reconciled, 180, every=3
    )
    say(f"reconcile (asset-triggered) read {len(summary['pushes'])} push(es): total {summary['total']}")
    assert summary["total"] >= seeded.total

    # -- the sharded sync: four shards at once, on both workers ------------------------------------
    rest.unpause("juspay_sharded_sync")
    sharded = rest.trigger("juspay_sharded_sync", logical_date=f"{SHARD_DAY + timedelta(days=1)}T00:00:00Z")
    state = rest.wait_run("juspay_sharded_sync", sharded, timeout=300)
    shards = [t for t in rest.task_instances("juspay_sharded_sync", sharded) if t["task_id"] == "push_shard"]
    hosts = {t["hostname"] for t in shards}
    overlap = max(t["start_date"] for t in shards) < min(t["end_date"] for t in shards)
    reports = [
        rest.xcom("juspay_sharded_sync", sharded, "push_shard", map_index=t["map_index"]) for t in shards
    ]
    totals = [report["total"] for report in reports]
    budgets = [report["pacing"].get("budget") or {} for report in reports]
    say(f"sharded sync: {state}; {len(shards)} on {sorted(hosts)}, overlapping: {overlap}, rows {totals}")
    say(
        "sharded sync: one merchant budget "
        + ", ".join(f"{b.get('key')} share {b.get('share')} of {b.get('tasks')} task(s)" for b in budgets)
    )
    assert state == "success" and len(shards) == 4 and sum(totals) == sharded_day.total
    assert hosts == {"worker1", "worker2"}, hosts
    assert overlap, [(t["start_date"], t["end_date"]) for t in shards]
    # the shards on both workers drew from the merchant's one budget in the ledger's PostgreSQL
    assert len({b.get("key") for b in budgets}) == 1 and None not in {b.get("key") for b in budgets}, budgets
    assert not any(b.get("fallback") for b in budgets), budgets
    assert max(b.get("tasks", 0) for b in budgets) >= 2, budgets

    # -- the hourly retry of failed keys: orders that got paid since are delivered ---------------------
    paid_since = seeded.unknown_ids[: (2 * len(seeded.unknown_ids)) // 3]
    for order_id in paid_since:
        sandbox.orders[order_id] = "CHARGED"
    rest.unpause("juspay_retry_failed")  # starts the run of the latest hour
    retry = wait_for(
        "the retry-failed run", lambda: rest.get("/dags/juspay_retry_failed/dagRuns", limit=5)["dag_runs"], 60
    )
    retry_id = retry[0]["dag_run_id"]
    state = rest.wait_run("juspay_retry_failed", retry_id, timeout=300)
    retried = rest.xcom("juspay_retry_failed", retry_id, "retry_failed")
    say(f"retry-failed: {state}; {retried['counts']}")
    assert state == "success" and retried["counts"]["sent"] + retried["counts"]["already_fulfilled"] == len(
        paid_since
    )
    expected |= {(o, c) for o, c in day_keys if o in paid_since}

    # -- records from XCom ---------------------------------------------------------------------------
    rest.unpause("juspay_bulk_from_xcom")
    xcom_run = rest.trigger("juspay_bulk_from_xcom")
    state = rest.wait_run("juspay_bulk_from_xcom", xcom_run, timeout=300)
    refunds = rest.xcom("juspay_bulk_from_xcom", xcom_run, "start_refunds")
    say(f"bulk from XCom: {state}; {refunds['counts']}")
    assert state == "success" and refunds["counts"]["sent"] + refunds["counts"]["already_fulfilled"] == 200
    expected |= {(f"RET-{i:05d}", "INITIATE_REFUND") for i in range(200)}

    # -- a deferred OrderStatusSensor, resumed by the triggerer when the order is paid -------------------
    rest.unpause("juspay_system_wait_for_payment")
    waiting = rest.trigger("juspay_system_wait_for_payment", conf={"order_id": "UNPAID-7"})

    def deferred() -> bool:
        tis = rest.task_instances("juspay_system_wait_for_payment", waiting)
        return any(t["task_id"] == "wait_until_charged" and t["state"] == "deferred" for t in tis)

    wait_for("the sensor to defer", deferred, 120, every=1)
    say("OrderStatusSensor deferred (UNPAID-7 is NEW); the sandbox now marks it CHARGED")
    sandbox.orders["UNPAID-7"] = "CHARGED"
    state = rest.wait_run("juspay_system_wait_for_payment", waiting, timeout=180)
    say(f"deferred sensor run: {state}")
    assert state == "success"
    expected.add(("UNPAID-7", "NO_ACTION"))

    # -- a wrong API key: fails at its first try, no retries --------------------------------------------
    rest.unpause("juspay_system_wrong_key")
    wrong = rest.trigger("juspay_system_wrong_key")
    state = rest.wait_run("juspay_system_wrong_key", wrong, timeout=180)
    [ti] = rest.task_instances("juspay_system_wrong_key", wrong)
    wrong_log = rest.log("juspay_system_wrong_key", wrong, "fulfil", try_number=ti["try_number"])
    say(f"wrong API key: run {state}, task {ti['state']} at try {ti['try_number']} of {ti['max_tries'] + 1}")
    assert state == "failed" and ti["state"] == "failed" and ti["try_number"] == 1
    assert "refused the credentials" in wrong_log and "not-the-key" not in wrong_log

    # -- a partitioned run (Airflow 3.2+): its asset event carries the partition key and the counts --------
    rest.unpause("juspay_system_partitioned")
    partitioned = rest.trigger("juspay_system_partitioned", partition_key=str(DAY))
    state = rest.wait_run("juspay_system_partitioned", partitioned, timeout=180)
    events = rest.get("/assets/events", source_dag_id="juspay_system_partitioned", source_run_id=partitioned)
    [event] = events["asset_events"]
    say(
        f"partitioned run {state}: asset event with partition key {event.get('partition_key')!r}, "
        f"extra {event['extra']}"
    )
    assert state == "success" and event.get("partition_key") == str(DAY)
    counts = event["extra"]["counts"]
    # A reply the sandbox lost (0.5%) is retried and answered ALREADY_EXISTS: delivered all the same.
    assert event["extra"]["partition_key"] == str(DAY) and counts["sent"] + counts["already_fulfilled"] == 2

    # Unpausing also started the run of today's partition: every run sends its own partition's orders.
    def partition_runs() -> list[dict] | None:
        runs = rest.get("/dags/juspay_system_partitioned/dagRuns", limit=20)["dag_runs"]
        return runs if all(r["state"] in ("success", "failed") for r in runs) else None

    keys = {r["partition_key"] for r in wait_for("the partitioned runs to end", partition_runs, 120)}
    expected |= {(f"PART-{key}-{i}", "NO_ACTION") for key in keys for i in (1, 2)}

    # -- the nightly how-to's journey: a day by hand, a backfill that meets hand runs, a skipped day ------
    expected |= _journey(deployment, rest, warehouse_uri, sandbox)

    # -- the connection test -------------------------------------------------------------------------
    tested = deployment.airflow("connections", "test", "juspay_default").stdout
    say(f"airflow connections test juspay_default: {tested.strip().splitlines()[-1]}")
    assert "success" in tested.lower()

    # -- what Juspay saw -----------------------------------------------------------------------------
    accepted = dict(sandbox.accepted)
    doubles = sandbox.doubles()
    say(
        f"sandbox: {len(sandbox.requests)} requests, {len(accepted)} commands accepted, "
        f"{len(doubles)} POSTed more than once"
    )
    assert doubles == {}, doubles
    assert set(accepted) == expected, (
        sorted(set(accepted) - expected)[:5],
        sorted(expected - set(accepted))[:5],
    )

    # -- the scale-out benchmark, tiny: that it keeps working on this deployment, not how fast -----------
    from bench import scaleout

    measured = scaleout.measure(rest, warehouse_uri, rows=400, shards=(1, 2))
    print(scaleout.report(measured, rows=400), flush=True)

    # -- the browser ---------------------------------------------------------------------------------
    from tests.system.browser import check_docs, check_juspay_page, check_ui

    check_ui(deployment.api, screenshots, nightly_run=run_id)
    with psycopg2.connect(warehouse_uri) as db, db.cursor() as cursor:
        cursor.execute(
            "SELECT task_id, try_number, sent, skipped, state FROM juspay_sync_runs "
            "WHERE dag_id = %s AND run_id = %s ORDER BY try_number",
            ["juspay_nightly_sync", run_id],
        )
        pushes = [
            dict(zip(("task_id", "try_number", "sent", "skipped", "state"), r, strict=True)) for r in cursor
        ]
    say(f"run history of {run_id}: {pushes}")
    first_try, rerun = pushes
    assert (first_try["sent"], rerun["skipped"]) == (report["counts"]["sent"], again["counts"]["skipped"])
    check_juspay_page(
        deployment.api, screenshots, dag_id="juspay_nightly_sync", run_id=run_id, pushes=pushes,
        refused=set(seeded.unknown_ids),
    )  # fmt: skip
    check_docs(REPO / "docs" / "_build" / "html", screenshots)  # `make system-test` builds it first
    say(f"screenshots in {screenshots}")


#: The journey's three days, well before the run the scheduler makes itself when the DAG is unpaused.
JOURNEY = [(datetime.now(timezone.utc) - timedelta(days=d)).date() for d in (12, 11, 10)]


def _journey(deployment: Deployment, rest: Rest, warehouse_uri: str, sandbox: Sandbox) -> set:
    """docs/howto/nightly.md as a user follows it, under the real scheduler, with the CLI it shows:
    day J2 by hand the documented way (its interval given, logical date J2+1 at noon); a hand run at a
    midnight (what
    ``airflow dags test <dag> <J3>`` makes, covering J2); a backfill of J1..J3, which skips J3 (a run
    sits at its logical date); the page's recipe for the skipped day. Every day's rows reach Juspay once.
    """
    import psycopg2

    dag_id = "juspay_system_journey"
    j1, j2, j3 = JOURNEY
    keys: dict = {}
    with psycopg2.connect(warehouse_uri) as db, db.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE journey_fulfilments (order_id TEXT, fulfillment_status TEXT, "
            "fulfillment_command TEXT, fulfillment_time TEXT, updated_at TIMESTAMP)"
        )
        for day in JOURNEY:
            # Rows on the day's edges: its first second and its last, and between.
            times = [f"{day} 00:00:00", f"{day} 12:00:00", f"{day} 23:59:59"] + [
                f"{day} {h:02d}:30:00" for h in range(1, 21)
            ]
            rows = [(f"JOURNEY-{day}-{i:02d}", "SUCCESS", "NO_ACTION", None, t) for i, t in enumerate(times)]
            cursor.executemany("INSERT INTO journey_fulfilments VALUES (%s, %s, %s, %s, %s)", rows)
            keys[day] = {(r[0], "NO_ACTION") for r in rows}

    def accepted_of(day) -> set:
        return keys[day] & sandbox.accepted_keys()

    rest.unpause(dag_id)  # the scheduler's own run of yesterday has no rows of these days
    # 1. Day J2 by hand, as the page's table says: its interval given, at J2+1 noon. (The CLI's
    #    `dags trigger --logical-date` would derive the interval from the time of the call instead.)
    hand_run = rest.trigger(
        dag_id,
        logical_date=f"{j2 + timedelta(days=1)}T12:00:00Z",
        data_interval=(f"{j2}T00:00:00Z", f"{j2 + timedelta(days=1)}T00:00:00Z"),
    )
    assert rest.wait_run(dag_id, hand_run, timeout=300) == "success"
    assert accepted_of(j2) == keys[j2], "day J2 by hand: its rows, the edges included"
    assert not accepted_of(j1) | accepted_of(j3), "by hand at J2+1 noon: day J2 only"
    # 2. The trap: a hand run at a midnight (J3, covering J2: its rows are skipped by the ledger).
    trap = rest.trigger(dag_id, logical_date=f"{j3}T00:00:00Z")
    assert rest.wait_run(dag_id, trap, timeout=300) == "success"
    assert rest.xcom(dag_id, trap, "push_fulfilments")["counts"]["skipped"] == len(keys[j2])
    # 3. The backfill of the three days, with the CLI the page shows; its dry run first, as the page
    #    advises: a day of the range missing from "Runs to be attempted" will be skipped.
    backfill = ["backfill", "create", "--dag-id", dag_id, "--from-date", str(j1), "--to-date", str(j3)]
    dry = deployment.airflow(*backfill, "--dry-run").stdout
    planned = re.findall(r"\d{4}-\d{2}-\d{2}", dry[dry.index("Runs to be attempted") :])
    say(f"journey: backfill --dry-run of {j1}..{j3} plans {planned}")
    assert planned == [str(j1), str(j2)], dry[-2000:]
    deployment.airflow(*backfill)

    def backfill_runs() -> list[dict] | None:
        runs = rest.get(f"/dags/{dag_id}/dagRuns", limit=50)["dag_runs"]
        runs = [r for r in runs if r["run_type"] == "backfill"]
        return runs if len(runs) == 2 and all(r["state"] in ("success", "failed") for r in runs) else None

    runs = wait_for("the backfill's runs", backfill_runs, 300, every=2)
    starts = sorted(r["data_interval_start"][:10] for r in runs)
    say(f"journey: the backfill made runs for {starts}; {j3} was skipped (a hand run sits at its date)")
    assert starts == [str(j1), str(j2)] and {r["state"] for r in runs} == {"success"}, runs
    assert accepted_of(j1) == keys[j1] and not accepted_of(j3), "J3 skipped, without a word"
    # 4. The page's recipe for the skipped day: by hand, its interval given, at D+1 noon.
    fixed = rest.trigger(
        dag_id,
        logical_date=f"{j3 + timedelta(days=1)}T12:00:00Z",
        data_interval=(f"{j3}T00:00:00Z", f"{j3 + timedelta(days=1)}T00:00:00Z"),
    )
    assert rest.wait_run(dag_id, fixed, timeout=300) == "success"
    assert accepted_of(j3) == keys[j3]
    every = set().union(*keys.values())
    twice = {k: n for k, n in sandbox.doubles().items() if k in every}
    say(f"journey: all {len(every)} rows of {j1}..{j3} at Juspay, {len(twice)} POSTed twice")
    assert every <= sandbox.accepted_keys() and twice == {}, twice
    return every


def main() -> None:
    # SIGTERM (a CI timeout, a kill) unwinds like an error, so every process started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", default=str(REPO / "artifacts" / "system-test"))
    args = parser.parse_args()
    screenshots = Path(args.screenshots)
    screenshots.mkdir(parents=True, exist_ok=True)
    run(screenshots)


if __name__ == "__main__":
    main()
