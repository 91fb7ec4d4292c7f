"""What the ledger keeps per key, in named types: the key, the row as read, the run that wrote it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Outcome

IN_FLIGHT = "in_flight"
#: States that mean Juspay has the fulfilment.
DELIVERED = frozenset(o.value for o in Outcome if o.is_delivered)
#: States the next run sends again (invalid records never reach the ledger).
UNDELIVERED = tuple(o.value for o in Outcome if o.is_failure and o is not Outcome.INVALID)
#: Outcomes written for a claimed key (held and skipped keys were never claimed; invalid never sent).
WRITTEN = frozenset(o for o in Outcome if o.is_delivered or o.is_failure) - {Outcome.INVALID}


class Key(NamedTuple):
    """A fulfilment's identity within one merchant (the table's key, less the merchant id)."""

    order_id: str
    command: str
    fulfillment_id: str

    @classmethod
    def of(cls, record: FulfilmentRecord) -> Key:
        return cls(record.order_id, record.fulfillment_command, record.fulfillment_id or "")

    @classmethod
    def of_result(cls, result: FulfilmentResult) -> Key:
        return cls(result.order_id or "", result.command or "", result.fulfillment_id or "")


@dataclass(frozen=True)
class RunInfo:
    """The Airflow task try that writes the ledger (kept with each attempt, for people to trace)."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    map_index: int | None = None

    def values(self) -> list[Any]:
        """In the order of the table's run columns."""
        return [self.dag_id, self.run_id, self.task_id, self.try_number, self.map_index]


@dataclass(frozen=True)
class LedgerRow:
    """A key's row as a run read it: what the claim protocol decides on, and compares when claiming."""

    key: Key
    state: str
    payload_hash: str
    last_attempt_at: str
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    try_number: int | None
    map_index: int | None
    claim_id: str | None
    lease_until: str | None

    #: The columns read, in the order ``from_columns`` takes them.
    COLUMNS = (
        "order_id", "command", "fulfillment_id", "state", "payload_hash", "last_attempt_at",
        "dag_id", "run_id", "task_id", "try_number", "map_index", "claim_id", "lease_until",
    )  # fmt: skip

    @classmethod
    def from_columns(cls, values: tuple[Any, ...]) -> LedgerRow:
        order_id, command, fulfillment_id, *rest = values
        return cls(Key(order_id, command, fulfillment_id), *rest)

    @property
    def holder(self) -> str:
        """The run that holds or last wrote the key, for people."""
        if self.dag_id is None:
            return "another run"
        where = f"{self.dag_id}/{self.run_id}/{self.task_id}"
        if _map_index(self.map_index) >= 0:
            where += f"[{self.map_index}]"
        return f"{where} try {self.try_number}"


def payload_hash(record: FulfilmentRecord) -> str:
    """SHA-256 of what is sent (form fields and routing id), stable across runs."""
    payload = {**record.to_form(), "x-routing-id": record.routing_id or ""}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def result_for(record: FulfilmentRecord, outcome: Outcome, **kwargs: Any) -> FulfilmentResult:
    """The result the ledger decides for a record it does not pass on."""
    return FulfilmentResult(
        order_id=record.order_id,
        outcome=outcome,
        command=record.fulfillment_command,
        fulfillment_id=record.fulfillment_id,
        position=record.position,
        **kwargs,
    )


def timestamp(moment: datetime) -> str:
    """UTC, fixed width: compares as text in SQL and in Python."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _map_index(value: int | None) -> int:
    return -1 if value is None else int(value)
