"""The dispatcher: sends records concurrently, a bounded window at a time, and yields their results.

Memory stays flat: the source is read only as fast as results come back (at most ``max_concurrency``
records in flight plus as many queued), and results are yielded, not kept.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator

from airflow_provider_juspay.errors import AuthError, ErrorCode, RunStopped
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Item, Outcome
from airflow_provider_juspay.sync.control import RunControl, Stop

__all__ = ["DEFAULT_MAX_CONCURRENCY", "Dispatcher", "not_attempted"]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENCY = 16


class Dispatcher:
    """Runs ``send`` over records with at most ``max_concurrency`` in flight.

    When the run stops (a 401/403, the circuit breaker, a cancel, a lost lease, a failed source; see
    :class:`~airflow_provider_juspay.sync.control.RunControl`), every record not yet sent is
    ``not_attempted`` with the stop's error code, and :attr:`stop_reason` says why. A 401/403
    (:class:`~airflow_provider_juspay.errors.AuthError`) stops it here: the record that met it is
    ``failed``.

    :param send: sends one record and returns its result (``JuspayClient.fulfil`` with ``control``).
    :param max_concurrency: requests in flight at once, default 16.
    :param control: the run's shared stop (and pace and breaker, which ``send`` uses).
    """

    def __init__(
        self,
        send: Callable[[FulfilmentRecord], FulfilmentResult],
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        control: RunControl | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.send = send
        self.max_concurrency = max_concurrency
        self.control = control or RunControl()
        #: The error the source (warehouse, ledger claims) raised, once it did: the run's own error.
        self.source_error: Exception | None = None

    @property
    def stop_reason(self) -> Stop | None:
        """Why the run stopped early, if it did."""
        return self.control.stop_reason

    def run(self, items: Iterable[Item]) -> Iterator[FulfilmentResult]:
        """Yield one result per item, in completion order."""
        source = iter(items)
        if self.max_concurrency == 1:
            yield from self._run_serial(source)
            return
        # Plain queues and long-lived workers: a future per record and concurrent.futures.wait() over
        # the whole window cost more CPU than the HTTP exchange itself.
        work: queue.SimpleQueue[FulfilmentRecord | None] = queue.SimpleQueue()
        done: queue.SimpleQueue[FulfilmentResult | BaseException] = queue.SimpleQueue()
        workers = [
            threading.Thread(target=self._work, args=(work, done), name=f"juspay-send-{i}", daemon=True)
            for i in range(self.max_concurrency)
        ]
        for worker in workers:
            worker.start()
        window = self.max_concurrency * 2  # records handed out and not yet returned, at most
        outstanding = 0
        finished = False
        source_error: Exception | None = None
        try:
            while True:
                try:
                    item = next(source)
                except StopIteration:
                    break
                except Exception as exc:  # the warehouse or the ledger failed: see below
                    source_error = self.source_error = exc
                    break
                if isinstance(item, FulfilmentResult):
                    yield item
                    continue
                if self.control.stopped:
                    yield self._unsent(item)
                    continue
                while outstanding >= window:
                    yield _unwrap(done.get())
                    outstanding -= 1
                work.put(item)
                outstanding += 1
                while not done.empty():
                    yield _unwrap(done.get())
                    outstanding -= 1
            if source_error is not None:
                # Nothing more leaves, but the requests on the wire finish and their results are handed
                # on to be written: cut, they would be sent again by the next run.
                self.control.stop(ErrorCode.ABORTED, f"the source failed ({type(source_error).__name__})")
            while outstanding:
                yield _unwrap(done.get())
                outstanding -= 1
            finished = True
        finally:
            if not finished:
                # An error (a database gone, a timeout) or a consumer that stopped reading: these
                # results can no longer be recorded, so nothing more is sent and the wire is cut.
                self.control.abort("the run ended early")
            for _ in workers:
                work.put(None)
            for worker in workers:
                worker.join()
        if source_error is not None:
            raise source_error

    def _work(
        self,
        work: queue.SimpleQueue[FulfilmentRecord | None],
        done: queue.SimpleQueue[FulfilmentResult | BaseException],
    ) -> None:
        while (record := work.get()) is not None:
            try:
                done.put(self._send_one(record))
            except BaseException as exc:  # a bug in send: hand it to the consumer's thread
                done.put(exc)

    def _run_serial(self, source: Iterator[Item]) -> Iterator[FulfilmentResult]:
        for item in source:
            if isinstance(item, FulfilmentResult):
                yield item
            elif self.control.stopped:
                yield self._unsent(item)
            else:
                yield self._send_one(item)

    def _unsent(self, record: FulfilmentRecord) -> FulfilmentResult:
        reason = self.control.stop_reason
        if reason is None:
            return not_attempted(record)
        return not_attempted(record, f"the run stopped: {reason.message}", error_code=reason.error_code)

    def _send_one(self, record: FulfilmentRecord) -> FulfilmentResult:
        if self.control.stopped:
            return self._unsent(record)
        try:
            return self.send(record)
        except RunStopped:
            return self._unsent(record)
        except AuthError as exc:
            self.control.stop(ErrorCode.UNAUTHORIZED, f"Juspay refused the credentials: {exc}", exc)
            return FulfilmentResult(
                order_id=record.order_id,
                outcome=Outcome.FAILED,
                http_status=exc.http_status,
                error_code=exc.error_code or ErrorCode.UNAUTHORIZED,
                message=str(exc),
                attempts=1,
                command=record.fulfillment_command,
                fulfillment_id=record.fulfillment_id,
                position=record.position,
            )


def _unwrap(result: FulfilmentResult | BaseException) -> FulfilmentResult:
    if isinstance(result, BaseException):
        raise result
    return result


def not_attempted(
    record: FulfilmentRecord,
    reason: str = "the run stopped before this record",
    *,
    error_code: str | None = None,
) -> FulfilmentResult:
    """The result of a record that was never sent."""
    return FulfilmentResult(
        order_id=record.order_id,
        outcome=Outcome.NOT_ATTEMPTED,
        error_code=error_code,
        message=f"not sent: {reason}",
        command=record.fulfillment_command,
        fulfillment_id=record.fulfillment_id,
        position=record.position,
    )
