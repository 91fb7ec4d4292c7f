"""Live progress of a run: a line every interval while results come in, and while none do (a stall),
from its own thread. The report (``sync.report``) counts; this only says how far the run is."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from airflow_provider_juspay.fulfilment import Outcome

__all__ = ["PROGRESS_EVERY_S", "PaceSource", "Progress", "ProgressLog"]

#: Seconds between progress lines.
PROGRESS_EVERY_S = 10.0


class ProgressLog(Protocol):
    """Where progress lines go: a ``logging.Logger``, or Airflow's task logger."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...


class PaceSource(Protocol):
    """The run's pacing (``sync.control.RunControl``), as progress lines and the report show it."""

    def progress(self) -> str: ...

    def pacing(self) -> dict[str, Any]: ...


class Progress:
    """Says how far a run is: rows done of those expected by outcome, the rate, an ETA, retries, pace.

    :param counts: the run's counts by outcome so far (read from the progress thread: every outcome
        must be present from the start).
    :param elapsed: seconds since the run started.
    :param expected: rows expected, when known (gives an ETA).
    :param log: where lines go; None for silence.
    :param every: seconds between lines.
    :param clock: monotonic seconds.
    :param retries: retries so far by cause, when the run has a client that retries.
    """

    def __init__(
        self,
        *,
        counts: Mapping[Outcome, int],
        elapsed: Callable[[], float],
        expected: int | None = None,
        log: ProgressLog | None = None,
        every: float = PROGRESS_EVERY_S,
        clock: Callable[[], float],
        retries: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self._counts = counts
        self._elapsed = elapsed
        self.expected = expected
        self._log = log
        self._every = every
        self._clock = clock
        self._next = clock() + every
        self._retries = retries
        #: The run's pacing, when it has one (the engine sets it).
        self.pace: PaceSource | None = None

    def tick(self) -> None:
        """A result came in: a line when one is due."""
        if self._log is not None and self._clock() >= self._next:
            self._next = self._clock() + self._every
            self._log.info("%s", self.line())

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Within the block, a line still comes every interval when no result does (a stall)."""
        log = self._log
        if log is None:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self._every):
                if self._clock() >= self._next:
                    self._next = self._clock() + self._every
                    log.info("%s (waiting for answers)", self.line())

        thread = threading.Thread(target=beat, name="juspay-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def line(self) -> str:
        """``120/600 records done (sent 118, rejected 2); 40/s; ETA 12s; retries: ...; <pace>``."""
        elapsed = self._elapsed()
        done = sum(self._counts.values())
        rate = done / elapsed if elapsed > 0 else 0.0
        by_outcome = ", ".join(  # only the outcomes seen so far
            f"{o.value} {n}" for o, n in sorted(self._counts.items(), key=lambda kv: kv[0].value) if n
        )
        of = f"/{self.expected}" if self.expected else ""
        line = f"{done}{of} records done ({by_outcome}); {rate:.0f}/s"
        if self.expected and rate > 0:
            line += f"; ETA {max(0.0, (self.expected - done) / rate):.0f}s"
        retries = self._retries() if self._retries else {}
        if retries:
            line += "; retries: " + ", ".join(f"{cause} {n}" for cause, n in retries.items())
        pace = self.pace.progress() if self.pace is not None else ""
        if pace:
            line += f"; {pace}"
        return line
