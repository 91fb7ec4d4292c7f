"""Writing outcomes: each key this run claimed gets the outcome it ended with, in batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from airflow_provider_juspay.fulfilment import FulfilmentResult, Outcome
from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.ledger.lease import Holdings, Lease
from airflow_provider_juspay.sync.ledger.rows import WRITTEN, Key, RunInfo
from airflow_provider_juspay.sync.ledger.schema import ERROR_CODE_SIZE, MESSAGE_SIZE, Statements

log = logging.getLogger(__name__)

#: Longest wait before known outcomes are written: what a run killed or paused can have answered and not
#: yet recorded (the next run sends those keys again) is at most this much of its answers.
DEFAULT_FLUSH_EVERY_S = 2.0


class OutcomeWriter:
    """Buffers the outcomes of claimed keys and writes them every ``batch_size`` or ``flush_every_s``."""

    def __init__(
        self,
        db: Database,
        statements: Statements,
        lease: Lease,
        claimed: Holdings,
        *,
        merchant_id: str,
        claim_id: str,
        run: RunInfo,
        batch_size: int,
        flush_every_s: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._db = db
        self._statements = statements
        self._lease = lease
        #: The keys this run holds, shared with the claims (a written key is held no more).
        self._claimed = claimed
        self._merchant_id = merchant_id
        self._claim_id = claim_id
        self._run = run
        self._batch_size = batch_size
        self._flush_every = flush_every_s
        self._monotonic = monotonic
        self._pending: list[FulfilmentResult] = []
        self._last_flush = monotonic()

    def write(self, results: Iterable[FulfilmentResult]) -> Iterator[FulfilmentResult]:
        """Pass results on, writing the outcome of every key this run claimed, in batches.

        When something upstream fails (the database, the warehouse, a timeout), what is known is
        still written if the database allows, and the original error is the one raised.
        """
        try:
            for result in results:
                if result.outcome in WRITTEN and Key.of_result(result) in self._claimed:
                    self._pending.append(result)
                    if (
                        len(self._pending) >= self._batch_size
                        or self._monotonic() - self._last_flush >= self._flush_every
                    ):
                        self.flush()
                yield result
        except BaseException:
            self._flush_quietly()
            raise
        self.flush()

    def flush(self) -> None:
        """Write the buffered outcomes now (and, without a heartbeat, renew this run's lease when due).

        Written even after the lease was lost: each write is fenced by this run's claim, so a key another
        run took over is left as that run wrote it, and what this run knows is not thrown away.
        """
        pending, self._pending = self._pending, []
        self._last_flush = self._monotonic()
        if pending:
            now = self._lease.clock.wall()
            updates = []
            for result in sorted(pending, key=Key.of_result):  # key order: see Claims.claim
                key = Key.of_result(result)
                self._claimed.discard(key)
                updates.append(
                    [
                        result.outcome.value,
                        result.attempts,
                        result.http_status,
                        (result.error_code or "")[:ERROR_CODE_SIZE] or None,
                        (result.message or "")[:MESSAGE_SIZE] or None,
                        now,
                        *self._run.values(),
                        self._merchant_id,
                        *key,
                        self._claim_id,
                    ]
                )
            self._db.executemany(self._statements.outcome, updates)
            self._lease.progressed()
        if self._lease.lost is None:
            self._lease.renew_if_due()

    def release_unsent(self) -> int:
        """Give back the keys this run claimed and never sent (a run that ended early): ``not_attempted``,
        so the next run sends them at once instead of waiting for their lease. Keys a request went out
        for stay in flight until their lease ends: Juspay may have them. Returns how many."""
        keys = self._lease.holdings.unsent()
        if not keys:
            return 0
        now = self._lease.clock.wall()
        message = "not sent: the run ended before sending it (given back at once)"
        updates = []
        for key in keys:
            self._claimed.discard(key)
            updates.append(
                [Outcome.NOT_ATTEMPTED.value, 0, None, None, message, now, *self._run.values(),
                 self._merchant_id, *key, self._claim_id]
            )  # fmt: skip
        self._db.executemany(self._statements.outcome, updates)
        return len(keys)

    def _flush_quietly(self) -> None:
        try:
            self._db.rollback()
            self.flush()
        except Exception as exc:  # the database is what failed: the caller raises the first error
            log.warning(
                "Could not write %d outcomes to the ledger after the run failed (%s: %s); "
                "their keys stay in flight and the next try sends them again",
                len(self._pending) + len(self._claimed),
                type(exc).__name__,
                exc,
            )
