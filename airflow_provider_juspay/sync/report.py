"""The run report, typed (RunReport) and folded from results (ReportBuilder): counts by outcome and error
code, the first failures, and the one pass/fail verdict every task applies. Live progress lines are
``sync.progress``'s."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypedDict

from airflow_provider_juspay.errors import ErrorCode
from airflow_provider_juspay.fulfilment import FulfilmentResult, Outcome
from airflow_provider_juspay.sync.progress import PROGRESS_EVERY_S, PaceSource, Progress, ProgressLog

__all__ = [
    "DEFAULT_MAX_FAILURES_LISTED",
    "PROGRESS_EVERY_S",
    "FailureEntry",
    "ReportBuilder",
    "RunReport",
    "checked_limits",
    "counts_as_failure",
    "failure_groups",
]

DEFAULT_MAX_FAILURES_LISTED = 100


class FailureEntry(TypedDict, total=False):
    """One failed row as the report lists it (and XCom, the notifier and the run history keep it):
    ``order_id``, ``outcome``, ``error_code`` and ``message`` always; ``position`` (where in the
    source) from a push, ``command`` from a summary read back from the ledger."""

    order_id: str | None
    outcome: str
    error_code: str | None
    message: str | None
    position: str | None
    command: str


class ReportBuilder:
    """Folds results into the report of the public contract, logging progress as it goes.

    Keeps counters and at most ``max_failures_listed`` failure entries, so memory does not grow with the run.

    :param total: records expected, when known (gives an ETA in progress lines).
    :param log: where progress lines go; None for silence.
    """

    def __init__(
        self,
        *,
        total: int | None = None,
        dry_run: bool = False,
        max_failures_listed: int = DEFAULT_MAX_FAILURES_LISTED,
        log: ProgressLog | None = None,
        progress_every: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        retries: Callable[[], dict[str, int]] | None = None,
        retried_server_errors: Callable[[], int] | None = None,
    ) -> None:
        self.expected = total
        self.dry_run = dry_run
        self.max_failures_listed = max_failures_listed
        # Every outcome present from the start: the progress thread reads while results come in.
        self.counts: Counter[Outcome] = Counter(dict.fromkeys(Outcome, 0))
        self.errors: Counter[str] = Counter()
        self.failures: list[FailureEntry] = []
        self._log = log
        self._clock = clock
        self._started = clock()
        self._finished: float | None = None
        self.progress = Progress(
            counts=self.counts, elapsed=self._elapsed, expected=total, log=log, every=progress_every,
            clock=clock, retries=retries,
        )  # fmt: skip
        self._retries = retries
        self._retried_server_errors = retried_server_errors
        #: HTTP requests the results took (every attempt), and the final answers that were a 5xx.
        self.requests = 0
        self.server_errors = 0
        self.unread: list[str] = []

    @property
    def pace(self) -> PaceSource | None:
        """The run's pacing, when it has one (the engine sets it): progress lines and the report show it."""
        return self.progress.pace

    @pace.setter
    def pace(self, source: PaceSource | None) -> None:
        self.progress.pace = source

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def add(self, result: FulfilmentResult) -> None:
        """Count one result; log a progress line when one is due."""
        self.counts[result.outcome] += 1
        self.requests += result.attempts
        if result.http_status is not None and result.http_status >= 500:
            self.server_errors += 1
        if counts_as_failure(result.outcome, dry_run=self.dry_run):
            self.errors[result.error_code or result.outcome.value.upper()] += 1
            if len(self.failures) < self.max_failures_listed:
                self.failures.append(
                    {
                        "order_id": result.order_id,
                        "outcome": result.outcome.value,
                        "error_code": result.error_code,
                        "message": result.message,
                        "position": result.position,
                    }
                )
        self.progress.tick()

    def unreadable(self, reason: str) -> None:
        """Note a source (a file) that could not be read, or not to its end: the run is not done."""
        self.unread.append(reason)
        if self._log is not None:
            self._log.info("Could not read %s", reason)

    def heartbeat(self) -> Any:
        """Within the block, a progress line still comes every interval when no result does (a stall)."""
        return self.progress.heartbeat()

    def finish(self, stop: Any = None) -> RunReport:
        """Stop the clock and return the report.

        :param stop: why the run stopped early (``sync.control.Stop``), if it did.
        """
        self._finished = self._clock()
        elapsed = self._elapsed()
        total = self.done
        return RunReport(
            total=total,
            counts={outcome.value: self.counts.get(outcome, 0) for outcome in Outcome},
            errors=dict(self.errors.most_common()),
            failures=list(self.failures),
            duration_s=round(elapsed, 3),
            records_per_s=round(total / elapsed, 1) if elapsed > 0 else 0.0,
            dry_run=self.dry_run,
            retries=self._retries() if self._retries else {},
            stopped={"error_code": stop.error_code, "message": stop.message} if stop else None,
            unread=list(self.unread),
            pacing=self.pace.pacing() if self.pace is not None else {},
            requests=self.requests,
            server_errors=self.server_errors
            + (self._retried_server_errors() if self._retried_server_errors else 0),
        )

    def progress_line(self) -> str:
        return self.progress.line()

    def _elapsed(self) -> float:
        return (self._finished if self._finished is not None else self._clock()) - self._started


