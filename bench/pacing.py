"""Case 7: pacing against a Juspay whose limit is unpublished: fixed 16 workers (the pacing of 0.2),
each task's own adaptive controller (1.0, ``per-task``), and the merchant's budget shared through the
ledger's database (``shared``, SQLite here), on the same servers, in one run.

Servers (the bundled sandbox in a process of its own, changed mid-run and its requests read back with
their times over its admin endpoints): a token bucket of 400/s at 100 ms (429 with ``Retry-After: 1``
beyond it) pushed by 1, 4, 8 and 16 tasks at once; three tasks of one DAG and one of another that
starts 10 s later (the three end at 24 s); its capacity halved mid-run; no limit at 200 ms (16 tasks);
a server that takes 24 requests at once (503 beyond). Each run is drawn as requests per second over
time against the capacity.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from airflow_provider_juspay.client import JuspayClient
from airflow_provider_juspay.config import ClientConfig
from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sync.concurrency import DEFAULT_CEILING, AdaptiveLimit
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.ledger.budget import BudgetStore
from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.pacer import Pacer
from airflow_provider_juspay.sync.report import ReportBuilder
from airflow_provider_juspay.sync.settings import PushSettings
from airflow_provider_juspay.sync.shared_pacing import SharedPacer
from bench.support import API_KEY, MERCHANT_ID, Server, rows, sandbox, table

#: Where the pictures go (the README shows them).
PICTURES = Path(__file__).parent / "results"
PACINGS = ("per-task", "shared")


@dataclass(frozen=True)
class Case:
    """A server and how long to push at it."""

    name: str
    title: str
    seconds: float
    latency: float
    capacity: float | None = None  #: requests/s of the token bucket; None: no limit
    max_in_flight: int | None = None
    shards: int = 1
    #: (after seconds, new capacity): the capacity changes mid-run
    change: tuple[float, float] | None = None
    #: per task, when it starts and ends (seconds); default: all start at 0 and run to the end
    spans: tuple[tuple[float, float], ...] | None = None
    pacings: tuple[str, ...] = PACINGS

    def span(self, i: int) -> tuple[float, float]:
        return self.spans[i] if self.spans is not None else (0.0, self.seconds)

    def capacity_at(self, t: float) -> float | None:
        if self.change is not None and t >= self.change[0]:
            return self.change[1]
        if self.capacity is None and self.max_in_flight is not None:
            return self.max_in_flight / self.latency
        return self.capacity


CASES = (
    Case("cap400", "1 task, capacity 400/s, 100 ms", 24, 0.1, capacity=400, pacings=("fixed", *PACINGS)),
    Case("shards4", "4 tasks, capacity 400/s, 100 ms", 24, 0.1, capacity=400, shards=4),
    Case("shards8", "8 tasks, capacity 400/s, 100 ms", 24, 0.1, capacity=400, shards=8),
    Case("shards16", "16 tasks, capacity 400/s, 100 ms", 24, 0.1, capacity=400, shards=16),
    Case(
        "late",
        "3 tasks (end at 24 s) + 1 from 10 s, 400/s",
        36,
        0.1,
        capacity=400,
        shards=4,
        spans=((0, 24), (0, 24), (0, 24), (10, 36)),
    ),
    Case("halved", "capacity 400/s halved at 12 s, 100 ms", 32, 0.1, capacity=400, change=(12, 200)),
    Case("nolimit", "16 tasks, no limit, 200 ms", 30, 0.2, shards=16),
    Case("cap24", "24 requests at once (503 beyond), 100 ms", 20, 0.1, max_in_flight=24),
)


@dataclass
class Outcome:
    """One pacing on one server: what reached the server when, and the runs' reports."""

    case: Case
    pacing: str
    started: float
    ended: float = 0.0
    reports: list[dict[str, Any]] = field(default_factory=list)
    times: list[tuple[float, int]] = field(default_factory=list)  #: (seconds since start, status)
    orders: list[tuple[float, int, str]] = field(default_factory=list)  #: the same with the order id

    def per_second(self, status: Callable[[int], bool], since: float, until: float) -> float:
        n = sum(1 for t, s in self.times if since <= t < until and status(s))
        return n / max(until - since, 1e-9)

    def share(self, status: int, since: float = 0.0) -> float:
        seen = [s for t, s in self.times if t >= since]
        return sum(1 for s in seen if s == status) / max(len(seen), 1)


def _accepted(status: int) -> bool:
    return status == 200


