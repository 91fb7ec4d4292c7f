"""Reading the ledger for sensors, reports and people: what a run, or a time window, last wrote."""

from __future__ import annotations

from airflow_provider_juspay.errors import ErrorCode
from airflow_provider_juspay.fulfilment import Outcome
from airflow_provider_juspay.sync import report as _report
from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.ledger.lease import LeaseClock
from airflow_provider_juspay.sync.ledger.rows import IN_FLIGHT, UNDELIVERED, Key, timestamp
from airflow_provider_juspay.sync.report import RunReport

#: Failures a run report read from the ledger lists (the counts cover them all).
SUMMARY_FAILURES_LISTED = 100


class LedgerReader:
    """Reads one merchant's keys; writes nothing."""

    def __init__(self, db: Database, table: str, merchant_id: str, clock: LeaseClock) -> None:
        self._db = db
        self._table = table
        self._merchant_id = merchant_id
        self._clock = clock

    def run_report(
        self, *, run_id: str | None = None, since: str | None = None, until: str | None = None
    ) -> RunReport:
        """A report of the keys a run, or a time window, last wrote: counts, errors, the first 100 failures.

        Keys in flight in a live run are counted in ``in_flight``; those whose lease has passed were left
        by a dead process and count as ``not_attempted`` (code ABANDONED_IN_FLIGHT) until sent again.
        """
        bind = self._db.binds()
        where, params = [f"merchant_id = {bind()}"], [self._merchant_id]
        for column, op, value in (
            ("run_id", "=", run_id),
            ("last_attempt_at", ">=", since),
            ("last_attempt_at", "<", until),
        ):
            if value is not None:
                where.append(f"{column} {op} {bind()}")
                params.append(value)
        condition = " AND ".join(where)
        table, query = self._table, self._db.query
        counts = dict(query(f"SELECT state, COUNT(*) FROM {table} WHERE {condition} GROUP BY state", params))
        abandoned = query(
            f"SELECT COUNT(*) FROM {table} WHERE {condition} AND state = '{IN_FLIGHT}' "
            f"AND (lease_until IS NULL OR lease_until < {bind()})",
            [*params, timestamp(self._clock.now())],
        )[0][0]
        # Our own constants, not input: safe to write into the statement.
        failure_where = f"{condition} AND state IN ({', '.join(repr(s) for s in UNDELIVERED)})"
        errors = dict(
            query(
                f"SELECT COALESCE(error_code, state), COUNT(*) FROM {table} WHERE {failure_where} "
                "GROUP BY COALESCE(error_code, state)",
                params,
            )
        )
        failures: list[_report.FailureEntry] = [
            {"order_id": o, "command": c, "outcome": s, "error_code": e, "message": m}
            for o, c, s, e, m in query(
                f"SELECT order_id, command, state, error_code, message FROM {table} "
                f"WHERE {failure_where} ORDER BY last_attempt_at, order_id",
                params,
                limit=SUMMARY_FAILURES_LISTED,
            )
        ]
        live = counts.pop(IN_FLIGHT, 0) - abandoned
        if abandoned:  # left by a dead process: not delivered, and no run is sending them
            errors[ErrorCode.ABANDONED_IN_FLIGHT.value] = abandoned
            counts[Outcome.NOT_ATTEMPTED.value] = counts.get(Outcome.NOT_ATTEMPTED.value, 0) + abandoned
        report = RunReport(
            total=sum(counts.values()) + live, errors=errors, failures=failures, in_flight=live
        )
        report.counts.update(counts)
        return report

    def states(self) -> dict[Key, str]:
        """Every key of this merchant and its state (for tests and small tables)."""
        rows = self._db.query(
            f"SELECT order_id, command, fulfillment_id, state FROM {self._table} "
            f"WHERE merchant_id = {self._db.binds()()}",
            [self._merchant_id],
        )
        return {Key(o, c, f): s for o, c, f, s in rows}
