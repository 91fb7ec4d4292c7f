"""The claim protocol: which records this run sends, which the ledger decides, and which wait for the
run that holds them.

A run claims a key before sending it: an INSERT of a new key, or a compare-and-set UPDATE of the row it
read, so one run wins each key whatever the database. Read top-down: :meth:`Claims.claim_batch` reads
the batch's rows (:meth:`Claims.decide`), claims what is to be sent (:meth:`Claims.claim`), and reads
again what another run wrote in between; :meth:`Claims.settle_held` decides, at the end of the run, the
keys another run held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from airflow_provider_juspay.errors import ErrorCode, LeaseLost
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Item, Outcome
from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.ledger.lease import Lease
from airflow_provider_juspay.sync.ledger.rows import (
    DELIVERED,
    IN_FLIGHT,
    Key,
    LedgerRow,
    RunInfo,
    payload_hash,
    result_for,
)
from airflow_provider_juspay.sync.ledger.schema import Statements

log = logging.getLogger(__name__)

#: What to do with a delivered key whose payload changed since.
ON_CHANGE = ("send", "skip", "fail")
#: Times a key lost to another run's write is read and decided again before it counts as held.
_CLAIM_ROUNDS = 3
#: Longest pause between two looks at keys another run holds, and at a stop.
_HELD_POLL_S = 1.0
#: Longest a run waits for keys another run holds without renewing them (a lease of 0.2 was 900 s).
DEFAULT_WAIT_LIMIT_S = 900.0


@dataclass(frozen=True)
class Claim:
    """A record to claim: its position in the batch, its payload's hash, and its row as read (None: new)."""

    position: int
    record: FulfilmentRecord
    digest: str
    row: LedgerRow | None

    @property
    def key(self) -> Key:
        return Key.of(self.record)


@dataclass
class Decision:
    """One read of the ledger for a batch: results for the records it decides, claims for the rest, and
    the positions another run holds."""

    results: dict[int, FulfilmentResult] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    held: set[int] = field(default_factory=set)


@dataclass
class _Waiting:
    """A key another run held when this one wanted it, and the lease seen on it last time."""

    record: FulfilmentRecord
    #: The key's row when last looked at (its lease end is the one a renewal must pass).
    row: LedgerRow | None = None