def run_case(case: Case, pacing: str, scale: float = 1.0) -> Outcome:
    """Push at ``case``'s server with ``pacing`` until its time is up (rows enough for it at capacity)."""
    seconds = case.seconds * scale
    flags: dict[str, object] = {"retry_after": 1.0, "record": True}
    if case.capacity is not None:
        flags["rate_limit"] = case.capacity
    if case.max_in_flight is not None:
        flags["max_in_flight"] = case.max_in_flight
    folder = Path(tempfile.mkdtemp(prefix="juspay-budget-"))
    budget_db = str(folder / "ledger.db")
    with sandbox(latency_ms=case.latency * 1000, **flags) as server:
        outcome = Outcome(case, pacing, time.monotonic())
        deadline = outcome.started + seconds
        if case.change is not None:
            at, capacity = case.change
            threading.Timer(at * scale, _configure, args=(server, {"rate_limit": capacity})).start()
        threads = []
        for i in range(case.shards):
            begin, end = case.span(i)
            source = _until(outcome.started + end * scale, f"{case.name}-{pacing}-{i}")
            threads.append(
                threading.Thread(
                    target=_shard,
                    args=(server, pacing, source, outcome, budget_db, outcome.started + begin * scale),
                )
            )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcome.ended = deadline
        # time.monotonic() is the machine's clock: the sandbox's times compare with this process's.
        received = requests.get(f"{server.base_url}/__sandbox/requests?last=100000000", timeout=60).json()
        outcome.orders = sorted(
            (r["at"] - outcome.started, r["status"] or 0, r["order_id"] or "")
            for r in received
            if r["at"] >= outcome.started
        )
        outcome.times = [(t, s) for t, s, _ in outcome.orders]
    return outcome


def _configure(server: Server, changes: dict[str, object]) -> None:
    requests.post(f"{server.base_url}/__sandbox/configure", json=changes, timeout=10).raise_for_status()


def _until(deadline: float, prefix: str) -> Iterator[dict[str, Any]]:
    """Rows until the deadline: a run is as long as the case, whatever its pace."""
    for row in rows(10**9, prefix):
        if time.monotonic() >= deadline:
            return
        yield row


def _shard(
    server: Server,
    pacing: str,
    source: Iterator[dict[str, Any]],
    outcome: Outcome,
    budget_db: str,
    start_at: float,
) -> None:
    time.sleep(max(0.0, start_at - time.monotonic()))
    config = ClientConfig(
        base_url=server.base_url, merchant_id=MERCHANT_ID, api_key=API_KEY, pool_size=DEFAULT_CEILING
    )
    with JuspayClient(config) as client:
        limiter = AdaptiveLimit() if pacing != "fixed" else None
        pacer: Pacer | SharedPacer = Pacer(None)
        if pacing == "shared":
            pacer = _shared_pacer(budget_db, server.base_url)
        control = RunControl(pacer=pacer, limiter=limiter, max_pause=30.0)
        report = push(
            source,
            report=ReportBuilder(),
            make_record=FulfilmentRecord.from_mapping,
            client=client,
            control=control,
            settings=PushSettings(max_concurrency=DEFAULT_CEILING if limiter else 16),
        ).report
    if isinstance(pacer, SharedPacer):
        pacer.close()
    outcome.reports.append(report.to_dict())


def _shared_pacer(path: str, base_url: str) -> SharedPacer:
    """A task's pacer over the merchant's budget in the SQLite file at ``path`` (its own connection)."""
    db = Database(sqlite3.connect(path, check_same_thread=False))
    db.limit_statements(2.0)
    db.let_readers_write_beside()
    store = BudgetStore(db, "juspay_fulfilment_ledger", f"{base_url}/{MERCHANT_ID}")
    store.ensure()
    return SharedPacer(store, member=uuid.uuid4().hex)


@dataclass(frozen=True)
class Figures:
    """What a case's goals are judged on."""

    steady: float  #: accepted/s in the second half (after the change, 10 s on), over the capacity then
    throttled: float  #: share of requests answered 429, in steady state
    throttled_all: float  #: the same over the whole run (with the first second's burst)
    shed: float  #: share answered 503
    failed: int  #: rows not delivered
    peak: int  #: highest concurrency (adaptive), or the fixed 16
    final: int
    queries: float | None  #: statements on the budget's database per task per second (shared only)
    query_ms: float | None  #: their mean time: what a worker that takes a batch waits
    ms_per_request: float | None  #: the statements' time over the requests they paced
    late_share_s: float | None  #: the late task: seconds from its start to a 1 s rate >= 80% of its share
    after_end: float | None  #: the late task alone, after the others ended: its rate over the capacity


