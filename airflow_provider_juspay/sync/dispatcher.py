"""The dispatcher: sends records concurrently, a bounded window at a time, and yields their results.

Memory stays flat: the source is read only as fast as results come back (at most ``max_concurrency``
records in flight plus as many queued), and results are yielded, not kept.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator

from airflow_provider_juspay.errors import AuthError
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Outcome

__all__ = ["DEFAULT_MAX_CONCURRENCY", "Dispatcher", "Item", "not_attempted"]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENCY = 16

#: What flows into the dispatcher: a record to send, or a result already final (invalid, skipped).
Item = FulfilmentRecord | FulfilmentResult


class Dispatcher:
    """Runs ``send`` over records with at most ``max_concurrency`` in flight.

    A 401/403 (:class:`AuthError`) stops the run: the record that met it is ``failed``, every later
    record ``not_attempted``, and :attr:`stopped_by` holds the error for the caller to raise.

    :param send: sends one record and returns its result (``JuspayClient.fulfil``).
    :param max_concurrency: requests in flight at once, default 16.
    """

    def __init__(
        self,
        send: Callable[[FulfilmentRecord], FulfilmentResult],
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.send = send
        self.max_concurrency = max_concurrency
        self.stopped_by: AuthError | None = None
        self._stop = threading.Event()

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
        try:
            for item in source:
                if isinstance(item, FulfilmentResult):
                    yield item
                    continue
                if self._stop.is_set():
                    yield not_attempted(item)
                    continue
                while outstanding >= window:
                    yield _unwrap(done.get())
                    outstanding -= 1
                work.put(item)
                outstanding += 1
                while not done.empty():
                    yield _unwrap(done.get())
                    outstanding -= 1
            while outstanding:
                yield _unwrap(done.get())
                outstanding -= 1
        finally:
            # Finished, or the consumer stopped early: what is still queued comes back unsent.
            self._stop.set()
            for _ in workers:
                work.put(None)
            for worker in workers:
                worker.join()

    def _work(self, work: queue.SimpleQueue, done: queue.SimpleQueue) -> None:
        while (record := work.get()) is not None:
            try:
                done.put(self._send_one(record))
            except BaseException as exc:  # a bug in send: hand it to the consumer's thread
                done.put(exc)

    def _run_serial(self, source: Iterator[Item]) -> Iterator[FulfilmentResult]:
        for item in source:
            if isinstance(item, FulfilmentResult):
                yield item
            elif self._stop.is_set():
                yield not_attempted(item)
            else:
                yield self._send_one(item)

    def _send_one(self, record: FulfilmentRecord) -> FulfilmentResult:
        if self._stop.is_set():
            return not_attempted(record)
        try:
            return self.send(record)
        except AuthError as exc:
            if not self._stop.is_set():
                self.stopped_by = exc
                self._stop.set()
                log.error("Juspay refused the credentials; stopping the run: %s", exc)
            return FulfilmentResult(
                order_id=record.order_id,
                outcome=Outcome.FAILED,
                http_status=exc.http_status,
                error_code=exc.error_code or "UNAUTHORIZED",
                message=str(exc),
                attempts=1,
                command=record.fulfillment_command,
                fulfillment_id=record.fulfillment_id,
            )


def _unwrap(result: FulfilmentResult | BaseException) -> FulfilmentResult:
    if isinstance(result, BaseException):
        raise result
    return result


def not_attempted(
    record: FulfilmentRecord, reason: str = "the run stopped before this record"
) -> FulfilmentResult:
    """The result of a record that was never sent."""
    return FulfilmentResult(
        order_id=record.order_id,
        outcome=Outcome.NOT_ATTEMPTED,
        message=f"not sent: {reason}",
        command=record.fulfillment_command,
        fulfillment_id=record.fulfillment_id,
    )
