"""The run report: counts by outcome and error code, the first failures, pace and progress lines."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from airflow_provider_juspay.fulfilment import FulfilmentResult, Outcome

__all__ = [
    "DEFAULT_MAX_FAILURES_LISTED",
    "PROGRESS_EVERY_S",
    "ReportBuilder",
    "failed_ratio",
    "format_report",
    "nothing_done_reason",
    "undone_reason",
]

DEFAULT_MAX_FAILURES_LISTED = 100
PROGRESS_EVERY_S = 10.0


class ReportBuilder:
    """Folds results into the report of the public contract, logging progress as it goes.

    Keeps counters and at most ``max_failures`` failure entries, so memory does not grow with the run.

    :param total: records expected, when known (gives an ETA in progress lines).
    :param log: where progress lines go; None for silence.
    """

    def __init__(
        self,
        *,
        total: int | None = None,
        dry_run: bool = False,
        max_failures: int = DEFAULT_MAX_FAILURES_LISTED,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        progress_every: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        retries: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.expected = total
        self.dry_run = dry_run
        self.max_failures = max_failures
        # Every outcome present from the start: the heartbeat thread reads while results come in.
        self.counts: Counter[Outcome] = Counter(dict.fromkeys(Outcome, 0))
        self.errors: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []
        self._log = log
        self._every = progress_every
        self._clock = clock
        self._started = clock()
        self._next_progress = self._started + progress_every
        self._finished: float | None = None
        self._retries = retries
        self._stop: Any = None

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def add(self, result: FulfilmentResult) -> None:
        """Count one result; log a progress line when one is due."""
        self.counts[result.outcome] += 1
        if result.outcome.is_failure or (result.outcome is Outcome.NOT_ATTEMPTED and not self.dry_run):
            self.errors[result.error_code or result.outcome.value.upper()] += 1
            if len(self.failures) < self.max_failures:
                self.failures.append(
                    {
                        "order_id": result.order_id,
                        "outcome": result.outcome.value,
                        "error_code": result.error_code,
                        "message": result.message,
                    }
                )
        if self._log is not None and self._clock() >= self._next_progress:
            self._next_progress = self._clock() + self._every
            self._log.info("%s", self.progress_line())

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Within the block, a progress line still comes every interval when no result does (a stall)."""
        if self._log is None:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self._every):
                if self._clock() >= self._next_progress:
                    self._next_progress = self._clock() + self._every
                    self._log.info("%s (waiting for answers)", self.progress_line())

        thread = threading.Thread(target=beat, name="juspay-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def finish(self, stop: Any = None) -> dict[str, Any]:
        """Stop the clock and return the report (JSON-serialisable).

        :param stop: why the run stopped early (``sync.control.Stop``), if it did.
        """
        self._finished = self._clock()
        self._stop = stop
        return self.report()

    def report(self) -> dict[str, Any]:
        elapsed = self._elapsed()
        total = self.done
        return {
            "total": total,
            "counts": {outcome.value: self.counts.get(outcome, 0) for outcome in Outcome},
            "errors": dict(self.errors.most_common()),
            "failures": list(self.failures),
            "duration_s": round(elapsed, 3),
            "records_per_s": round(total / elapsed, 1) if elapsed > 0 else 0.0,
            "dry_run": self.dry_run,
            "retries": self._retries() if self._retries else {},
            "stopped": (
                {"error_code": self._stop.error_code, "message": self._stop.message} if self._stop else None
            ),
        }

    def progress_line(self) -> str:
        elapsed = self._elapsed()
        done = self.done
        rate = done / elapsed if elapsed > 0 else 0.0
        by_outcome = ", ".join(  # only the outcomes seen so far
            f"{o.value} {n}" for o, n in sorted(self.counts.items(), key=lambda kv: kv[0].value) if n
        )
        of = f"/{self.expected}" if self.expected else ""
        line = f"{done}{of} records done ({by_outcome}); {rate:.0f}/s"
        if self.expected and rate > 0:
            line += f"; ETA {max(0.0, (self.expected - done) / rate):.0f}s"
        retries = self._retries() if self._retries else {}
        if retries:
            line += "; retries: " + ", ".join(f"{cause} {n}" for cause, n in retries.items())
        return line

    def _elapsed(self) -> float:
        return (self._finished if self._finished is not None else self._clock()) - self._started


def failed_ratio(report: dict[str, Any]) -> float:
    """(rejected + failed + invalid) / total; 0 for an empty run."""
    counts = report["counts"]
    bad = sum(counts.get(o.value, 0) for o in Outcome if o.is_failure)
    return bad / report["total"] if report["total"] else 0.0


def undone_reason(report: dict[str, Any]) -> str | None:
    """Why a run is not done whatever the user's limits, or None: rows it should have delivered and did not.

    Rows ``failed`` (transient errors outlived the retries) or ``not_attempted`` (the run stopped
    first) are not delivered, and an Airflow retry would deliver them. Every task that judges a run
    applies this rule; a dry run sends nothing and never meets it.
    """
    if report.get("dry_run"):
        return None
    counts = report["counts"]
    if stopped := report.get("stopped"):
        return (
            f"the run stopped early ({stopped['error_code']}: {stopped['message']}); "
            f"{counts['not_attempted']} records were not attempted"
        )
    failed, unsent = counts["failed"], counts["not_attempted"]
    if failed or unsent:
        return f"{failed} records failed and {unsent} were not attempted: they were not delivered"
    return None


def nothing_done_reason(report: dict[str, Any]) -> str | None:
    """Why a run did nothing at all, or None: the default verdict when the user set no failure limit.

    Juspay refused every row it was sent and holds none of the others (none sent, skipped or held by
    another run), or every row was invalid: a wrong merchant, environment or query looks like this.
    With a limit given, data-level refusals (rejected, invalid) are judged by that limit instead.
    """
    counts = report["counts"]
    total = report["total"]
    if total and counts["invalid"] == total:
        return f"every one of the {total} records was invalid"
    if report.get("dry_run"):
        return None
    held = sum(counts[o.value] for o in (Outcome.SENT, Outcome.ALREADY_FULFILLED, Outcome.SKIPPED))
    held += counts[Outcome.HELD_ELSEWHERE.value]
    if counts["rejected"] and not held:
        return f"Juspay refused every one of the {counts['rejected']} records sent, and none is delivered"
    return None


def format_report(report: dict[str, Any], *, failures_shown: int = 10) -> str:
    """The end-of-run table: outcomes, error codes and the first failures."""
    lines = [
        f"Juspay fulfilment sync{' (DRY RUN: nothing sent)' if report['dry_run'] else ''}: "
        f"{report['total']} records in {report['duration_s']:.1f}s ({report['records_per_s']:.0f}/s)",
        f"  {'outcome':<18}{'count':>10}",
    ]
    lines += [f"  {name:<18}{count:>10}" for name, count in report["counts"].items()]
    if stopped := report.get("stopped"):
        lines.insert(1, f"  STOPPED EARLY ({stopped['error_code']}): {stopped['message']}")
    if report["errors"]:
        lines.append(f"  {'error code':<30}{'count':>10}")
        lines += [f"  {code:<30}{count:>10}" for code, count in report["errors"].items()]
    if report.get("retries"):
        lines.append("  retries: " + ", ".join(f"{cause} {n}" for cause, n in report["retries"].items()))
    if report["failures"]:
        lines.append(f"  first failures (of {sum(report['errors'].values())}):")
        for f in report["failures"][:failures_shown]:
            lines.append(
                f"    {f['order_id']}: {f['outcome']} {f['error_code'] or ''} {f['message'] or ''}".rstrip()
            )
    return "\n".join(lines)