class Claims:
    """Decides and claims keys for one run (``claim_id``), from one thread."""

    def __init__(
        self,
        db: Database,
        statements: Statements,
        lease: Lease,
        *,
        merchant_id: str,
        claim_id: str,
        run: RunInfo,
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
        wait_limit_s: float = DEFAULT_WAIT_LIMIT_S,
    ) -> None:
        self._db = db
        #: Longest wait for keys another run holds without renewing them.
        self.wait_limit_s = wait_limit_s
        self._statements = statements
        self._lease = lease
        self._merchant_id = merchant_id
        self._claim_id = claim_id
        self._run = run
        self._monotonic = monotonic
        self._sleep = sleep
        #: Keys this run holds in flight and has not yet written an outcome for.
        self.claimed = lease.holdings
        #: Keys another run held when this one wanted them.
        self._held: dict[Key, _Waiting] = {}

    # -- a batch ---------------------------------------------------------------------------------

    def preview_batch(self, batch: list[Item], on_change: str) -> list[Item]:
        """The batch with what the ledger decides replaced by results; the rest passed on unclaimed."""
        decided = list(batch)
        for i, result in self.decide(_records(batch), on_change).results.items():
            decided[i] = result
        return decided

    def claim_batch(self, batch: list[Item], on_change: str) -> list[Item]:
        """The batch with what the ledger decides replaced by results; the rest claimed for this run.

        A key another run wrote between our read and our claim is read and decided again. Keys another
        run holds are kept aside for :meth:`settle_held`.
        """
        self._lease.check()
        decided = list(batch)
        pending = _records(batch)
        held: set[int] = set()
        for _ in range(_CLAIM_ROUNDS):
            decision = self.decide(pending, on_change)
            decided_here = decision.results
            for i, result in decided_here.items():
                decided[i] = result
            held |= decision.held
            lost = self.claim(decision.claims)
            pending = [(i, record) for i, record in pending if i in lost]
            if not pending:
                break
        # Still contended after every round (another run is at it right now), or held by another run:
        # decided at the end of the run, once their holder had its chance.
        held |= {i for i, _ in pending}
        for i in held:
            record = batch[i]
            assert isinstance(record, FulfilmentRecord)
            self._held.setdefault(Key.of(record), _Waiting(record))
        return [item for i, item in enumerate(decided) if i not in held]

    def decide(self, records: list[tuple[int, FulfilmentRecord]], on_change: str) -> Decision:
        """Read the records' rows once: decide those not to send, and make a claim for the others."""
        known = self.lookup([record for _, record in records])
        live_after = self._lease.clock.live_after()
        decision = Decision()
        taken: set[Key] = set()
        for i, record in records:
            key = Key.of(record)
            if key in self.claimed or key in taken:
                decision.results[i] = result_for(
                    record, Outcome.HELD_ELSEWHERE, message="an earlier row of this run holds this key"
                )
                continue
            digest = payload_hash(record)
            row = known.get(key)
            result = self._decided(record, digest, row, live_after, on_change)
            if result is None:
                taken.add(key)
                decision.claims.append(Claim(i, record, digest, row))
            else:
                decision.results[i] = result
                if result.outcome is Outcome.HELD_ELSEWHERE:
                    decision.held.add(i)  # another run's: a claim passes it over, a preview reports it
        return decision

    def _decided(
        self, record: FulfilmentRecord, digest: str, row: LedgerRow | None, live_after: str, on_change: str
    ) -> FulfilmentResult | None:
        """The result for a key this run is not to send, or None to send (claim) it."""
        if row is None:
            return None
        if row.state in DELIVERED:
            if row.payload_hash == digest:
                return result_for(record, Outcome.SKIPPED, message=f"already {row.state} (ledger)")
            if on_change == "skip":
                return result_for(record, Outcome.SKIPPED, message="changed since delivered; on_change=skip")
            if on_change == "fail":
                return result_for(
                    record,
                    Outcome.INVALID,
                    error_code=ErrorCode.CHANGED_AFTER_DELIVERY,
                    message="payload changed since it was delivered; on_change=fail",
                )
            return None
        if row.state == IN_FLIGHT and self._held_by_a_live_run(row, live_after):
            return result_for(
                record,
                Outcome.HELD_ELSEWHERE,
                message=f"in flight in {row.holder}, lease until {row.lease_until}: that run sends it",
            )
        return None

    def _held_by_a_live_run(self, row: LedgerRow, live_after: str) -> bool:
        """Whether the row's lease still holds. An earlier try of this task gets no exception: Airflow
        may start a try while the last one still runs (a missed heartbeat, a worker cut off)."""
        if row.claim_id == self._claim_id:
            return True
        return row.lease_until is not None and row.lease_until > live_after

    def lookup(self, records: list[FulfilmentRecord]) -> dict[Key, LedgerRow]:
        """The rows of these records' keys (read by order id)."""
        if not records:
            return {}
        order_ids = sorted({r.order_id for r in records})
        sql = self._statements.lookup_of(self._db, len(order_ids))
        rows = (
            LedgerRow.from_columns(values) for values in self._db.query(sql, [self._merchant_id, *order_ids])
        )
        return {row.key: row for row in rows}

    # -- claiming ----------------------------------------------------------------------------------

    def claim(self, claims: list[Claim]) -> set[int]:
        """Claim keys for this run; returns the positions of those another run took first."""
        if not claims:
            return set()
        began = self._monotonic()
        now, until = self._lease.clock.wall(), self._lease.clock.until()
        # Rows are always locked in key order, so two runs claiming the same keys cannot deadlock.
        claims = sorted(claims, key=lambda claim: claim.key)
        lost = self._insert([c for c in claims if c.row is None], now, until)
        seen = [c for c in claims if c.row is not None]
        changed = self._db.execute_each(
            self._statements.claim_seen, [self._claim_seen_values(c, now, until) for c in seen]
        )
        lost |= {c.position for c, n in zip(seen, changed, strict=True) if n != 1}
        self._lease.claimed([c.key for c in claims if c.position not in lost], began)
        return lost

    def _insert(self, new: list[Claim], now: str, until: str) -> set[int]:
        if not new:
            return set()
        rows = [self._insert_values(claim, now, until) for claim in new]
        try:
            self._db.executemany(self._statements.insert, rows)
            return set()
        except self._db.integrity_errors:
            self._db.rollback()
        lost = set()  # another run inserted some of these keys first: one at a time, to know which
        for claim, values in zip(new, rows, strict=True):
            try:
                self._db.executemany(self._statements.insert, [values])
            except self._db.integrity_errors:
                self._db.rollback()
                lost.add(claim.position)
        return lost

    def _insert_values(self, claim: Claim, now: str, until: str) -> list[object]:
        return [
            self._merchant_id, *claim.key, claim.digest, IN_FLIGHT, 0, None, None, None, now, now,
            *self._run.values(), self._claim_id, until,
        ]  # fmt: skip

    def _claim_seen_values(self, claim: Claim, now: str, until: str) -> list[object]:
        row = claim.row
        assert row is not None
        return [
            claim.digest, IN_FLIGHT, now, *self._run.values(), self._claim_id, until,
            self._merchant_id, *claim.key,
            row.state, row.last_attempt_at, row.claim_id or "", row.lease_until or "",
        ]  # fmt: skip

    # -- keys another run held -------------------------------------------------------------------

    def settle_held(self, on_change: str, stopped: Callable[[], bool]) -> Iterator[Item]:
        """Decide the keys found held by other runs, once this run's own are done.

        Each is watched until it is delivered (``skipped``), its holder is seen renewing its lease
        (``held_elsewhere``: a live run sends it), or its lease ends without a renewal (a dead or stuck
        holder, a longer lease, a lease of 0.2): then it is claimed here and sent. Keys still held,
        never renewed, after ``wait_limit_s`` are ``not_attempted`` (HELD_BY_STALLED_RUN), naming the
        holder and when its lease ends: the run is not green, and a retry after that sends them.
        """
        if not self._held:
            return
        held, self._held = self._held, {}
        log.info(
            "%d keys are held by other runs: waiting for each to be delivered, renewed by a live holder "
            "or left when its lease ends (at most %.0f s)",
            len(held),
            self.wait_limit_s,
        )
        started = self._monotonic()
        deadline = started + self.wait_limit_s
        poll = max(0.01, min(_HELD_POLL_S, self._lease.clock.lease_s / 8))
        still: dict[Key, FulfilmentResult] = {}
        while held and not stopped():
            known = self.lookup([waiting.record for waiting in held.values()])
            live_after = self._lease.clock.live_after()
            to_decide = []
            for key, waiting in list(held.items()):
                row = known.get(key)
                if row is None or row.state != IN_FLIGHT or not self._held_by_a_live_run(row, live_after):
                    to_decide.append(waiting.record)  # delivered, failed, or left by its holder
                elif (
                    waiting.row is not None
                    and waiting.row.lease_until is not None
                    and row.lease_until is not None
                    and row.lease_until > waiting.row.lease_until
                ):
                    still[key] = result_for(
                        waiting.record,
                        Outcome.HELD_ELSEWHERE,
                        message=f"in flight in {row.holder}, which is alive (renewed its lease to "
                        f"{row.lease_until} while this run watched): that run sends it",
                    )
                else:
                    waiting.row = row
                    continue
                del held[key]
            if to_decide:
                try:
                    decided = self.claim_batch(list(to_decide), on_change)
                except LeaseLost:  # this run is stopping: these are not_attempted below
                    for record in to_decide:
                        held[Key.of(record)] = _Waiting(record)
                    break
                yield from decided
                # What the claim found held again goes back to waiting, with the lease seen now.
                for key, waiting in self._held.items():
                    held.setdefault(key, waiting)
                self._held = {}
            if held and self._monotonic() >= deadline:
                break
            if held:
                self._sleep(poll)
        waited = self._monotonic() - started
        if held and not stopped() and self._lease.lost is None:
            holders = sorted({w.row.holder for w in held.values() if w.row is not None})
            log.warning(
                "%d keys are still held by %s, whose lease was not renewed in the %.0f s this run waited "
                "(the wait limit): not sent; they free up when that lease ends, and a retry sends them",
                len(held),
                ", ".join(holders[:5]) or "another run",
                waited,
            )
        for key, waiting in held.items():
            still[key] = self._not_settled(waiting, waited, stopped() or self._lease.lost is not None)
        yield from still.values()

    def _not_settled(self, waiting: _Waiting, waited: float, stopped: bool) -> FulfilmentResult:
        """A key still held when this run stopped, or when its wait limit passed: not delivered here."""
        if stopped:
            return result_for(
                waiting.record,
                Outcome.NOT_ATTEMPTED,
                message="not sent: the run stopped while another run held this key",
            )
        row = waiting.row
        holder = row.holder if row is not None else "another run"
        lease = row.lease_until if row is not None else None
        return result_for(
            waiting.record,
            Outcome.NOT_ATTEMPTED,
            error_code=ErrorCode.HELD_BY_STALLED_RUN,
            message=f"not sent: in flight in {holder}, whose lease (until {lease}) was not renewed in the "
            f"{waited:.0f} s this run waited; it frees up then, and a retry sends it",
        )


def _records(batch: list[Item]) -> list[tuple[int, FulfilmentRecord]]:
    """The records of a batch (results decided upstream pass through), with their positions."""
    return [(i, item) for i, item in enumerate(batch) if isinstance(item, FulfilmentRecord)]