def figures(outcome: Outcome) -> Figures:
    case = outcome.case
    end = outcome.ended - outcome.started
    since = end / 2
    if case.change is not None:
        since = case.change[0] * (end / case.seconds) + 10 * (end / case.seconds)
    capacity = case.capacity_at(since)
    steady = outcome.per_second(_accepted, since, end)
    counts = [r["counts"] for r in outcome.reports]
    failed = sum(c["failed"] + c["rejected"] + c["invalid"] + c["not_attempted"] for c in counts)
    pacing = [r.get("pacing", {}) for r in outcome.reports]
    peak = sum(p.get("peak_concurrency", 16) for p in pacing)
    final = sum(p.get("final_concurrency", 16) for p in pacing)
    budgets = [p["budget"] for p in pacing if "budget" in p]
    late_share_s = after_end = None
    if case.spans is not None and case.capacity:
        scale = end / case.seconds
        begin, last = case.span(case.shards - 1)
        others_end = max(case.span(i)[1] for i in range(case.shards - 1))
        share = case.capacity / case.shards
        late = f"{case.name}-{outcome.pacing}-{case.shards - 1}-"
        times = [t for t, s, order in outcome.orders if s == 200 and order.startswith(late)]
        t = begin * scale
        while t < others_end * scale:
            if sum(1 for x in times if t <= x < t + 1) >= 0.8 * share:
                late_share_s = t + 1 - begin * scale
                break
            t += 0.25
        window = (others_end * scale + 2, last * scale)
        after_end = sum(1 for x in times if window[0] <= x < window[1]) / max(window[1] - window[0], 1e-9)
        after_end /= case.capacity
    return Figures(
        steady=steady / capacity if capacity else steady,
        throttled=outcome.share(429, since),
        throttled_all=outcome.share(429),
        shed=outcome.share(503, since),
        failed=failed,
        peak=peak,
        final=final,
        queries=sum(b["queries_per_s"] for b in budgets) / len(budgets) if budgets else None,
        query_ms=sum(b["query_ms"] for b in budgets) / len(budgets) if budgets else None,
        ms_per_request=sum(b["ms_per_request"] for b in budgets) / len(budgets) if budgets else None,
        late_share_s=late_share_s,
        after_end=after_end,
    )


def draw(case: Case, outcomes: list[Outcome], folder: Path = PICTURES) -> Path | None:
    """Requests per second over time against the capacity, one line per pacing; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(8, 3.6))
    longest = max(o.ended - o.started for o in outcomes)
    bins = [i * 0.5 for i in range(int(longest / 0.5) + 1)]
    colours = ("tab:orange", "tab:blue", "tab:green")[-len(outcomes) :]
    for outcome, colour in zip(outcomes, colours, strict=False):
        accepted = [outcome.per_second(_accepted, b, b + 0.5) for b in bins]
        refused = [outcome.per_second(lambda s: s in (429, 503), b, b + 0.5) for b in bins]
        axes.plot(bins, accepted, color=colour, label=f"{outcome.pacing}: accepted/s")
        axes.plot(bins, refused, color=colour, linestyle=":", label=f"{outcome.pacing}: 429/503 per s")
        if case.spans is not None:  # the task that starts late: does it get its share, then all?
            late = f"{case.name}-{outcome.pacing}-{case.shards - 1}-"
            times = [t for t, status, order in outcome.orders if status == 200 and order.startswith(late)]
            own = [sum(1 for t in times if b <= t < b + 0.5) / 0.5 for b in bins]
            axes.plot(
                bins, own, color=colour, linestyle="-.", label=f"{outcome.pacing}: the late task's accepted/s"
            )
    capacity = [case.capacity_at(b) for b in bins]
    if any(c is not None for c in capacity):
        axes.plot(bins, capacity, color="black", linestyle="--", label="capacity")
    axes.set_title(f"Pacing: {case.title}")
    axes.set_xlabel("seconds")
    axes.set_ylabel("requests per second")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pacing_{case.name}.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def run(
    names: tuple[str, ...] = tuple(c.name for c in CASES), scale: float = 1.0, pictures: Path = PICTURES
) -> str:
    """Every case, both pacings, one table; ``scale`` shortens the runs (the smoke test uses 0.1)."""
    lines = []
    rows_: list[tuple] = []
    for case in (c for c in CASES if c.name in names):
        outcomes = [run_case(case, pacing, scale) for pacing in case.pacings]
        picture = draw(case, outcomes, pictures)
        for outcome in outcomes:
            f = figures(outcome)
            rows_.append(
                (
                    f"{case.title}: {outcome.pacing}",
                    f"{f.steady:.0%}" if case.capacity_at(0) else f"{f.steady:.0f}/s",
                    f"{f.throttled:.2%}",
                    f"{f.throttled_all:.2%}",
                    f"{f.shed:.2%}",
                    f.failed,
                    f.peak,
                    f.final,
                    "-" if f.queries is None else f"{f.queries:.1f}",
                    "-" if f.query_ms is None else f"{f.query_ms:.1f}",
                    "-" if f.ms_per_request is None else f"{f.ms_per_request:.2f}",
                    "-" if f.late_share_s is None else f"{f.late_share_s:.1f} s",
                    "-" if f.after_end is None else f"{f.after_end:.0%}",
                )
            )
        if picture is not None:
            lines.append(f"  picture: {picture}")
    header = (
        "case: pacing",
        "steady of capacity",
        "429 steady",
        "429 whole run",
        "503 steady",
        "not delivered",
        "peak",
        "final",
        "DB q/s/task",
        "DB ms",
        "ms/request",
        "late task at share",
        "last task alone",
    )
    return table("7. Pacing (accepted requests in steady state, against the capacity)", header, rows_) + (
        "\n" + "\n".join(lines) if lines else ""
    )


if __name__ == "__main__":
    import sys

    print(run(tuple(sys.argv[1].split(",")) if len(sys.argv) > 1 else tuple(c.name for c in CASES)))