#: Error code of a delivered key whose payload changed, under ``on_change="fail"``.


#: Stops a retry cannot help: a person fixes the connection first.
_FIX_FIRST = frozenset({ErrorCode.UNAUTHORIZED.value, ErrorCode.UNEXPECTED_RESPONSES.value})


def counts_as_failure(outcome: Outcome, *, dry_run: bool) -> bool:
    """The one definition of a failure: rejected, failed, invalid or not attempted (a dry run's
    ``not_attempted`` rows are the ones it would send, so there they are not failures)."""
    return outcome.is_failure and not (dry_run and outcome is Outcome.NOT_ATTEMPTED)


@dataclass(kw_only=True)
class RunReport:
    """The report of one run (or of several, merged): the only place that counts failures, works out
    their ratio and decides pass or fail. Its JSON form (:meth:`to_dict`) is the XCom value users read.
    """

    total: int = 0
    #: Every outcome, summing to ``total``.
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((o.value for o in Outcome), 0))
    errors: dict[str, int] = field(default_factory=dict)
    failures: list[FailureEntry] = field(default_factory=list)
    duration_s: float = 0.0
    records_per_s: float = 0.0
    dry_run: bool = False
    retries: dict[str, int] = field(default_factory=dict)
    #: Why the run stopped early (``{"error_code", "message"}``), or None.
    stopped: dict[str, str] | None = None
    #: Keys still in flight in a live run (a ledger's view; 0 for a finished run).
    in_flight: int = 0
    #: Sources (files) that could not be read, or not to their end, each with where and why.
    unread: list[str] = field(default_factory=list)
    #: Where every failure was written (``failures_path``): ``{"path": url, "rows": n}``, or None.
    failures_export: dict[str, Any] | None = None
    #: What pacing found: ``mode`` (adaptive | fixed), ``peak_concurrency``, ``final_concurrency``,
    #: ``latency_ms``, ``throttled`` (429s), ``paused_s``, and ``budget`` when the run drew from the
    #: merchant's shared budget (``key``, ``share``, ``merchant_sent_per_s``, ``merchant_rate``, ``tasks``,
    #: ``cuts``, ``queries_per_s``, ``query_ms``, ``fallback``); empty for a dry run. The run's rate is
    #: ``records_per_s``.
    pacing: dict[str, Any] = field(default_factory=dict)
    #: HTTP requests sent (every attempt of every record), and those Juspay answered with a 5xx.
    requests: int = 0
    server_errors: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        """Read back the JSON form (from XCom); keys a newer release added are ignored."""
        known = {f.name for f in fields(cls)}
        report = cls(**{k: v for k, v in data.items() if k in known})
        report.counts = {**dict.fromkeys((o.value for o in Outcome), 0), **report.counts}
        return report

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the documented keys, plus ``failure_count`` and ``failure_ratio``."""
        return {**asdict(self), "failure_count": self.failure_count, "failure_ratio": self.failure_ratio}

    @property
    def failure_count(self) -> int:
        return sum(n for name, n in self.counts.items() if _is_failure(name, self.dry_run))

    @property
    def failure_ratio(self) -> float:
        """Failures over all rows; 0 for an empty run."""
        return self.failure_count / self.total if self.total else 0.0

    @classmethod
    def merge(cls, reports: Iterable[RunReport], *, max_failures_listed: int | None = None) -> RunReport:
        """One report of several runs (a mapped sync's shards): counts, errors and retries added up."""
        merged = cls()
        reports = list(reports)
        for one in reports:
            merged.total += one.total
            for key, n in one.counts.items():
                merged.counts[key] = merged.counts.get(key, 0) + n
            for target, source in ((merged.errors, one.errors), (merged.retries, one.retries)):
                for key, n in source.items():
                    target[key] = target.get(key, 0) + n
            merged.failures += one.failures
            merged.duration_s = max(merged.duration_s, one.duration_s)
            merged.records_per_s += one.records_per_s
            merged.in_flight += one.in_flight
            merged.stopped = merged.stopped or one.stopped
            merged.unread += one.unread
            merged.requests += one.requests
            merged.server_errors += one.server_errors
            merged.pacing = _merged_pacing(merged.pacing, one.pacing)
            if one.failures_export:
                mine = merged.failures_export or {"path": "", "rows": 0}
                paths = [p for p in (mine["path"], one.failures_export["path"]) if p]
                merged.failures_export = {
                    "path": "; ".join(paths),
                    "rows": mine["rows"] + one.failures_export["rows"],
                }
        merged.dry_run = bool(reports) and all(r.dry_run for r in reports)
        if max_failures_listed is not None:
            merged.failures = merged.failures[:max_failures_listed]
        return merged

    def undone(self) -> str | None:
        """Why the run is not done whatever the limits: rows it should have delivered and did not.

        ``failed`` rows (transient errors outlived the retries) and ``not_attempted`` ones (the run
        stopped first) are not delivered, and an Airflow retry would deliver them. A dry run never is.
        """
        if self.unread:
            return (
                f"{len(self.unread)} source file(s) could not be read to the end "
                f"({'; '.join(self.unread[:3])}); the rows read were pushed; fix or replace the file and "
                "clear the task"
            )
        if self.dry_run:
            return None
        counts = self.counts
        if self.stopped:
            return (
                f"the run stopped early ({self.stopped['error_code']}: {self.stopped['message']}); "
                f"{counts['not_attempted']} records were not attempted"
            )
        failed, unsent = counts["failed"], counts["not_attempted"]
        if failed or unsent:
            return f"{failed} records failed and {unsent} were not attempted: they were not delivered"
        return None

    def retry_helps(self, *, min_rows: int | None = None) -> bool:
        """Whether an Airflow retry (or, with a ledger, the next run) could deliver more: rows that failed
        or were not attempted, a file not read to its end, fewer rows than ``min_rows``, a run stopped by
        Juspay's overload or a lost lease. Not when Juspay refused the credentials or something else
        answered (fix first), nor for rows refused or invalid: the same rows get the same answers."""
        stopped = (self.stopped or {}).get("error_code")
        if stopped in _FIX_FIRST:
            return False
        counts = self.counts
        too_few = min_rows is not None and self.total < min_rows
        return bool(stopped or counts["failed"] or counts["not_attempted"] or self.unread or too_few)

    def nothing_done(self) -> str | None:
        """Why the run did nothing at all: every row refused and none held, or every row invalid.

        A wrong merchant, environment or query looks like this. It is the verdict when no limit is given.
        """
        counts = self.counts
        if self.total and counts["invalid"] == self.total:
            return f"every one of the {self.total} records was invalid"
        if self.dry_run:
            return None
        held = sum(counts[o.value] for o in Outcome if o.is_delivered or o in _HELD)
        if counts["rejected"] and not held:
            return f"Juspay refused every one of the {counts['rejected']} records sent, and none is delivered"
        return None

    def verdict(
        self,
        *,
        max_failures: int | None = None,
        max_failure_ratio: float | None = None,
        min_rows: int | None = None,
    ) -> str | None:
        """Why the run cannot be called done, or None: the one pass/fail rule of every task.

        In order: undelivered rows (:meth:`undone`), whatever the limits; fewer rows read than
        ``min_rows``; delivered fulfilments that changed (``on_change="fail"``); then the failures against
        ``max_failures`` (a count) and ``max_failure_ratio`` (a share), each checked when given. With
        neither given, no failure is allowed, on every task (said as :meth:`nothing_done` when it fits).
        """
        if reason := self.undone():
            return reason
        if min_rows is not None and self.total < min_rows:
            return f"the source read {self.total} rows, fewer than min_rows={min_rows}"
        if changed := self.errors.get(ErrorCode.CHANGED_AFTER_DELIVERY):
            return f"{changed} delivered fulfilments changed since (on_change='fail')"
        failures, ratio = self.failure_count, self.failure_ratio
        if max_failures is None and max_failure_ratio is None:
            if failures:  # the clearer sentence when the run did nothing at all
                return self.nothing_done() or (
                    f"{failures} of {self.total} records failed ({ratio:.1%}) and no limit was given, so "
                    "none is allowed: pass max_failures or max_failure_ratio to allow some"
                )
            return None
        over = []
        if max_failures is not None and failures > max_failures:
            over.append(f"max_failures={max_failures}")
        if max_failure_ratio is not None and ratio > max_failure_ratio:
            over.append(f"max_failure_ratio={max_failure_ratio:.1%}")
        if over:
            return f"{failures} of {self.total} records failed ({ratio:.1%}), over {' and '.join(over)}"
        return None

    def counts_only(self) -> dict[str, Any]:
        """The few numbers an event carries (an asset event's extra): no failure list, no timings."""
        return {
            "total": self.total,
            "counts": dict(self.counts),
            "failure_count": self.failure_count,
            "failure_ratio": round(self.failure_ratio, 6),
            "dry_run": self.dry_run,
        }

    def summary(self, *, failures_shown: int = 5) -> str:
        """A short message for people: outcomes seen, the top error codes, the first failed orders."""
        seen = ", ".join(f"{name} {n}" for name, n in self.counts.items() if n) or "no rows"
        lines = [f"{self.total} records: {seen}" + (" (dry run)" if self.dry_run else "")]
        if self.stopped:
            lines.append(f"stopped early ({self.stopped['error_code']}): {self.stopped['message']}")
        lines += [f"unread: {reason}" for reason in self.unread[:3]]
        if self.failures_export:
            lines.append(f"every failure ({self.failures_export['rows']}) in {self.failures_export['path']}")
        if self.errors:
            top = sorted(self.errors.items(), key=lambda kv: -kv[1])[:3]
            lines.append("top errors: " + ", ".join(f"{code} {n}" for code, n in top))
        groups = failure_groups(self.failures, ids_shown=min(IDS_SHOWN, failures_shown))
        lines += [f"- {line}" for line in groups[:failures_shown]]
        if len(groups) > failures_shown or self.failure_count > len(self.failures[:failures_shown]):
            lines.append(f"({self.failure_count} failures in all)")
        return "\n".join(lines)

    def format(self, *, failures_shown: int = 10) -> str:
        """The end-of-run table: outcomes, error codes, retries and the first failures."""
        lines = [
            f"Juspay fulfilment sync{' (DRY RUN: nothing sent)' if self.dry_run else ''}: "
            f"{self.total} records in {self.duration_s:.1f}s ({self.records_per_s:.0f}/s)",
            f"  {'outcome':<18}{'count':>10}",
        ]
        lines += [f"  {name:<18}{count:>10}" for name, count in self.counts.items()]
        if not self.total and not self.unread:
            lines.insert(1, "  NO ROWS: the source read nothing, so nothing was sent")
        if self.stopped:
            lines.insert(1, f"  STOPPED EARLY ({self.stopped['error_code']}): {self.stopped['message']}")
        if self.errors:
            lines.append(f"  {'error code':<30}{'count':>10}")
            lines += [f"  {code:<30}{count:>10}" for code, count in self.errors.items()]
        if self.retries:
            lines.append("  retries: " + ", ".join(f"{cause} {n}" for cause, n in self.retries.items()))
        if self.pacing:
            shown = {name: value for name, value in self.pacing.items() if name != "budget"}
            lines.append("  pacing: " + ", ".join(f"{name} {value}" for name, value in shown.items()))
            if budget := self.pacing.get("budget"):
                lines.append("  " + budget_line(budget))
        lines += [f"  UNREAD: {reason}" for reason in self.unread]
        if self.failures_export:
            lines.append(
                f"  all {self.failures_export['rows']} failures written to {self.failures_export['path']}"
            )
        if self.failures:
            lines.append(f"  first failures (of {self.failure_count}):")
            lines += [f"    {line}" for line in failure_groups(self.failures)[:failures_shown]]
        return "\n".join(lines)


_HELD = frozenset({Outcome.SKIPPED, Outcome.HELD_ELSEWHERE})


def budget_line(budget: Mapping[str, Any]) -> str:
    """The shared budget a run drew from, in words: ``budget api.juspay.in/m1: this run 25% of the
    merchant's 392/s (4 tasks drawing; found 405/s, 2 cuts here, 8.1 DB queries/s)``."""
    if budget.get("fallback"):
        return f"budget {budget.get('key')}: unreachable, this run paced itself ({budget['fallback']})"
    share = budget.get("share")
    total = budget.get("merchant_sent_per_s")
    words = f"budget {budget.get('key')}: this run " + (
        f"{share:.0%} of " if share is not None else "drew from "
    )
    words += f"the merchant's {total:.0f}/s" if total is not None else "the merchant's rate"
    details = [f"{budget.get('tasks', 1)} task(s) drawing"]
    if budget.get("merchant_rate") is not None:
        details.append(f"found {budget['merchant_rate']:.0f}/s")
    details.append(f"{budget.get('cuts', 0)} cut(s) here")
    if budget.get("queries_per_s") is not None:
        details.append(f"{budget['queries_per_s']} DB queries/s")
    return f"{words} ({', '.join(details)})"


def _merged_pacing(mine: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Shards' pacing: counts and rates added, concurrency peaks and totals added, the mode kept; of a
    shared budget, the shards' shares added (the merchant's rate and tasks are the highest seen)."""
    merged = dict(mine or other)
    if mine and other:
        for name in ("throttled", "peak_concurrency", "final_concurrency"):
            if name in mine or name in other:
                merged[name] = round(mine.get(name, 0) + other.get(name, 0), 1)
        merged["paused_s"] = max(mine.get("paused_s", 0.0), other.get("paused_s", 0.0))
        mine_budget, other_budget = mine.get("budget"), other.get("budget")
        if mine_budget and other_budget:
            budget = dict(mine_budget)
            budget["share"] = round(min(1.0, mine_budget.get("share", 0) + other_budget.get("share", 0)), 3)
            budget["cuts"] = mine_budget.get("cuts", 0) + other_budget.get("cuts", 0)
            for name in ("tasks", "merchant_rate", "merchant_sent_per_s"):
                values = [b[name] for b in (mine_budget, other_budget) if b.get(name) is not None]
                if values:
                    budget[name] = max(values)
            merged["budget"] = budget
    return merged


#: Order ids named in a group of identical failures.
IDS_SHOWN = 5


def failure_groups(failures: Iterable[Mapping[str, Any]], *, ids_shown: int = IDS_SHOWN) -> list[str]:
    """One line per distinct failure (outcome, code, message), in order of first sight: a failure seen
    once reads ``order: outcome code message``; identical ones read once with their count and first ids.

    A message's own row position and order id (``row 5: order X: ...``) are not part of what makes two
    failures identical, so ten rows refused for the same reason read as one line.
    """
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for f in failures:
        groups.setdefault((f["outcome"], f.get("error_code") or "", _reason(f)), []).append(f)
    lines = []
    for (outcome, code, reason), members in groups.items():
        if len(members) == 1:
            f = members[0]
            order = f["order_id"] or "(no order id)"
            lines.append(f"{order}: {outcome} {code} {f.get('message') or ''}".replace("  ", " ").rstrip())
            continue
        first = members[:ids_shown]
        # Rows without an order id are found by where they were read.
        label = "orders" if all(m["order_id"] for m in first) else "first"
        ids = ", ".join(m["order_id"] or m.get("position") or "(no order id)" for m in first)
        more = ", ..." if len(members) > ids_shown else ""
        lines.append(f"{len(members)} x {outcome} {code} {reason} ({label} {ids}{more})".replace("  ", " "))
    return lines


def _reason(failure: Mapping[str, Any]) -> str:
    """The message without the row's position and order id that start it."""
    message = failure.get("message") or ""
    position = failure.get("position")
    if position and message.startswith(f"{position}: "):
        message = message[len(position) + 2 :]
    order = failure.get("order_id")
    if order and message.startswith(f"order {order}: "):
        message = message[len(order) + 8 :]
    return message


def _is_failure(name: str, dry_run: bool) -> bool:
    try:
        outcome = Outcome(name)
    except ValueError:  # a ledger state that is no outcome ("abandoned" is counted as not_attempted)
        return False
    return counts_as_failure(outcome, dry_run=dry_run)


def checked_limits(
    max_failures: int | None, max_failure_ratio: float | None
) -> tuple[int | None, float | None]:
    """The failure limits of a task, checked when the DAG is parsed (see :meth:`RunReport.verdict`)."""
    if max_failures is not None and max_failures < 0:
        raise ValueError(f"max_failures must be >= 0, got {max_failures}")
    if max_failure_ratio is not None and not 0 <= max_failure_ratio <= 1:
        raise ValueError(f"max_failure_ratio must be between 0 and 1, got {max_failure_ratio}")
    return max_failures, max_failure_ratio
