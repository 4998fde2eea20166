"""What a batch writes: its new signals grouped by incident and folded into hash-chained events.

Pure: the store feeds the stored state into a `BatchPlan`, which computes the parameters of
each write statement (`ChunkWrite`) without I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from ingest_worker.core.canonical import evidence_sha256, incident_id
from ingest_worker.core.errors import IngestError
from ingest_worker.core.events import GENESIS_HASH, AddedEvidence, Event, build_event
from ingest_worker.core.projection import IncidentState, advance, start
from ingest_worker.core.tenants import DEFAULT_TENANT, tenant_name
from ingest_worker.core.values import EvidenceInput, IncidentInput, Recovery


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DUPLICATE = "duplicate"
    #: A new recovery signal (whether or not an incident of its scope was active).
    RECOVERED = "recovered"
    #: Command and source-transition outcomes.
    APPLIED = "applied"
    NOOP = "noop"
    REJECTED = "rejected"


class StoreIntegrityError(IngestError):
    """The stored data contradicts the store's invariants (e.g. a missing chain head)."""


def outbox_lane(incident: uuid.UUID, lanes: int) -> int:
    """The outbox lane of an incident: its first 4 bytes (big-endian, unsigned) modulo `lanes`."""
    return int.from_bytes(incident.bytes[:4], "big") % lanes


def _mapping(value: object) -> dict[Any, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON data: {type(value).__name__}")


def json_text(value: Any) -> str:
    """JSON text of a jsonb parameter (compact; key order is irrelevant, jsonb normalizes it)."""
    return orjson.dumps(value, default=_mapping).decode()


#: States a recovery may resolve (PENDING ones are cancelled: SPEC §7.1).
_ACTIVE = frozenset({"PENDING", "OPEN", "ACKNOWLEDGED", "MITIGATING", "MITIGATED"})


def episode_id(incident_key: str, episode: int, tenant: str = DEFAULT_TENANT) -> uuid.UUID:
    """Episode 1 keeps uuid5 of the key, episode n is uuid5 of `<key>#<n>`; outside the
    default tenant the key is `<tenant>/<key>`."""
    name = tenant_name(tenant, incident_key)
    return incident_id(name if episode == 1 else f"{name}#{episode}")


@dataclass(frozen=True, slots=True)
class StoredRecovery:
    """The newest recovery of a scope already in the store (before this batch)."""

    signal_time: datetime
    signal_sha256: str


class BatchPlan:
    """The new effects of one batch, grouped by incident key in order of first appearance.

    Triggers (`IncidentInput`) and recoveries (`Recovery`) are folded per incident key in batch
    order (§7.4): a trigger adds an occurrence, reopens an incident resolved by a
    recovery less than `reopen_window` ago, or opens a new episode; a recovery resolves the
    active incident of each key of its scope whose newest trigger is older. The newest recovery
    of a scope, stored or earlier in the batch, makes a trigger older than it born resolved.
    Whatever the arrival order, an incident key's newest episode ends up RESOLVED exactly when
    its scope's newest recovery is newer than its newest trigger.
    """

    def __init__(
        self,
        effects: Sequence[IncidentInput | Recovery],
        fresh: Iterable[int],
        lanes: int,
        *,
        reopen_window: timedelta = timedelta(seconds=300),
        open_after: Mapping[str, int] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        self.inputs = effects
        self.tenant = tenant
        self.lanes = lanes
        self.reopen_window = reopen_window
        #: source kind → occurrences before an incident opens (SPEC §7.1 PENDING; default 1)
        self.open_after = dict(open_after or {})
        #: incident key → indexes of its new triggers and of the recoveries of its scope.
        self.steps: dict[str, list[int]] = {}
        self._scope_of: dict[str, str] = {}
        self._evidence_shas: dict[tuple[uuid.UUID, int], list[str]] = {}
        self.fresh_recoveries: dict[str, list[int]] = {}
        for index in sorted(fresh):
            item = effects[index]
            if isinstance(item, IncidentInput):
                self.steps.setdefault(item.incident_key, []).append(index)
                self._scope_of.setdefault(item.incident_key, item.recovery_scope)
            else:
                self.fresh_recoveries.setdefault(item.scope, []).append(index)
        self._stored: dict[str, tuple[IncidentState, str]] = {}
        self._stored_evidence: dict[uuid.UUID, set[str]] = {}
        self._stored_recoveries: dict[str, StoredRecovery] = {}

    @property
    def trigger_keys(self) -> list[str]:
        return list(self.steps)

    @property
    def recovery_scopes(self) -> list[str]:
        return sorted(self.fresh_recoveries)

    def add_stored_recovery(self, scope: str, recovery: StoredRecovery) -> None:
        self._stored_recoveries[scope] = recovery

    def add_stored(self, row: Any) -> None:
        """The newest episode of a key as stored (a `select_incidents` row, with `head_hash`)."""
        state = IncidentState.from_row(row)
        if row["head_hash"] is None:
            raise StoreIntegrityError(f"incident {state.id} has no event seq {state.last_seq}")
        self._stored[state.incident_key] = (state, row["head_hash"])
        self._scope_of.setdefault(state.incident_key, state.recovery_scope)
        self.steps.setdefault(state.incident_key, [])

    def _finish_steps(self) -> None:
        """Interleave each key's triggers with the fresh recoveries of its scope."""
        for key, indexes in self.steps.items():
            recoveries = self.fresh_recoveries.get(self._scope_of[key], [])
            if recoveries:
                self.steps[key] = sorted({*indexes, *recoveries})

    def _shas(self, incident: uuid.UUID, index: int) -> list[str]:
        shas = self._evidence_shas.get((incident, index))
        if shas is None:
            evidence = self.inputs[index].evidence
            shas = self._evidence_shas[(incident, index)] = [
                evidence_sha256(incident, e.kind, e.ref) for e in evidence
            ]
        return shas

    def evidence_probe(self) -> list[tuple[uuid.UUID, str]]:
        """The evidence of stored incidents that may exist already: ask which ones do."""
        return sorted(
            {
                (state.id, sha)
                for key, (state, _) in self._stored.items()
                for index in self.steps[key]
                for sha in self._shas(state.id, index)
            }
        )

    def add_stored_evidence(self, found: Iterable[tuple[uuid.UUID, str]]) -> None:
        for incident, sha in found:
            self._stored_evidence.setdefault(incident, set()).add(sha)

    def chunks(self, size: int) -> Iterator[list[str]]:
        """Whole incident keys, about `size` new effects per chunk."""
        self._finish_steps()
        chunk: list[str] = []
        count = 0
        for key, indexes in self.steps.items():
            if not indexes:
                continue
            chunk.append(key)
            count += len(indexes)
            if count >= size:
                yield chunk
                chunk, count = [], 0
        if chunk:
            yield chunk

    def _newest_recovery(self, scope: str, before: int) -> tuple[datetime, str] | None:
        """The newest recovery of `scope` stored or earlier in the batch than index `before`."""
        best: tuple[datetime, str] | None = None
        stored = self._stored_recoveries.get(scope)
        if stored is not None:
            best = (stored.signal_time, stored.signal_sha256)
        for index in self.fresh_recoveries.get(scope, ()):
            if index >= before:
                break
            item = self.inputs[index]
            candidate = (item.signal_time, item.signal_sha256)
            if best is None or candidate > best:
                best = candidate
        return best

    def compute(self, keys: Iterable[str], outcomes: list[Outcome]) -> ChunkWrite:
        """Fold each key's new effects, in batch order, into events (and their evidence)."""
        write = ChunkWrite()
        for key in keys:
            fold = _Fold(self, key, write)
            for index in self.steps[key]:
                item = self.inputs[index]
                if isinstance(item, IncidentInput):
                    outcomes[index] = fold.trigger(index, item)
                else:
                    fold.recover(index, item)
                    outcomes[index] = Outcome.RECOVERED
            write.incidents += len(fold.touched)
        return write


class _Fold:
    """The running state of one incident key (its newest episode) while a chunk is computed."""

    def __init__(self, plan: BatchPlan, key: str, write: ChunkWrite) -> None:
        self.plan = plan
        self.key = key
        self.write = write
        stored = plan._stored.get(key)
        self.state: IncidentState | None = None if stored is None else stored[0]
        self.prev_hash = GENESIS_HASH if stored is None else stored[1]
        self.before = None if self.state is None else self.state.snapshot()
        self.known = (
            set() if self.state is None else set(plan._stored_evidence.get(self.state.id, ()))
        )
        self.scope = plan._scope_of[key]
        self.touched: set[uuid.UUID] = set()

    def _emit(
        self,
        after: IncidentState,
        *,
        occurred_at: datetime,
        signal_sha256: str,
        kind: str | None,
        evidence_from: int | None,
        cause_sha: str | None = None,
    ) -> None:
        added = []
        if evidence_from is not None:
            item = self.plan.inputs[evidence_from]
            for evidence, sha in zip(
                item.evidence, self.plan._shas(after.id, evidence_from), strict=True
            ):
                if sha not in self.known:
                    self.known.add(sha)
                    added.append(AddedEvidence(sha, evidence.kind, evidence.ref))
                    self.write.add_evidence(sha, evidence)
        snapshot = after.snapshot()
        event = build_event(
            self.before, snapshot, occurred_at=occurred_at, signal_sha256=signal_sha256,
            prev_hash=self.prev_hash, evidence_added=added, kind=kind,
            cause={"kind": "signal", "signal_sha256": cause_sha or signal_sha256},
        )  # fmt: skip
        self.write.add_event(event, outbox_lane(after.id, self.plan.lanes))
        self.touched.add(after.id)
        self.state, self.before, self.prev_hash = after, snapshot, event.hash

    def _new_episode(self, index: int, signal: IncidentInput) -> None:
        previous = self.state
        episode = 1 if previous is None else previous.episode + 1
        incident = episode_id(self.key, episode, self.plan.tenant)
        self.before, self.prev_hash, self.known = None, GENESIS_HASH, set()
        after = start(
            signal, incident, episode=episode, previous=None if previous is None else previous.id
        )
        if self.plan.open_after.get(signal.source_kind, 1) > 1:
            after = replace(after, status="PENDING")
        self._emit(
            after, occurred_at=signal.signal_time, signal_sha256=signal.signal_sha256,
            kind=None, evidence_from=index,
        )  # fmt: skip
        newest = self.plan._newest_recovery(self.scope, index)
        if newest is not None and newest[0] > signal.signal_time:
            # a trigger older than a recovery of its scope is born resolved.
            resolved = replace(
                after, status="RESOLVED", resolved_at=newest[0], resolved_by="signal",
                last_seq=after.last_seq + 1,
            )  # fmt: skip
            self._emit(
                resolved, occurred_at=newest[0], signal_sha256=signal.signal_sha256,
                kind="incident.resolved", evidence_from=None, cause_sha=newest[1],
            )  # fmt: skip

    def trigger(self, index: int, signal: IncidentInput) -> Outcome:
        state = self.state
        if state is None:
            self._new_episode(index, signal)
            return Outcome.CREATED
        at = signal.signal_time
        if state.status not in _ACTIVE:
            ended = [m for m in (state.resolved_at, state.closed_at) if m is not None]
            newest = self.plan._newest_recovery(self.scope, index)
            if newest is not None:
                ended.append(newest[0])
            # A tie with the resolution counts as newer: RESOLVED needs a strictly newer recovery.
            if not ended or at >= max(ended):
                reopen = (
                    state.status == "RESOLVED"
                    and state.resolved_by == "signal"
                    and state.resolved_at is not None
                    and at - state.resolved_at < self.plan.reopen_window
                )
                if not reopen:
                    self._new_episode(index, signal)
                    return Outcome.CREATED
                after = replace(
                    advance(state, signal), status="OPEN", resolved_at=None, resolved_by=None,
                    reopen_count=state.reopen_count + 1,
                )  # fmt: skip
                self._emit(
                    after, occurred_at=at, signal_sha256=signal.signal_sha256,
                    kind="incident.reopened", evidence_from=index,
                )  # fmt: skip
                return Outcome.UPDATED
        # An occurrence: active, or older than the resolution (adds evidence, changes no state).
        after = advance(state, signal)
        kind = None
        threshold = self.plan.open_after.get(state.source_kind, 1)
        if after.status == "PENDING" and after.occurrence_count >= threshold:
            after, kind = replace(after, status="OPEN"), "incident.promoted"
        self._emit(
            after, occurred_at=at, signal_sha256=signal.signal_sha256,
            kind=kind, evidence_from=index,
        )  # fmt: skip
        return Outcome.UPDATED

    def recover(self, index: int, recovery: Recovery) -> None:
        state = self.state
        if state is None or state.status not in _ACTIVE:
            return
        if not state.last_seen_at < recovery.signal_time:
            return  # the newest trigger is not older than the recovery: still a problem
        status = "CANCELLED" if state.status == "PENDING" else "RESOLVED"
        after = replace(
            state, status=status, resolved_at=recovery.signal_time, resolved_by="signal",
            last_seq=state.last_seq + 1,
        )  # fmt: skip
        self._emit(
            after, occurred_at=recovery.signal_time, signal_sha256=recovery.signal_sha256,
            kind="incident.resolved" if status == "RESOLVED" else "incident.cancelled",
            evidence_from=index,
        )  # fmt: skip


class ChunkWrite:
    """The parameters of one `write_chunk` statement, and the rows it must write.

    The statement derives every row from the events: the incident row is the snapshot of the
    incident's newest event, evidence rows are the events' `evidence_added` (only their
    redacted payloads travel separately). Few, wide parameters keep the driver's per-element
    encoding cost low.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lanes: list[int] = []
        self.evidence_shas: list[str] = []
        self.evidence_payloads: list[str] = []
        self.incidents = 0

    def add_evidence(self, sha: str, item: EvidenceInput) -> None:
        self.evidence_shas.append(sha)
        self.evidence_payloads.append(json_text(item.payload))

    def add_event(self, event: Event, lane: int) -> None:
        self.events.append(event)
        self.lanes.append(lane)

    @property
    def arguments(self) -> list[list[Any]]:
        return [
            [e.payload_json for e in self.events],
            [e.hash for e in self.events],
            self.lanes,
            self.evidence_shas,
            self.evidence_payloads,
        ]

    def check(self, row: Any) -> None:
        """Raise unless the statement wrote exactly the computed rows (the locks guarantee it)."""
        expected = (self.incidents, len(self.evidence_shas), len(self.events), len(self.events))
        written = (row["incidents"], row["evidence"], row["events"], row["outbox"])
        if written != expected:
            raise StoreIntegrityError(
                f"wrote (incidents, evidence, events, outbox) {written}, expected {expected}"
            )
